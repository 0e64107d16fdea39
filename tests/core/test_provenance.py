"""The one shape of "which data a result was trained on", and what every reader of it drops."""

from __future__ import annotations

import pytest

from cis490_train.core.provenance import DataIdentity, is_data_name, label_of

FINGERPRINT = "3f2a9c1e" + "0" * 56
SCHEMA = "ab" * 32
GOOD = {"name": "GunPoint", "fingerprint": FINGERPRINT, "schema_hash": SCHEMA}


def test_a_well_formed_identity_is_kept_as_it_is():
    identity = DataIdentity.from_json(GOOD)
    assert identity == DataIdentity("GunPoint", FINGERPRINT, SCHEMA)
    assert identity.to_json() == GOOD
    assert identity.label == "GunPoint 3f2a9c1e" == label_of(GOOD)


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("name", ""),
        ("name", "x" * 65),
        ("name", "clear\x1b[2J"),
        ("name", "right\u202eto-left"),
        ("name", " padded "),
        ("name", 7),
        ("fingerprint", FINGERPRINT[:-1]),
        ("fingerprint", FINGERPRINT.upper()),
        ("fingerprint", "../../etc/passwd".ljust(64, "a")),
        ("fingerprint", None),
        ("schema_hash", SCHEMA + "0"),
        ("schema_hash", ["ab"] * 32),
    ],
)
def test_a_malformed_field_is_dropped_and_the_others_kept(field, bad):
    identity = DataIdentity.from_json({**GOOD, field: bad})
    assert getattr(identity, field) == ""
    assert {k: v for k, v in identity.to_json().items() if k != field} == {k: v for k, v in GOOD.items() if k != field}


@pytest.mark.parametrize("raw", [None, "GunPoint", [GOOD], {}, {"name": "\x07", "fingerprint": "f", "schema_hash": 1}])
def test_nothing_usable_is_no_identity_and_an_empty_label(raw):
    assert DataIdentity.from_json(raw) is None
    assert label_of(raw) == ""


def test_the_label_shows_what_is_known():
    assert DataIdentity(fingerprint=FINGERPRINT).label == "3f2a9c1e"
    assert DataIdentity(name="synth-small").label == "synth-small"
    assert is_data_name("UCR ECG200") and is_data_name("n" * 64) and not is_data_name("n" * 65)
