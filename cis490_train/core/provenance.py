"""Which data a result was trained on: the dataset's name, fingerprint and schema hash.

Scores are comparable only on the same data. The fingerprint says which data
(the trainer computes it from the rows, hosts, times and labels), the name says
it to a person. Reports, the store's summaries, job results and exports all
carry this one shape, and each reader checks it again: a report is an
uploader's data, so a malformed field is dropped rather than shown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

HEX64 = re.compile(r"[0-9a-f]{64}")
MAX_NAME = 64
SHORT = 8  # hex digits of the fingerprint that tables show


def is_data_name(value: Any) -> bool:
    """A short printable name: 1-64 characters, no control characters, no surrounding blanks."""
    return isinstance(value, str) and 0 < len(value) <= MAX_NAME and value.isprintable() and value == value.strip()


def _hex64(value: Any) -> str:
    return value if isinstance(value, str) and HEX64.fullmatch(value) else ""


@dataclass(frozen=True)
class DataIdentity:
    name: str = ""
    fingerprint: str = ""
    schema_hash: str = ""

    @classmethod
    def from_json(cls, raw: Any) -> DataIdentity | None:
        """Keep each well-formed field, drop the others; None when nothing is left (older reports)."""
        if not isinstance(raw, dict):
            return None
        name = raw.get("name")
        identity = cls(
            name=name if is_data_name(name) else "",
            fingerprint=_hex64(raw.get("fingerprint")),
            schema_hash=_hex64(raw.get("schema_hash")),
        )
        return identity if identity != cls() else None

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "fingerprint": self.fingerprint, "schema_hash": self.schema_hash}

    @property
    def short(self) -> str:
        """Enough of the fingerprint to tell two datasets of one name apart at a glance."""
        return self.fingerprint[:SHORT]

    @property
    def label(self) -> str:
        """`GunPoint 1a2b3c4d`: the name and the short fingerprint."""
        return " ".join(part for part in (self.name, self.short) if part)


def label_of(raw: Any) -> str:
    """The label of a dataset as a result or summary holds it; '' for one trained before results said."""
    identity = DataIdentity.from_json(raw)
    return identity.label if identity else ""
