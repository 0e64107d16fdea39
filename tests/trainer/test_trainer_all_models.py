"""All nine models through `run_job` in-process on the small synthetic dataset (sample split, CPU,
one thread): each beats the majority baseline beyond the intervals, oracle features help,
runs repeat exactly, and checkpoints predict what the trained model predicted."""

from __future__ import annotations

import io
import json

import pytest

from cis490_train.core.hyper import MODELS, resolve
from cis490_train.trainer.checkpoint import load_checkpoint
from cis490_train.trainer.data import load_model_inputs
from cis490_train.trainer.evaluate import confusion_matrix
from cis490_train.trainer.models import ModelConfig, Part, Progress, model_class
from cis490_train.trainer.progress import Reporter
from cis490_train.trainer.run import run_job
from cis490_train.trainer.spec import TrainSpec
from cis490_train.trainer.split import make_split
from helpers.trainer import make_spec

NEW_MODELS = ("knn", "knn_semi", "cnn", "gru", "lstm", "transformer", "transformer_ssl")


def train_in_process(spec: dict, data, out) -> tuple[dict, list[dict]]:
    out.mkdir(parents=True)
    spec_file = out.parent / f"{out.name}.spec.json"
    spec_file.write_text(json.dumps(spec))
    stream = io.StringIO()
    report = run_job(TrainSpec.from_file(spec_file), data, out, reporter=Reporter(stream), threads=1)
    return report, [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.fixture(scope="module")
def data(dataset):
    return dataset  # the session's small synthetic dataset (conftest)


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """Each (model, mode) trained once per module, on demand: (report, progress events, out dir)."""
    root = tmp_path_factory.mktemp("runs")
    cache: dict[tuple[str, str], tuple[dict, list[dict], object]] = {}

    def get(model: str, mode: str = "realistic"):
        if (model, mode) not in cache:
            out = root / f"{model}-{mode}"
            report, events = train_in_process(make_spec(model, mode), data, out)
            cache[model, mode] = (report, events, out)
        return cache[model, mode]

    return get


@pytest.mark.parametrize("mode", ["realistic", "oracle"])
@pytest.mark.parametrize("model", MODELS)
def test_every_model_beats_the_majority_baseline_beyond_the_intervals(trained, model, mode):
    report = trained(model, mode)[0]
    assert report["model"] == model and report["device"] == "cpu"
    for name in ("accuracy", "macro_f1", "balanced_accuracy"):
        assert report["metrics"][name]["ci_low"] > report["baseline"][name]["ci_high"], name


@pytest.mark.parametrize("model", MODELS)
def test_oracle_scores_at_least_as_well_as_realistic(trained, model):
    realistic = trained(model, "realistic")[0]["metrics"]["macro_f1"]["value"]
    oracle = trained(model, "oracle")[0]["metrics"]["macro_f1"]["value"]
    assert oracle >= realistic


@pytest.mark.parametrize("model", ["knn", "gru", "transformer_ssl"])
def test_same_spec_twice_gives_identical_results(trained, data, tmp_path, model):
    first = trained(model)[0]
    second, _ = train_in_process(make_spec(model), data, tmp_path / "again")
    for key in ("metrics", "baseline", "confusion_matrix", "n_train", "n_val", "n_test", "hyper", "fit"):
        assert second[key] == first[key], key


@pytest.mark.parametrize("mode", ["realistic", "oracle"])
@pytest.mark.parametrize("model", NEW_MODELS)
def test_checkpoint_loads_back_and_reproduces_the_test_predictions(trained, data, model, mode):
    report, _, out = trained(model, mode)
    ckpt = load_checkpoint(out, data=data)
    assert ckpt.meta["fit"] == report["fit"] and ckpt.meta["inputs"] == ckpt.model.inputs
    dataset = ckpt.load_data(data)
    if ckpt.model.inputs == "sequence":
        oracle_columns = [c for c in ckpt.meta["feature_columns"] if c.startswith("o_")]
        assert ckpt.meta["feature_columns"] == (oracle_columns if mode == "oracle" else [])
        assert dataset.sequences is not None and (mode == "realistic") == (dataset.features is None)
    test = ckpt.test_rows(dataset)
    pred = ckpt.predict(dataset, test)
    assert confusion_matrix(dataset.label[test], pred, 5).tolist() == report["confusion_matrix"]


@pytest.mark.parametrize("model", ["cnn", "gru", "lstm", "transformer", "transformer_ssl", "knn", "knn_semi"])
def test_progress_reports_every_epoch_with_the_validation_metric(trained, model):
    report, events, _ = trained(model)
    boundaries = [e for e in events if e["event"] == "progress" and e["phase"] == "train" and e["epoch"]]
    final = boundaries[-1]
    assert final["epoch"] == final["epochs"] and final["metric_name"] == "val_macro_f1"
    assert 0.0 <= final["metric"] <= 1.0 and final["eta_s"] == 0
    if model.startswith("knn"):
        assert final["loss"] is None
    else:
        assert report["fit"]["epochs_run"] == final["epochs"] == report["hyper"]["epochs"]


def test_transformer_ssl_pretrains_then_trains_and_records_both_phases(trained):
    report, events, _ = trained("transformer_ssl")
    phases = [e["phase"] for e in events if e["event"] == "progress" and e["epoch"]]
    assert phases[0] == "pretrain" and phases[-1] == "train"
    switch = phases.index("train")
    assert set(phases[:switch]) == {"pretrain"} and set(phases[switch:]) == {"train"}
    pretrain = [e for e in events if e["event"] == "progress" and e["phase"] == "pretrain" and e["epoch"]]
    assert pretrain[-1]["epoch"] == pretrain[-1]["epochs"] == report["hyper"]["pretrain_epochs"]
    assert all(e["metric"] is None for e in pretrain)
    curve_phases = [p["phase"] for p in report["curve"]]
    assert curve_phases == ["pretrain"] * report["hyper"]["pretrain_epochs"] + ["train"] * report["hyper"]["epochs"]
    fit = report["fit"]
    assert fit["pretrain_epochs"] == report["hyper"]["pretrain_epochs"]
    assert fit["pretrain_windows"] > report["n_train"]  # the unlabelled windows joined the train windows
    assert 0.0 < fit["pretrain_final_loss"] < 1.0  # masked steps reconstructed better than the per-channel mean


def test_knn_semi_adds_confident_pseudo_labels_and_reports_how_many(trained):
    fit = trained("knn_semi")[0]["fit"]
    assert 0 < fit["pseudo_labels"] <= fit["n_unlabelled"]
    assert sum(fit["pseudo_labels_per_round"]) == fit["pseudo_labels"]
    assert len(fit["pseudo_labels_per_round"]) == 2
    assert fit["n_memorised"] == trained("knn")[0]["fit"]["n_memorised"] + fit["pseudo_labels"]


def oracle_parts(data, inputs: str) -> tuple[Part, Part, Part]:
    dataset = load_model_inputs(data, "oracle", inputs)
    split = make_split("sample", dataset.host, dataset.window_start_ms, dataset.label, seed=0)
    return tuple(Part.from_rows(dataset, rows) for rows in (split.train, split.test, split.test[:0]))


@pytest.mark.parametrize(
    ("model", "hyper"), [("knn_semi", {}), ("cnn", {"epochs": 2}), ("transformer_ssl", {"epochs": 1, "pretrain_epochs": 1})]
)
def test_empty_validation_and_no_unlabelled_windows_are_handled(data, model, hyper):
    cls = model_class(model)
    train, test, empty = oracle_parts(data, cls.inputs_for(resolve(model, hyper)))
    trained = cls(ModelConfig(resolve(model, hyper), n_classes=5, seed=0, threads=1))
    seen: list[Progress] = []
    trained.fit(train, empty, seen.append, None)
    assert seen and all(p.metric is None for p in seen)
    assert trained.predict(test).shape == (test.n,) and trained.predict(empty).shape == (0,)


def test_patience_stops_a_sequence_model_early_and_keeps_its_best_epoch(data):
    train, test, _ = oracle_parts(data, "sequence")
    val = Part(y=test.y[:150], features=test.features[:150], sequences=test.sequences[:150])
    hyper = {"epochs": 300, "batch_size": 64, "lr": 3e-3, "patience": 2, "channels": 16}
    model = model_class("cnn")(ModelConfig(resolve("cnn", hyper), n_classes=5, seed=0, threads=1))
    seen: list[Progress] = []
    model.fit(train, val, seen.append)
    info = model.fit_info()
    assert info["epochs_run"] < 300 and info["epochs_run"] == max(p.epoch for p in seen if p.boundary)
    scores = {p.epoch: p.metric for p in seen if p.boundary}
    assert scores[info["best_epoch"]] == max(scores.values())
