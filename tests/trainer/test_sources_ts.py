"""`data import` of UCR/UEA `.ts` problems: values, labels and the official split survive the import."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from cis490_train.errors import SourceError
from cis490_train.trainer.contract import SCHEMA_FILE, SEQUENCES_FILE, WINDOWS_FILE
from cis490_train.trainer.data import check_dataset, describe_dataset, load_dataset
from cis490_train.trainer.sources import import_dataset
from cis490_train.trainer.sources.features import STATISTICS, summary_features
from cis490_train.trainer.split import make_split
from helpers.ucr import expected_tensor, read_cases, ucr_problem, write_problem

# Two dimensions, a missing value in each file, classes declared in an order that is not sorted.
TRAIN_CASES = [
    [[1.0, 2.0, 3.0, 4.0], [0.5, None, 0.25, 0.0]],
    [[-1.0, -2.5, 7.0, 1e-3], [3.0, 3.0, 3.0, 3.0]],
    [[10.0, 11.0, 12.0, 13.0], [-4.0, -3.0, -2.0, -1.0]],
]
TRAIN_LABELS = ["up", "down", "up"]
TEST_CASES = [
    [[2.0, 2.0, None, 2.0], [1.0, 2.0, 1.0, 2.0]],
    [[0.0, 1.0, 0.0, 1.0], [9.0, 8.0, 7.0, 6.0]],
]
TEST_LABELS = ["down", "up"]
CLASSES = ["up", "down"]


@pytest.fixture
def tiny(tmp_path):
    """A made-up two-dimensional problem and the dataset imported from it."""
    train = write_problem(tmp_path / "src", "Tiny", (TRAIN_CASES, TRAIN_LABELS), (TEST_CASES, TEST_LABELS), classes=CLASSES)
    return train, tmp_path / "tiny", import_dataset(train, tmp_path / "tiny")


def _split(data):
    return make_split("host", data.host, data.window_start_ms, data.label, seed=0, train_hosts=["train"])


def test_a_written_pair_keeps_its_values_labels_and_file_order(tiny):
    train, out, schema = tiny
    data = load_dataset(out, sequences=True)
    assert np.array_equal(np.asarray(data.sequences), expected_tensor(TRAIN_CASES + TEST_CASES), equal_nan=True)
    assert np.isnan(data.sequences[0, 1, 1]) and np.isnan(data.sequences[3, 2, 0])
    assert schema.classes == tuple(CLASSES)
    assert [schema.classes[k] for k in data.label] == TRAIN_LABELS + TEST_LABELS
    assert data.host.tolist() == ["train"] * 3 + ["test"] * 2
    assert data.window_start_ms.tolist() == [0, 1000, 2000, 3000, 4000]
    assert schema.channels == ("dim_0", "dim_1") and schema.seq_len == 4 and schema.window_seconds is None
    summary = describe_dataset(out)
    assert summary.windows == 5 and summary.labelled == 5 and summary.hosts == ("test", "train")


def test_the_schema_records_the_source_files_and_how_features_were_made(tiny):
    train, out, schema = tiny
    source = json.loads((out / SCHEMA_FILE).read_text())["source"]
    test = train.with_name("Tiny_TEST.ts")
    assert source["format"] == "ts" and source["name"] == "Tiny"
    assert source["files"] == [
        {"name": p.name, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()} for p in (train, test)
    ]
    assert source["cases"] == {"train": 3, "test": 2} and source["missing_values"] == 2 and source["padding"] is None
    assert source["features"]["per_channel"] == [name for name, _ in STATISTICS]
    names = [f.name for f in schema.features]
    assert names == [f"f_{c}_{stat}" for c in ("dim_0", "dim_1") for stat, _ in STATISTICS]
    assert all(f.kind == "realistic" and f.description for f in schema.features)


def test_the_official_split_of_a_written_pair_survives(tiny):
    _, out, _ = tiny
    data = load_dataset(out, sequences=True)
    split = _split(data)
    assert split.test.tolist() == [3, 4]
    assert sorted(split.train.tolist() + split.val.tolist()) == [0, 1, 2]
    assert np.array_equal(np.asarray(data.sequences[split.test]), expected_tensor(TEST_CASES), equal_nan=True)


def test_italy_power_demand_keeps_the_archive_split(italy_dataset):
    train_file, test_file = ucr_problem("ItalyPowerDemand")
    train_x, train_y = read_cases(train_file)
    test_x, test_y = read_cases(test_file)
    data = load_dataset(italy_dataset, sequences=True)
    schema = data.schema
    assert (data.n, schema.seq_len, schema.channels, schema.classes) == (1096, 24, ("dim_0",), ("1", "2"))
    assert len(schema.features) == len(STATISTICS)
    split = _split(data)
    assert np.array_equal(split.test, np.arange(67, 1096))
    assert np.array_equal(np.sort(np.concatenate([split.train, split.val])), np.arange(67))
    assert np.array_equal(np.asarray(data.sequences[split.test]), test_x)
    assert np.array_equal(np.asarray(data.sequences[:67]), train_x)
    assert [schema.classes[k] for k in data.label[split.test]] == test_y
    assert [schema.classes[k] for k in data.label[:67]] == train_y


def test_basic_motions_is_multivariate(basicmotions_dataset):
    data = load_dataset(basicmotions_dataset, sequences=True)
    x = np.concatenate([read_cases(path)[0] for path in ucr_problem("BasicMotions")])
    assert data.sequences.shape == (80, 100, 6)
    assert np.array_equal(np.asarray(data.sequences), x)
    assert data.schema.classes == ("Standing", "Running", "Walking", "Badminton")
    assert len(data.schema.features) == 6 * len(STATISTICS)
    assert data.host.tolist() == ["train"] * 40 + ["test"] * 40
    assert np.isfinite(load_dataset(basicmotions_dataset).features).all()


def test_importing_twice_gives_the_same_bytes(italy_dataset, tmp_path):
    again = import_dataset(ucr_problem("ItalyPowerDemand")[0].parent, tmp_path / "again")
    assert again.schema_hash == check_dataset(italy_dataset).schema_hash
    for name in (WINDOWS_FILE, SEQUENCES_FILE, SCHEMA_FILE):
        assert (tmp_path / "again" / name).read_bytes() == (italy_dataset / name).read_bytes(), name
    assert np.isfinite(load_dataset(italy_dataset).features).all()


def test_name_overrides_the_problem_name(tmp_path):
    train = ucr_problem("ItalyPowerDemand")[0]
    schema = import_dataset(train, tmp_path / "named", name="italy-power")
    assert schema.source["name"] == "italy-power"


def test_unequal_lengths_need_pad_and_pad_repeats_each_last_value(tmp_path):
    train_cases = [[[1.0, 5.0, 2.0]], [[4.0, 3.0, 2.0, 1.0, 0.0]]]
    test_cases = [[[7.0, 9.0, None, 8.0]]]
    train = write_problem(tmp_path / "src", "Ragged", (train_cases, ["a", "b"]), (test_cases, ["a"]))
    with pytest.raises(SourceError, match=r"Ragged_TRAIN\.ts:\d+: .*--pad"):
        import_dataset(train, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    schema = import_dataset(train, tmp_path / "out", pad=True)
    data = load_dataset(tmp_path / "out", sequences=True)
    assert data.sequences[:, :, 0].tolist()[:2] == [[1.0, 5.0, 2.0, 2.0, 2.0], [4.0, 3.0, 2.0, 1.0, 0.0]]
    assert np.array_equal(data.sequences[2, :, 0], [7.0, 9.0, np.nan, 8.0, 8.0], equal_nan=True)
    assert schema.source["padding"] == {"to": 5, "shortest": 3, "padded_cases": 2, "with": "each series' last value"}
    names = [f.name for f in schema.features]
    for row, case in enumerate(train_cases + test_cases):
        unpadded = np.array([[np.nan if v is None else v for v in case[0]]], dtype=np.float32)[:, :, None]
        assert np.array_equal(data.features[row], summary_features(unpadded)[0])
    assert data.features[0, names.index("f_dim_0_argmax")] == 0.5  # 5.0 is the middle of three values
    assert data.features[0, names.index("f_dim_0_mean")] == pytest.approx(8.0 / 3)
