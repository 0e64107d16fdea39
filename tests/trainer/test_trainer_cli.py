"""The trainer process end to end: real subprocesses on the small synthetic dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cis490_train.core.scores import METRICS
from cis490_train.errors import DataError
from cis490_train.trainer.checkpoint import load_checkpoint
from cis490_train.trainer.data import load_dataset, synthesize
from cis490_train.trainer.evaluate import confusion_matrix
from helpers.trainer import TrainerRun, make_spec, run_trainer

REPORT_KEYS = {
    "job_id",
    "model",
    "mode",
    "split_recipe",
    "seed",
    "device",
    "hyper",
    "n_train",
    "n_val",
    "n_test",
    "classes",
    "metrics",
    "baseline",
    "confusion_matrix",
    "n_resamples",
    "duration_s",
    "train_seconds",
    "fit",
    "name",
    "dataset",
    "curve",
}
PROGRESS_KEYS = {
    "event",
    "phase",
    "epoch",
    "epochs",
    "step",
    "steps",
    "loss",
    "metric",
    "metric_name",
    "eta_s",
    "elapsed_s",
}


@pytest.fixture(scope="module")
def data(dataset):
    return dataset  # the session's small synthetic dataset (conftest)


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """Each (model, mode, recipe) trained once per module, on demand."""
    root = tmp_path_factory.mktemp("runs")
    cache: dict[tuple[str, str, str], TrainerRun] = {}

    def get(model: str, mode: str = "realistic", recipe: str = "sample") -> TrainerRun:
        key = (model, mode, recipe)
        if key not in cache:
            run = run_trainer(make_spec(model, mode, recipe), root / "-".join(key), data)
            assert run.returncode == 0, run.stderr
            cache[key] = run
        return cache[key]

    return get


def one_line_error(run: TrainerRun) -> str:
    """The stderr of a user-fixable failure: one `error:` line, no traceback."""
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr
    assert run.events[-1]["event"] == "error" and run.events[-1]["exit_code"] == 2
    assert not (run.out / "report.json").exists()
    return lines[0]


def test_report_has_exactly_the_shape_the_fleet_reads(trained, data):
    run = trained("gbt")
    report = run.report
    assert set(report) == REPORT_KEYS
    assert report["job_id"] == make_spec("gbt")["job_id"]
    identity = (report["model"], report["mode"], report["split_recipe"], report["seed"])
    assert identity == ("gbt", "realistic", "sample", 0)
    assert report["device"] == "cpu"
    assert report["hyper"]["n_estimators"] == 60 and report["hyper"]["learning_rate"] == 0.1
    assert report["classes"] == ["benign", "miner", "ransomware", "scanner", "exfil"]
    assert report["n_resamples"] == 500
    assert report["fit"] == {"rounds": 60, "validation": "progress only"}
    assert report["name"] == make_spec("gbt")["name"]
    loaded = load_dataset(data)
    assert report["dataset"] == {"name": "synth-small", "fingerprint": loaded.fingerprint(), "schema_hash": loaded.schema.schema_hash}
    assert [p["epoch"] for p in report["curve"]] == list(range(1, 61))  # every round, though lines are rate-capped
    for point in report["curve"]:
        assert set(point) == {"phase", "epoch", "loss", "metric", "metric_name"} and point["phase"] == "train"
        assert point["loss"] > 0 and 0.0 <= point["metric"] <= 1.0 and point["metric_name"] == "val_macro_f1"
    assert report["curve"][-1]["loss"] < report["curve"][0]["loss"]
    for part in ("metrics", "baseline"):
        assert set(report[part]) == set(METRICS)
        for est in report[part].values():
            assert set(est) == {"value", "ci_low", "ci_high"}
            assert 0.0 <= est["ci_low"] <= est["value"] <= est["ci_high"] <= 1.0
    cm = np.array(report["confusion_matrix"])
    assert cm.shape == (5, 5) and cm.sum() == report["n_test"]
    labelled = int(np.sum(load_dataset(data, summary=False).label >= 0))
    assert report["n_train"] + report["n_val"] + report["n_test"] == labelled
    assert 0 < report["train_seconds"] <= report["duration_s"]


def test_checkpoint_metadata_describes_the_weights(trained, data):
    for mode in ("realistic", "oracle"):
        run = trained("mlp", mode)
        ckpt = run.ckpt
        dataset = load_dataset(data, mode)
        assert (run.out / ckpt["weights"]).is_file() and ckpt["weights"] == "model.pt"
        assert (ckpt["model"], ckpt["mode"], ckpt["job_id"]) == ("mlp", mode, run.report["job_id"])
        assert ckpt["feature_columns"] == list(dataset.feature_names)
        assert ckpt["schema_hash"] == dataset.schema.schema_hash
        assert ckpt["data_fingerprint"] == dataset.fingerprint() == run.report["dataset"]["fingerprint"]
        assert ckpt["data_name"] == run.report["dataset"]["name"] == "synth-small"
        assert ckpt["hyper"] == run.report["hyper"] and ckpt["classes"] == run.report["classes"]
        assert ckpt["metrics"] == run.report["metrics"]
        assert {"python", "numpy", "torch", "xgboost"} <= set(ckpt["versions"])
        assert ckpt["versions"]["torch"] and ckpt["created_at"]
    assert any(c.startswith("o_") for c in trained("mlp", "oracle").ckpt["feature_columns"])
    assert not any(c.startswith("o_") for c in trained("mlp").ckpt["feature_columns"])
    assert (trained("gbt").out / "model.xgb.json").is_file()


@pytest.mark.parametrize("model", ["gbt", "mlp", "cnn", "transformer_ssl"])
def test_stdout_carries_only_the_progress_protocol(trained, model):
    events = trained(model).events  # every line parses as JSON
    assert events[0]["event"] == "start" and events[0]["job_id"] == make_spec(model)["job_id"]
    assert events[-1] == {"event": "done", "report": "report.json"}
    progress = [e for e in events if e["event"] == "progress"]
    assert all(set(e) == PROGRESS_KEYS for e in progress)
    assert [e["phase"] for e in progress if e["epoch"] is None][-3:] == ["train", "evaluate", "save"]
    final = [e for e in progress if e["phase"] == "train" and e["epoch"] is not None][-1]
    assert final["epoch"] == final["epochs"] and final["metric_name"] == "val_macro_f1"
    assert final["loss"] > 0 and final["eta_s"] == 0
    pretrain = [e for e in progress if e["phase"] == "pretrain"]
    assert bool(pretrain) == (model == "transformer_ssl")
    assert all(e["epoch"] is not None for e in pretrain)


@pytest.mark.parametrize("mode", ["realistic", "oracle"])
@pytest.mark.parametrize("model", ["gbt", "mlp"])
def test_models_beat_the_majority_baseline_beyond_the_intervals(trained, model, mode):
    report = trained(model, mode).report
    for name in METRICS:
        assert report["metrics"][name]["ci_low"] > report["baseline"][name]["ci_high"], name


@pytest.mark.parametrize("model", ["gbt", "mlp"])
def test_oracle_features_help(trained, model):
    realistic = trained(model, "realistic").report["metrics"]["macro_f1"]
    oracle = trained(model, "oracle").report["metrics"]["macro_f1"]
    assert oracle["value"] >= realistic["value"]


@pytest.mark.parametrize("model", ["gbt", "mlp"])
def test_host_split_is_clearly_harder_than_sample_split(trained, model):
    host = trained(model, "realistic", "host").report
    sample = trained(model, "realistic", "sample").report
    assert host["metrics"]["macro_f1"]["ci_high"] < sample["metrics"]["macro_f1"]["ci_low"]
    assert host["split_recipe"] == "host" and host["n_test"] > host["n_train"]


def test_time_split_runs_and_threads_come_from_the_environment(data, tmp_path):
    spec = make_spec("gbt", split_recipe="time")
    run = run_trainer(spec, tmp_path / "time", data, env={"CIS490_TRAINER_THREADS": "1"}, threads=None)
    assert run.returncode == 0, run.stderr
    assert run.events[0]["threads"] == 1
    report = run.report
    assert report["split_recipe"] == "time" and report["n_test"] > 0
    assert report["metrics"]["macro_f1"]["value"] > report["baseline"]["macro_f1"]["value"]


@pytest.mark.parametrize("model", ["gbt", "mlp"])
def test_same_spec_twice_gives_identical_results(trained, data, tmp_path, model):
    first = trained(model).report
    again = run_trainer(make_spec(model), tmp_path / "again", data)
    assert again.returncode == 0, again.stderr
    second = again.report
    for key in ("metrics", "baseline", "confusion_matrix", "n_train", "n_val", "n_test", "hyper"):
        assert second[key] == first[key], key


@pytest.mark.parametrize(("model", "mode"), [("gbt", "oracle"), ("mlp", "realistic")])
def test_checkpoint_loads_back_and_reproduces_the_test_predictions(trained, data, model, mode):
    run = trained(model, mode)
    ckpt = load_checkpoint(run.out, data=data)
    dataset = ckpt.load_data(data)
    test = ckpt.test_rows(dataset)
    pred = ckpt.predict(dataset, test)
    assert confusion_matrix(dataset.label[test], pred, 5).tolist() == run.report["confusion_matrix"]
    assert len(np.unique(pred)) == 5


def test_checkpoint_refuses_data_with_another_schema(trained, tmp_path):
    other = synthesize(tmp_path / "other", small=True, seed=0, n_features=12, windows_per_host=30)
    with pytest.raises(DataError, match="differs from the expected"):
        load_checkpoint(trained("gbt").out, data=other)
    ckpt = load_checkpoint(trained("gbt").out)
    with pytest.raises(DataError, match="schema_hash"):
        ckpt.load_data(other)


def test_bad_hyperparameter_exits_2_with_one_line(data, tmp_path):
    run = run_trainer(make_spec("gbt", hyper={"n_estimatorz": 10}), tmp_path / "out", data)
    line = one_line_error(run)
    assert "unknown gbt hyperparameter 'n_estimatorz'" in line and "did you mean 'n_estimators'" in line
    assert "valid keys:" in line


def test_out_of_range_hyperparameter_exits_2(data, tmp_path):
    line = one_line_error(run_trainer(make_spec("mlp", hyper={"epochs": -1}), tmp_path / "out", data))
    assert "'epochs' must be >= 0" in line


def test_missing_data_dir_exits_2_and_says_how_to_make_one(tmp_path):
    missing = tmp_path / "no-data"
    line = one_line_error(run_trainer(make_spec(), tmp_path / "out", missing))
    assert f"no dataset at {missing}" in line and "cis490-train data synth --out" in line


def test_data_dir_defaults_to_the_environment(tmp_path):
    missing = tmp_path / "env-data"
    run = run_trainer(make_spec(), tmp_path / "out", None, env={"CIS490_DATA_DIR": str(missing)})
    assert f"no dataset at {missing}" in one_line_error(run)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("{not json", "is not readable JSON"),
        (json.dumps({"model": "gbt"}), "missing 'job_id'"),
        (json.dumps({**make_spec(), "mode": "psychic"}), "'mode' must be one of"),
        (json.dumps({**make_spec(), "split_recipe": "random"}), "'split_recipe' must be one of"),
        (json.dumps({**make_spec(), "model": "svm"}), "unknown model 'svm'"),
        (json.dumps({**make_spec(), "n_resamples": 0}), "'n_resamples' must be an integer"),
        (json.dumps({**make_spec(), "seed": -1}), "'seed' must be an integer from 0 to 4294967295"),
    ],
)
def test_bad_specs_exit_2(data, tmp_path, spec, expected):
    assert expected in one_line_error(run_trainer(spec, tmp_path / "out", data))


def test_unknown_train_host_exits_2(data, tmp_path):
    spec = make_spec(split_recipe="host", train_hosts=("elliott-thinkpad", "ghost-laptop"))
    line = one_line_error(run_trainer(spec, tmp_path / "out", data))
    assert "['ghost-laptop'] are not in the data" in line and "curie-laptop" in line


def test_cuda_on_a_host_without_it_exits_2(data, tmp_path):
    from cis490_train.trainer.models.gbt import GBTModel

    if GBTModel.cuda_available():
        pytest.skip("this host can train gbt on CUDA")
    line = one_line_error(run_trainer(make_spec(), tmp_path / "out", data, "--device", "cuda"))
    assert "cannot use CUDA" in line


def test_unexpected_failure_exits_1_with_a_traceback(data, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    run = run_trainer(make_spec(), tmp_path / "out", data, "--out", str(blocker / "out"))
    assert run.returncode == 1
    assert "Traceback" in run.stderr
    assert run.events[-1]["event"] == "error" and run.events[-1]["exit_code"] == 1
