"""`data import` of a directory of NumPy arrays: X.npy, y.npy, and optionally hosts.npy and times.npy."""

from __future__ import annotations

import numpy as np

from cis490_train.trainer.contract import SEQUENCES_FILE, WINDOWS_FILE
from cis490_train.trainer.data import describe_dataset, load_dataset
from cis490_train.trainer.sources import import_dataset
from cis490_train.trainer.sources.features import STATISTICS, summary_features
from cis490_train.trainer.sources.windows import PLACEHOLDER_HOST
from cis490_train.trainer.split import make_split

EPOCH_MS = 1_772_409_600_000  # 2026-03-02T00:00:00Z


def _save(folder, **arrays):
    folder.mkdir(parents=True, exist_ok=True)
    for name, values in arrays.items():
        np.save(folder / f"{name}.npy", values, allow_pickle=False)
    return folder


def test_three_dimensional_arrays_with_hosts_and_times_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 12, 3))
    x[4, 5, 1] = np.nan
    y = np.array(["idle", "busy", "idle"] * 10)
    hosts = np.array(["lab-ws1"] * 15 + ["lab-ws2"] * 15)
    times = EPOCH_MS + np.arange(30, dtype=np.int64) * 60_000
    src = _save(tmp_path / "lab", X=x, y=y, hosts=hosts, times=times)
    schema = import_dataset(src, tmp_path / "out")
    data = load_dataset(tmp_path / "out", sequences=True)
    assert np.array_equal(np.asarray(data.sequences), x.astype(np.float32), equal_nan=True)
    assert schema.classes == ("busy", "idle")
    assert [schema.classes[k] for k in data.label] == y.tolist()
    assert data.host.tolist() == hosts.tolist() and data.window_start_ms.tolist() == times.tolist()
    assert schema.channels == ("dim_0", "dim_1", "dim_2") and len(schema.features) == 3 * len(STATISTICS)
    assert np.array_equal(data.features, summary_features(x.astype(np.float32)))
    assert np.isfinite(data.features).all()
    assert schema.source["format"] == "npy" and schema.source["name"] == "lab"
    assert [f["name"] for f in schema.source["files"]] == ["X.npy", "y.npy", "hosts.npy", "times.npy"]
    assert describe_dataset(tmp_path / "out").hosts == ("lab-ws1", "lab-ws2")
    split = make_split("host", data.host, data.window_start_ms, data.label, seed=0, train_hosts=["lab-ws1"])
    assert split.test.tolist() == list(range(15, 30))


def test_two_dimensional_arrays_with_integer_labels_get_placeholders(tmp_path):
    x = np.arange(40, dtype=np.int32).reshape(8, 5)
    y = np.array([10, 2, 2, 10, 2, 10, 10, 2])
    schema = import_dataset(_save(tmp_path / "plain", X=x, y=y), tmp_path / "out")
    data = load_dataset(tmp_path / "out", sequences=True)
    assert data.sequences.shape == (8, 5, 1)
    assert np.array_equal(data.sequences[:, :, 0], x.astype(np.float32))
    assert schema.classes == ("2", "10")  # numeric order, not "10" < "2"
    assert [schema.classes[k] for k in data.label] == [str(v) for v in y]
    assert set(data.host.tolist()) == {PLACEHOLDER_HOST}
    assert data.window_start_ms.tolist() == [i * 1000 for i in range(8)]
    assert schema.source["hosts"].startswith(repr(PLACEHOLDER_HOST)) and "row index" in schema.source["window_start"]


def test_datetime64_times_and_float_class_numbers_are_read(tmp_path):
    x = np.ones((4, 3, 2), dtype=np.float32) * np.arange(4, dtype=np.float32)[:, None, None]
    y = np.array([0.0, 1.0, 1.0, 0.0])
    times = np.array(["2026-03-02T00:00", "2026-03-02T00:01", "2026-03-02T00:02", "2026-03-02T00:03"], dtype="datetime64[s]")
    schema = import_dataset(_save(tmp_path / "dt", X=x, y=y, times=times), tmp_path / "out")
    data = load_dataset(tmp_path / "out")
    assert data.window_start_ms.tolist() == [EPOCH_MS + i * 60_000 for i in range(4)]
    assert schema.classes == ("0", "1") and data.label.tolist() == [0, 1, 1, 0]


def test_importing_twice_gives_the_same_bytes(tmp_path):
    rng = np.random.default_rng(3)
    src = _save(tmp_path / "again", X=rng.normal(size=(20, 9, 2)), y=rng.integers(0, 3, size=20))
    import_dataset(src, tmp_path / "one")
    import_dataset(src, tmp_path / "two")
    for name in (WINDOWS_FILE, SEQUENCES_FILE):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
