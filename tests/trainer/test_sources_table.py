"""`data import` of a Parquet table of windows: features taken as named, one-step tensors."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cis490_train.trainer.contract import SCHEMA_FILE, SEQUENCES_FILE, WINDOWS_FILE
from cis490_train.trainer.data import describe_dataset, load_dataset
from cis490_train.trainer.sources import import_dataset
from cis490_train.trainer.sources.windows import PLACEHOLDER_HOST

EPOCH_MS = 1_772_409_600_000  # 2026-03-02T00:00:00Z


def _lab_table(n: int = 12) -> pa.Table:
    rng = np.random.default_rng(0)
    labels = ["benign", "miner", "benign", None] * (n // 4)
    return pa.table(
        {
            "window_id": pa.array(np.arange(n)[::-1].copy()),
            "host": pa.array(["ws1", "ws2"] * (n // 2)).dictionary_encode(),
            "window_start": pa.array((EPOCH_MS + np.arange(n) * 60_000) * 1000, type=pa.timestamp("us", tz="Europe/Rome")),
            "label": pa.array(labels, type=pa.string()),
            "f_cpu": pa.array(rng.uniform(0, 100, n), type=pa.float64()),
            "o_verdict": pa.array(rng.uniform(0, 1, n), type=pa.float32()),
            "open_files": pa.array(rng.integers(0, 500, n), type=pa.int32()),
            "usb": pa.array(rng.random(n) < 0.5),
        }
    )


def test_a_table_of_windows_round_trips(tmp_path):
    table = _lab_table()
    pq.write_table(table, tmp_path / "lab.parquet")
    schema = import_dataset(tmp_path / "lab.parquet", tmp_path / "out")
    assert [(f.name, f.kind) for f in schema.features] == [
        ("f_cpu", "realistic"), ("o_verdict", "oracle"), ("f_open_files", "realistic"), ("f_usb", "realistic")
    ]
    assert schema.classes == ("benign", "miner") and schema.seq_len == 1
    assert schema.channels == ("f_cpu", "f_open_files", "f_usb")
    data = load_dataset(tmp_path / "out", "oracle", sequences=True)
    realistic = np.stack([table.column(c).to_numpy().astype(np.float32) for c in ("f_cpu", "open_files", "usb")], axis=1)
    assert np.array_equal(np.asarray(data.sequences)[:, 0, :], realistic)
    assert np.array_equal(data.features[:, 1], table.column("o_verdict").to_numpy())
    assert data.label.tolist() == [0, 1, 0, -1] * 3  # a null label is an unlabelled window
    assert data.host.tolist() == ["ws1", "ws2"] * 6
    assert data.window_start_ms.tolist() == (EPOCH_MS + np.arange(12) * 60_000).tolist()
    assert pq.read_table(tmp_path / "out" / WINDOWS_FILE).column("window_id").to_pylist() == list(range(12))
    summary = describe_dataset(tmp_path / "out")
    assert summary.labelled == 9 and summary.oracle == ("o_verdict",)
    assert schema.source["format"] == "parquet" and schema.source["name"] == "lab"


def test_a_bare_table_gets_placeholders_and_integer_labels(tmp_path):
    pq.write_table(pa.table({"label": pa.array([3, 1, 3, 1]), "x": pa.array([0.5, 1.5, 2.5, 3.5])}), tmp_path / "bare.pq")
    schema = import_dataset(tmp_path / "bare.pq", tmp_path / "out", name="bare-table")
    data = load_dataset(tmp_path / "out", sequences=True)
    assert schema.classes == ("1", "3") and schema.source["name"] == "bare-table"
    assert [f.name for f in schema.features] == ["f_x"]
    assert set(data.host.tolist()) == {PLACEHOLDER_HOST} and data.window_start_ms.tolist() == [0, 1000, 2000, 3000]
    assert data.sequences[:, 0, 0].tolist() == [0.5, 1.5, 2.5, 3.5]


def test_integer_milliseconds_are_window_starts_and_the_import_is_repeatable(tmp_path):
    table = pa.table({"label": ["a", "b"], "window_start": pa.array([EPOCH_MS, EPOCH_MS + 5]), "f_x": [1.0, 2.0]})
    pq.write_table(table, tmp_path / "ms.parquet")
    import_dataset(tmp_path / "ms.parquet", tmp_path / "one")
    import_dataset(tmp_path / "ms.parquet", tmp_path / "two")
    assert load_dataset(tmp_path / "one").window_start_ms.tolist() == [EPOCH_MS, EPOCH_MS + 5]
    for name in (WINDOWS_FILE, SEQUENCES_FILE, SCHEMA_FILE):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
