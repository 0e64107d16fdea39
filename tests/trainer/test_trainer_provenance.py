"""What a report says of its data: the dataset's name (one rule picks it), fingerprint and schema hash."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cis490_train.trainer.contract import SCHEMA_FILE
from cis490_train.trainer.data import load_dataset


def with_source(dataset: Path, target: Path, source: dict) -> Path:
    """A copy of `dataset` whose schema.json declares `source` (which the schema hash leaves out)."""
    copy = Path(shutil.copytree(dataset, target))
    schema = json.loads((copy / SCHEMA_FILE).read_text())
    schema["source"] = source
    (copy / SCHEMA_FILE).write_text(json.dumps(schema))
    return copy


def identity(path: Path):
    return load_dataset(path, summary=False).identity()


def test_the_synthetic_dataset_is_named_after_its_preset(dataset):
    loaded = load_dataset(dataset, summary=False)
    assert loaded.identity().name == "synth-small"
    assert loaded.identity().fingerprint == loaded.fingerprint() and loaded.identity().schema_hash == loaded.schema.schema_hash


def test_a_source_that_names_itself_wins(dataset, tmp_path):
    synthetic = json.loads((dataset / SCHEMA_FILE).read_text())["source"]
    named = with_source(dataset, tmp_path / "ucr-download", {**synthetic, "name": "GunPoint"})
    assert identity(named).name == "GunPoint"
    assert identity(named).fingerprint == identity(dataset).fingerprint  # the name is for people, not the identity


@pytest.mark.parametrize("name", ["", "bad\x1b[31mname", "n" * 65, 42])
def test_a_source_name_that_is_not_a_name_is_passed_over(dataset, tmp_path, name):
    synthetic = json.loads((dataset / SCHEMA_FILE).read_text())["source"]
    assert identity(with_source(dataset, tmp_path / "copy", {**synthetic, "name": name})).name == "synth-small"


def test_without_a_named_or_synthetic_source_the_directory_names_it(dataset, tmp_path):
    assert identity(with_source(dataset, tmp_path / "lab-capture-2026", {"collector": "lab"})).name == "lab-capture-2026"
    foreign = {"generator": "someone else's", "preset": "small"}
    assert identity(with_source(dataset, tmp_path / "theirs", foreign)).name == "theirs"
