"""The data contract, the synthetic dataset and the dataset checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cis490_train.cli import main as cli_main
from cis490_train.errors import DataError
from cis490_train.trainer.contract import SCHEMA_FILE, SEQUENCES_FILE, WINDOWS_FILE, Feature, compute_schema_hash
from cis490_train.trainer.data import check_dataset, describe_dataset, load_dataset, synthesize
from cis490_train.trainer.evaluate import confusion_matrix, metrics_from_confusion
from cis490_train.trainer.split import make_split

FILES = (WINDOWS_FILE, SEQUENCES_FILE, SCHEMA_FILE)


@pytest.fixture
def broken(dataset, tmp_path) -> Path:
    """A private copy to damage."""
    return Path(shutil.copytree(dataset, tmp_path / "copy"))


def _rewrite_table(path: Path, change) -> None:
    table = pq.read_table(path / WINDOWS_FILE)
    pq.write_table(change(table), path / WINDOWS_FILE)


def _replace(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, values)


def test_same_seed_gives_byte_identical_files_and_another_seed_does_not(dataset, tmp_path):
    again = synthesize(tmp_path / "again", small=True, seed=0)
    other = synthesize(tmp_path / "other", small=True, seed=1)
    for name in FILES:
        assert (again / name).read_bytes() == (dataset / name).read_bytes(), name
    assert (other / WINDOWS_FILE).read_bytes() != (dataset / WINDOWS_FILE).read_bytes()
    assert (other / SEQUENCES_FILE).read_bytes() != (dataset / SEQUENCES_FILE).read_bytes()


def test_windows_table_follows_the_contract(dataset):
    schema = json.loads((dataset / SCHEMA_FILE).read_text())
    table = pq.read_table(dataset / WINDOWS_FILE)
    types = {f.name: f.type for f in table.schema}
    assert types["window_id"] == pa.int64()
    assert types["host"] == pa.string()
    assert types["window_start"] == pa.timestamp("ms", tz="UTC")
    assert types["label"] == pa.string()
    assert table.column("window_id").to_pylist() == list(range(table.num_rows))
    realistic = [f["name"] for f in schema["features"] if f["kind"] == "realistic"]
    oracle = [f["name"] for f in schema["features"] if f["kind"] == "oracle"]
    assert len(realistic) == 16 and len(oracle) == 4
    assert all(n.startswith("f_") for n in realistic) and all(n.startswith("o_") for n in oracle)
    assert all(types[n] == pa.float32() for n in realistic + oracle)
    assert all(f["description"] for f in schema["features"])
    assert set(types) == {"window_id", "host", "window_start", "label", *realistic, *oracle}


def test_schema_json_describes_the_tensor_and_hashes_its_content(dataset):
    schema = json.loads((dataset / SCHEMA_FILE).read_text())
    tensor = np.load(dataset / SEQUENCES_FILE, mmap_mode="r")
    n_rows = pq.read_metadata(dataset / WINDOWS_FILE).num_rows
    assert tensor.dtype == np.float32
    assert tensor.shape == (n_rows, schema["sequence"]["seq_len"], len(schema["sequence"]["channels"]))
    assert tensor.shape[1:] == (32, 6)
    assert schema["classes"] == ["benign", "miner", "ransomware", "scanner", "exfil"]
    features = tuple(Feature(f["name"], f["kind"], f["description"], f["dtype"]) for f in schema["features"])
    expected = compute_schema_hash(
        tuple(schema["classes"]), features, schema["sequence"]["seq_len"], tuple(schema["sequence"]["channels"])
    )
    assert schema["schema_hash"] == expected


def test_small_preset_has_hosts_classes_and_unlabelled_windows(dataset):
    table = pq.read_table(dataset / WINDOWS_FILE, columns=["host", "label"])
    hosts = table.column("host").to_pylist()
    labels = table.column("label").to_pylist()
    assert "elliott-thinkpad" in hosts
    assert len(set(hosts)) == 6
    assert 0 < labels.count(None) < len(labels) / 3
    for host in set(hosts):
        seen = {lab for h, lab in zip(hosts, labels, strict=True) if h == host and lab is not None}
        assert seen == {"benign", "miner", "ransomware", "scanner", "exfil"}, host


def test_default_preset_is_bigger_than_small(tmp_path):
    big = synthesize(tmp_path / "big", seed=0)
    small_rows = 6 * 250
    schema = check_dataset(big)
    assert pq.read_metadata(big / WINDOWS_FILE).num_rows > small_rows
    assert len(schema.feature_columns("realistic")) > 16
    assert schema.seq_len > 32
    assert load_dataset(big, summary=False).identity().name == "synth"


def test_keyword_overrides_shape_the_dataset(tmp_path):
    out = synthesize(tmp_path / "custom", small=True, seed=3, hosts=["a", "b"], windows_per_host=40, seq_len=16)
    data = load_dataset(out, "oracle", sequences=True)
    assert sorted(set(data.host.tolist())) == ["a", "b"]
    assert data.n == 80 and data.sequences.shape == (80, 16, 6)


def test_sequences_carry_a_learnable_class_signal(dataset):
    """Nearest class centroid on per-channel statistics beats always guessing the majority class."""
    data = load_dataset(dataset, summary=False, sequences=True)
    seq = np.asarray(data.sequences, dtype=np.float64)
    stats = np.concatenate([seq.mean(1), seq.std(1), seq.max(1)], axis=1)
    split = make_split("sample", data.host, data.window_start_ms, data.label, seed=0)
    mu, sd = stats[split.train].mean(0), stats[split.train].std(0) + 1e-9
    z = (stats - mu) / sd
    centroids = np.stack([z[split.train][data.label[split.train] == k].mean(0) for k in range(5)])
    pred = ((z[split.test][:, None, :] - centroids) ** 2).sum(-1).argmin(1)
    truth = data.label[split.test]
    model_f1 = metrics_from_confusion(confusion_matrix(truth, pred, 5))["macro_f1"]
    majority = np.bincount(data.label[split.train]).argmax()
    base_f1 = metrics_from_confusion(confusion_matrix(truth, np.full_like(truth, majority), 5))["macro_f1"]
    assert model_f1 > base_f1 + 0.2


def test_load_reads_only_the_columns_of_its_mode(dataset):
    realistic = load_dataset(dataset, "realistic")
    oracle = load_dataset(dataset, "oracle")
    assert realistic.feature_names and all(n.startswith("f_") for n in realistic.feature_names)
    assert oracle.feature_names[: len(realistic.feature_names)] == realistic.feature_names
    assert any(n.startswith("o_") for n in oracle.feature_names)
    assert realistic.features.shape == (realistic.n, len(realistic.feature_names))
    assert realistic.features.dtype == np.float32
    assert realistic.sequences is None
    bare = load_dataset(dataset, summary=False, sequences=True)
    assert bare.features is None and bare.feature_names == ()
    assert isinstance(bare.sequences, np.memmap)


def test_labels_become_class_indices_with_minus_one_for_unlabelled(dataset):
    data = load_dataset(dataset, summary=False)
    raw = pq.read_table(dataset / WINDOWS_FILE, columns=["label"]).column("label").to_pylist()
    classes = data.schema.classes
    assert [classes[i] if i >= 0 else None for i in data.label] == raw


def test_fingerprint_follows_labels(dataset, broken):
    _rewrite_table(broken, lambda t: _replace(t, "label", pa.array(["benign"] * t.num_rows)))
    assert load_dataset(dataset).fingerprint() == load_dataset(dataset, "oracle").fingerprint()
    assert load_dataset(broken).fingerprint() != load_dataset(dataset).fingerprint()


def test_check_accepts_the_synthetic_dataset(dataset):
    schema = check_dataset(dataset)
    assert schema.schema_hash == json.loads((dataset / SCHEMA_FILE).read_text())["schema_hash"]


def test_describe_counts_what_the_dataset_holds(dataset):
    summary = describe_dataset(dataset).to_dict()
    data, schema = load_dataset(dataset), check_dataset(dataset)
    assert summary["path"] == str(dataset) and summary["schema_hash"] == schema.schema_hash
    assert summary["windows"] == data.n and summary["labelled"] == int((data.label >= 0).sum()) < data.n
    assert summary["hosts"] == sorted(set(data.host.astype(str))) and summary["classes"] == list(schema.classes)
    features = summary["features"]
    assert sorted(features["realistic"] + features["oracle"]) == sorted(f.name for f in schema.features) and features["oracle"]
    assert summary["sequence"] == {"seq_len": schema.seq_len, "channels": list(schema.channels)}


def test_missing_directory_says_how_to_make_one(tmp_path):
    with pytest.raises(DataError) as err:
        check_dataset(tmp_path / "nowhere")
    message = str(err.value)
    assert "cis490-train data synth --out" in message and "CIS490_DATA_DIR" in message
    assert str(tmp_path / "nowhere") in message


def test_missing_files_are_all_listed(broken):
    (broken / SEQUENCES_FILE).unlink()
    (broken / SCHEMA_FILE).unlink()
    with pytest.raises(DataError) as err:
        check_dataset(broken)
    assert f"missing {SEQUENCES_FILE}" in str(err.value)
    assert f"missing {SCHEMA_FILE}" in str(err.value)


def test_missing_column_and_wrong_dtype_are_reported_together(broken):
    def damage(table):
        table = table.drop_columns(["f_gpu_util_pct"])
        return _replace(table, "f_cpu_user_pct", table.column("f_cpu_user_pct").cast(pa.float64()))

    _rewrite_table(broken, damage)
    with pytest.raises(DataError) as err:
        check_dataset(broken)
    message = str(err.value)
    assert "no column 'f_gpu_util_pct'" in message
    assert "'f_cpu_user_pct' has type double, expected float32" in message
    assert "2 problems" in message


def test_tensor_rows_must_match_window_rows(broken):
    tensor = np.load(broken / SEQUENCES_FILE)
    np.save(broken / SEQUENCES_FILE, tensor[:-3])
    with pytest.raises(DataError, match="has 1497 windows but windows.parquet has 1500 rows"):
        check_dataset(broken)


def test_tensor_layout_must_match_the_schema(broken):
    tensor = np.load(broken / SEQUENCES_FILE)
    np.save(broken / SEQUENCES_FILE, tensor[:, :16, :].astype(np.float64))
    with pytest.raises(DataError) as err:
        check_dataset(broken)
    assert "dtype float64" in str(err.value) and "[16, 6]" in str(err.value)


def test_edited_schema_no_longer_matches_its_hash(broken):
    schema = json.loads((broken / SCHEMA_FILE).read_text())
    schema["classes"].append("worm")
    (broken / SCHEMA_FILE).write_text(json.dumps(schema))
    with pytest.raises(DataError, match="does not match its content"):
        check_dataset(broken)


def test_expected_schema_hash_is_enforced(dataset):
    check_dataset(dataset, expect_schema_hash=check_dataset(dataset).schema_hash)
    with pytest.raises(DataError, match="differs from the expected"):
        check_dataset(dataset, expect_schema_hash="0" * 64)


def test_unknown_labels_and_bad_window_ids_are_reported(broken):
    def damage(table):
        labels = table.column("label").to_pylist()
        labels[0] = "worm"
        ids = table.column("window_id").to_pylist()
        ids[1], ids[2] = ids[2], ids[1]
        table = _replace(table, "label", pa.array(labels, type=pa.string()))
        return _replace(table, "window_id", pa.array(ids, type=pa.int64()))

    _rewrite_table(broken, damage)
    with pytest.raises(DataError) as err:
        check_dataset(broken)
    assert "not among the classes" in str(err.value) and "'worm'" in str(err.value)
    assert "window_id must be 0..n-1" in str(err.value)


def test_undeclared_feature_columns_are_reported(broken):
    _rewrite_table(broken, lambda t: t.append_column("f_secret", pa.array(np.zeros(t.num_rows, np.float32))))
    with pytest.raises(DataError, match="'f_secret' is not declared"):
        check_dataset(broken)


def test_synthesize_replaces_a_dataset_but_not_a_foreign_directory(tmp_path):
    target = synthesize(tmp_path / "ds", small=True, seed=0, windows_per_host=30)
    first = (target / WINDOWS_FILE).read_bytes()
    synthesize(target, small=True, seed=1, windows_per_host=30)
    assert (target / WINDOWS_FILE).read_bytes() != first
    check_dataset(target)
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_bytes(b"meow")
    with pytest.raises(DataError, match="not a dataset directory"):
        synthesize(foreign, small=True)
    assert (foreign / "cat.jpg").read_bytes() == b"meow"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "photos"]


def test_cli_data_synth_writes_a_valid_dataset(tmp_path, capsys):
    assert cli_main(["data", "synth", "--out", str(tmp_path / "cli"), "--small", "--seed", "4"]) == 0
    assert check_dataset(tmp_path / "cli").source["seed"] == 4
    assert "wrote synthetic dataset" in capsys.readouterr().out
