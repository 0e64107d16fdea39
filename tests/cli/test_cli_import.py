"""`data import` through the real CLI: what it prints, what it refuses (one line, exit 2, nothing
written), and an imported archive problem trained on a real worker and scored again."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cis490_train.trainer.contract import SCHEMA_FILE, SEQUENCES_FILE, WINDOWS_FILE
from helpers.fleet import cli, wait_for
from helpers.ucr import ucr_problem, write_problem, write_ts

FILES = (WINDOWS_FILE, SEQUENCES_FILE, SCHEMA_FILE)
# A univariate problem whose header write_ts fills in truthfully: comment, 8 tags, @data, so the
# cases start on line 11 (line 10 where the lengths differ and @seriesLength is left out).
TRAIN = ([[[1.0, 2.0, 3.0]], [[2.0, 3.0, 4.0]]], ["a", "b"])
TEST = ([[[0.0, 1.0, 2.0]]], ["a"])


@pytest.fixture
def env(tmp_path):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CIS490_")}
    return dict(clean, HOME=str(tmp_path / "home"), XDG_CACHE_HOME=str(tmp_path / "cache"))


def _pair(src: Path, train=TRAIN, test=TEST, **tags) -> Path:
    return write_problem(src, "Bad", train, test, **tags)


def _edit(path: Path, old: str, new: str) -> Path:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return path


def _emptied(path: Path) -> Path:
    path.write_text("")
    return path


def _npy(src: Path, **arrays) -> Path:
    folder = src / "arrays"
    folder.mkdir(parents=True)
    arrays = {"X": np.zeros((5, 4, 1)), "y": np.array(["a", "b", "a", "b", "a"]), **arrays}
    for name, values in arrays.items():
        if values is not None:
            np.save(folder / f"{name}.npy", values, allow_pickle=values.dtype == object)
    return folder


def _parquet(src: Path, **columns) -> Path:
    src.mkdir(parents=True)
    data = {"label": ["a", "b", "a"], "f_x": [1.0, 2.0, 3.0], **columns}
    pq.write_table(pa.table({k: v for k, v in data.items() if v is not None}), src / "windows.parquet")
    return src / "windows.parquet"


def _written(src: Path, name: str, text: str) -> Path:
    src.mkdir(parents=True)
    (src / name).write_text(text)
    return src / name


# Each bad source: how to make it (returns the arguments after `data import`) and a pattern for the
# one line that must say what is wrong.
BAD: dict[str, tuple[Callable[[Path], list[str]], str]] = {
    "ts unequal lengths": (
        lambda src: [str(_pair(src, train=([[[1.0, 2.0, 3.0]], [[1.0, 2.0, 3.0, 4.0]]], ["a", "b"])))],
        r"Bad_TRAIN\.ts:11: the case has 4 values .* only with --pad",
    ),
    "ts ragged dimensions": (
        lambda src: [str(_pair(src, train=([[[1.0, 2.0], [3.0, 4.0]], [[1.0, 2.0]]], ["a", "b"]), univariate="false"))],
        r"Bad_TRAIN\.ts:11: the case has 1 dimension, the cases before it have 2",
    ),
    "ts a dimension shorter than the others": (
        lambda src: [str(_pair(src, train=([[[1.0, 2.0], [3.0]]], ["a"]), univariate="false"))],
        r"Bad_TRAIN\.ts:10: dimension 2 has 1 values, dimension 1 has 2",
    ),
    "ts missing label": (
        lambda src: [str(_pair(src, train=(TRAIN[0], ["a", "?"]), classes=["a", "b"]))],
        r"Bad_TRAIN\.ts:12: the case has no class label .* \['a', 'b'\]",
    ),
    "ts label not declared": (
        lambda src: [str(_pair(src, train=(TRAIN[0], ["a", "c"]), classes=["a", "b"]))],
        r"Bad_TRAIN\.ts:12: class label 'c' is not declared in @classLabel \['a', 'b'\]",
    ),
    "ts seriesLength lies": (
        lambda src: [str(_pair(src, seriesLength=5))],
        r"Bad_TRAIN\.ts:11: the case has 3 values per dimension, @seriesLength says 5",
    ),
    "ts dimensions lie": (
        lambda src: [str(_pair(src, dimensions=2))],
        r"Bad_TRAIN\.ts:11: the case has 1 dimension, @dimensions says 2",
    ),
    "ts univariate lies": (
        lambda src: [str(_pair(src, train=([[[1.0], [2.0]]], ["a"]), test=([[[1.0], [2.0]]], ["a"]), univariate="true"))],
        r"Bad_TRAIN\.ts:11: @univariate true, but the case has 2 dimensions",
    ),
    "ts equalLength lies": (
        lambda src: [str(_pair(src, train=([[[1.0, 2.0, 3.0]], [[1.0, 2.0, 3.0, 4.0]]], ["a", "b"]), equalLength="true"))],
        r"Bad_TRAIN\.ts:11: @equalLength true, but the case has 4 values per dimension and the first case has 3",
    ),
    "ts TEST of other classes": (
        lambda src: [str(_edit(_pair(src).with_name("Bad_TEST.ts"), "@classLabel true a b", "@classLabel true a b c").with_name("Bad_TRAIN.ts"))],
        r"Bad_TEST\.ts:9: @classLabel declares \['a', 'b', 'c'\], Bad_TRAIN\.ts declares \['a', 'b'\]",
    ),
    "ts no TEST file": (
        lambda src: [str(write_ts(src / "Bad_TRAIN.ts", *TRAIN))],
        r"Bad_TRAIN\.ts: no Bad_TEST\.ts beside it",
    ),
    "ts empty file": (
        lambda src: [str(_emptied(_pair(src)))],
        r"Bad_TRAIN\.ts: is empty",
    ),
    "ts no @data": (
        lambda src: [str(_edit(_pair(src), "@data", "@date"))],
        r"Bad_TRAIN\.ts:11: '1\.0,2\.0,3\.0:a' comes before @data; .* ended by a @data line",
    ),
    "ts time stamps": (
        lambda src: [str(_pair(src, timeStamps="true"))],
        r"Bad_TRAIN\.ts:3: @timeStamps true: series with time stamps are not supported",
    ),
    "ts not a number": (
        lambda src: [str(_edit(_pair(src).with_name("Bad_TEST.ts"), "0.0,", "zero,").with_name("Bad_TRAIN.ts"))],
        r"Bad_TEST\.ts:11: value 'zero' in dimension 1 is not a number",
    ),
    "ts no classes": (
        lambda src: [str(_pair(src, classLabel=None))],
        r"Bad_TRAIN\.ts:9: the header has no @classLabel line",
    ),
    "npy X and y lengths differ": (
        lambda src: [str(_npy(src, y=np.array(["a", "b", "a", "b"])))],
        r"y\.npy: has 4 labels but X\.npy has 5 windows",
    ),
    "npy wrong rank": (
        lambda src: [str(_npy(src, X=np.zeros((5, 4, 1, 1))))],
        r"X\.npy: has shape \[5, 4, 1, 1\] \(rank 4\); valid: \[n, length, channels\], or \[n, length\]",
    ),
    "npy NaN labels": (
        lambda src: [str(_npy(src, y=np.array([0.0, 1.0, np.nan, 1.0, 0.0])))],
        r"y\.npy: has 1 missing \(NaN\) labels, the first at window 2",
    ),
    "npy empty labels": (
        lambda src: [str(_npy(src, y=np.array(["a", "b", "", "b", "a"])))],
        r"y\.npy: has 1 empty labels, the first at window 2",
    ),
    "npy pickled labels": (
        lambda src: [str(_npy(src, y=np.array(["a", "b", "a", "b", None], dtype=object)))],
        r"y\.npy: holds Python objects, which are not loaded",
    ),
    "npy no labels": (
        lambda src: [str(_npy(src, y=None))],
        r"arrays: has no y\.npy",
    ),
    "npy infinite value": (
        lambda src: [str(_npy(src, X=np.array([[[0.0]], [[np.inf]]]), y=np.array([1, 2])))],
        r"X\.npy: window 1 holds an infinite value",
    ),
    "npy hosts of another length": (
        lambda src: [str(_npy(src, hosts=np.array(["h1", "h2"])))],
        r"hosts\.npy: has 2 host names but X\.npy has 5 windows",
    ),
    "parquet text column": (
        lambda src: [str(_parquet(src, note=["x", "y", "z"]))],
        r"windows\.parquet: column 'note' has type string: .* features are numeric",
    ),
    "parquet no label": (
        lambda src: [str(_parquet(src, label=None))],
        r"windows\.parquet: has no 'label' column",
    ),
    "parquet NaN feature": (
        lambda src: [str(_parquet(src, f_x=[1.0, float("nan"), 3.0]))],
        r"windows\.parquet: column 'f_x' has 1 null, NaN or non-float32 values \(rows \[1\]",
    ),
    "parquet not parquet": (
        lambda src: [str(_written(src, "table.parquet", "label,f_x\na,1\n"))],
        r"table\.parquet: is not a readable Parquet file",
    ),
    "unknown format": (
        lambda src: [str(_pair(src)), "--format", "csv"],
        r"unknown format 'csv'; valid formats: auto, ts, npy, parquet",
    ),
    "unrecognised source": (
        lambda src: [str(_written(src, "table.csv", "label,f_x\na,1\n"))],
        r"table\.csv: cannot tell its format; .* --format",
    ),
    "pad for arrays": (
        lambda src: [str(_npy(src)), "--pad"],
        r"--pad pads the unequal-length series of a \.ts problem; a npy source is already rectangular",
    ),
    "no such source": (
        lambda src: [str(src / "nowhere")],
        r"nowhere: no such file or directory",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_gets_one_line_exit_2_and_nothing_written(case, env, tmp_path):
    make, pattern = BAD[case]
    args = make(tmp_path / "src")
    datasets = tmp_path / "datasets"
    datasets.mkdir()
    done = cli(env, "data", "import", *args, "--out", str(datasets / "out"))
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert re.search(pattern, done.stderr), done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert list(datasets.iterdir()) == []


def test_import_prints_one_line_and_data_check_accepts_the_result(env, tmp_path):
    out = tmp_path / "italy"
    done = cli(env, "data", "import", str(ucr_problem("ItalyPowerDemand")[0].parent), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"imported ItalyPowerDemand (ts): 1096 windows, 2 classes, 1 channel x 24 steps, 24 features -> {out}\n"
    report = json.loads(cli(env, "data", "check", str(out), "--json").stdout)
    assert report["windows"] == report["labelled"] == 1096 and report["hosts"] == ["test", "train"]
    assert report["sequence"] == {"seq_len": 24, "channels": ["dim_0"]} and len(report["features"]["realistic"]) == 24


def test_import_json_writes_to_the_configured_data_dir(env, tmp_path):
    env["CIS490_DATA_DIR"] = str(tmp_path / "configured")
    done = cli(env, "data", "import", str(ucr_problem("BasicMotions")[0]), "--name", "motions", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["path"] == env["CIS490_DATA_DIR"] and report["windows"] == 80
    assert report["classes"] == ["Standing", "Running", "Walking", "Badminton"]
    assert report["source"]["name"] == "motions" and report["source"]["cases"] == {"train": 40, "test": 40}
    assert cli(env, "data", "check", "--json").returncode == 0


def test_a_failed_import_leaves_the_dataset_it_would_replace_as_it_was(env, tmp_path):
    out = tmp_path / "datasets" / "tiny"
    good = _pair(tmp_path / "good")
    assert cli(env, "data", "import", str(good), "--out", str(out)).returncode == 0
    before = {name: (out / name).read_bytes() for name in FILES}
    bad = _pair(tmp_path / "bad", seriesLength=4)
    done = cli(env, "data", "import", str(bad), "--out", str(out))
    assert done.returncode == 2 and "@seriesLength says 4" in done.stderr
    assert {name: (out / name).read_bytes() for name in FILES} == before
    assert [p.name for p in out.parent.iterdir()] == ["tiny"]


def test_import_refuses_to_replace_a_directory_that_is_not_a_dataset(env, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "cat.jpg").write_bytes(b"meow")
    done = cli(env, "data", "import", str(_pair(tmp_path / "src")), "--out", str(photos))
    assert done.returncode == 2 and "is not a dataset directory" in done.stderr
    assert [p.name for p in photos.iterdir()] == ["cat.jpg"]


ITALY_MANIFEST = """
schema_version = 1
name = "italy"

[[jobs]]
name = "italy-knn"
model = "knn"
split_recipe = "host"
train_hosts = ["train"]
n_resamples = 200
hyper = { n_neighbors = 1 }
"""


@pytest.mark.integration
def test_an_imported_archive_problem_trains_on_a_worker_and_scores_the_same_again(
    italy_dataset, fleet_env, registry, store, start_worker, tmp_path
):
    fleet_env["CIS490_DATA_DIR"] = str(italy_dataset)
    assert cli(fleet_env, "data", "check").returncode == 0
    (tmp_path / "italy.toml").write_text(ITALY_MANIFEST)
    start_worker("box", "cpu")
    assert cli(fleet_env, "enqueue", str(tmp_path / "italy.toml")).returncode == 0
    job = wait_for(lambda: (j := registry.find("italy-knn")).status in ("completed", "failed") and j, 180, "the job to end")
    assert job.status == "completed", job.error
    recorded = job.result["metrics"]
    assert recorded["accuracy"]["value"] > 0.8  # 1-NN on the summary features; the majority class is about half
    done = cli(fleet_env, "evaluate", job.artifact_id, "--n-resamples", "200", "--json")
    assert done.returncode == 0, done.stderr
    again = json.loads(done.stdout)
    assert again["same_data"] and again["n_test"] == 1029 and again["split_recipe"] == "host"
    assert again["metrics"]["accuracy"] == recorded["accuracy"]
    assert again["metrics"] == again["recorded"]
