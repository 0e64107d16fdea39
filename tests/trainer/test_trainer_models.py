"""The model interface, the registry, and gbt/mlp in-process: fit, predict, save, load."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from cis490_train.errors import TrainerError, UnknownModelError
from cis490_train.core.hyper import MODELS, resolve
from cis490_train.trainer.data import load_dataset
from cis490_train.trainer.models import (
    IMPLEMENTATIONS,
    ModelConfig,
    ModelNotImplemented,
    Part,
    Progress,
    implemented,
    model_class,
)
from cis490_train.trainer.models.base import import_optional
from cis490_train.trainer.split import make_split
from helpers.fleet import ROOT
from helpers.trainer import FAST_HYPER


@pytest.fixture(scope="module")
def parts(dataset):
    data = load_dataset(dataset, "realistic")
    s = make_split("sample", data.host, data.window_start_ms, data.label, seed=0)
    return tuple(Part.from_rows(data, rows) for rows in (s.train, s.val, s.test))


def train(name: str, parts, seed: int = 0, **hyper):
    """One thread: torch's and xgboost's OpenMP runtimes in one process otherwise spin against each other."""
    cls = model_class(name)
    model = cls(ModelConfig(resolve(name, {**FAST_HYPER[name], **hyper}), n_classes=5, seed=seed, threads=1))
    seen: list[Progress] = []
    model.fit(parts[0], parts[1], seen.append)
    return model, seen


def test_registry_knows_and_implements_all_nine_models():
    assert set(IMPLEMENTATIONS) == set(MODELS) and len(MODELS) == 9
    assert set(implemented()) == set(MODELS)
    for name in MODELS:
        cls = model_class(name)
        assert cls.name == name
        assert cls.inputs == ("summary" if name in ("gbt", "knn", "knn_semi", "mlp") else "sequence")
    assert model_class("gbt").weights_file == "model.xgb.json"
    assert all(model_class(name).weights_file == "model.pt" for name in MODELS if name != "gbt")


def test_a_registered_model_without_an_implementation_fails_fast_with_exit_2(monkeypatch):
    monkeypatch.setitem(IMPLEMENTATIONS, "knn", None)
    with pytest.raises(ModelNotImplemented, match="model knn is not implemented by this trainer yet") as err:
        model_class("knn")
    assert err.value.exit_code == 2
    assert "knn" not in implemented()


def test_unknown_model_lists_the_valid_ones():
    with pytest.raises(UnknownModelError, match="valid models: gbt"):
        model_class("svm")


def test_missing_framework_becomes_a_trainer_error_with_an_install_hint():
    with pytest.raises(TrainerError, match="install it with `pip install no-such-framework`"):
        import_optional("no_such_framework_cis490", "pip install no-such-framework")


@pytest.mark.parametrize("name", ["gbt", "mlp"])
def test_saved_model_predicts_exactly_what_the_trained_one_did(name, parts, tmp_path):
    model, _ = train(name, parts)
    before = model.predict(parts[2])
    model.save(tmp_path)
    assert (tmp_path / model.weights_file).is_file()
    assert [p.name for p in tmp_path.iterdir()] == [model.weights_file]  # no temporary files left
    loaded = model_class(name).load(tmp_path)
    assert np.array_equal(loaded.predict(parts[2]), before)
    assert before.dtype == np.int64 and before.shape == (parts[2].n,)
    assert np.mean(before == parts[2].y) > 0.6


@pytest.mark.parametrize("name", ["gbt", "mlp"])
def test_same_seed_same_model_other_seed_other_model(name, parts):
    hyper = {"subsample": 0.7} if name == "gbt" else {}
    a, _ = train(name, parts, seed=1, **hyper)
    b, _ = train(name, parts, seed=1, **hyper)
    c, _ = train(name, parts, seed=2, **hyper)
    x = Part(y=np.zeros(len(parts[2].y)), features=parts[2].features)
    assert np.array_equal(a.predict(x), b.predict(x))
    if name == "gbt":
        assert a.booster.save_raw() == b.booster.save_raw() != c.booster.save_raw()
    else:
        pairs = zip(a.net.state_dict().values(), b.net.state_dict().values(), strict=True)
        assert all(np.array_equal(p, q) for p, q in pairs)
        assert not np.array_equal(a.net[0].weight.detach().numpy(), c.net[0].weight.detach().numpy())


@pytest.mark.parametrize("name", ["gbt", "mlp"])
def test_progress_marks_every_epoch_boundary_with_loss_and_val_metric(name, parts):
    _, seen = train(name, parts)
    epochs = FAST_HYPER[name]["n_estimators" if name == "gbt" else "epochs"]
    boundaries = [p for p in seen if p.boundary]
    assert [p.epoch for p in boundaries] == list(range(1, epochs + 1))
    assert all(p.epochs == epochs and p.loss is not None and p.metric_name == "val_macro_f1" for p in boundaries)
    assert all(0.0 <= p.metric <= 1.0 for p in boundaries)
    assert boundaries[-1].loss < boundaries[0].loss
    assert boundaries[-1].step == boundaries[-1].steps


@pytest.mark.parametrize(
    ("name", "hyper"),
    [("gbt", {"n_estimators": 400, "early_stopping_rounds": 3}), ("mlp", {"epochs": 400, "patience": 2, "early_stopping": True})],
)
def test_early_stopping_ends_training_before_the_last_epoch(name, parts, hyper):
    model, seen = train(name, parts, **hyper)
    last = max(p.epoch for p in seen if p.boundary)
    assert last < 400
    assert np.mean(model.predict(parts[2]) == parts[2].y) > 0.6


def test_empty_validation_and_test_parts_are_handled(parts):
    empty = Part(y=np.empty(0, dtype=np.int64), features=np.empty((0, parts[0].features.shape[1]), np.float32))
    for name in ("gbt", "mlp"):
        model = model_class(name)(ModelConfig(resolve(name, FAST_HYPER[name]), n_classes=5, seed=0, threads=1))
        seen: list[Progress] = []
        model.fit(parts[0], empty, seen.append)
        assert all(p.metric is None for p in seen)
        assert model.predict(parts[2]).shape == (parts[2].n,)
        assert model.predict(empty).shape == (0,)


def test_trainer_modules_never_import_celery_and_load_frameworks_lazily():
    code = textwrap.dedent(
        """
        import sys
        import cis490_train.trainer, cis490_train.trainer.run, cis490_train.trainer.data
        import cis490_train.trainer.split, cis490_train.trainer.evaluate, cis490_train.trainer.checkpoint
        import cis490_train.trainer.progress, cis490_train.trainer.spec, cis490_train.trainer.device
        lazy = sorted(m for m in ("torch", "xgboost") if m in sys.modules)
        assert not lazy, f"imported eagerly: {lazy}"
        import cis490_train.trainer.models
        assert not sorted(m for m in ("torch", "xgboost") if m in sys.modules)
        import cis490_train.trainer.models.gbt, cis490_train.trainer.models.mlp
        import cis490_train.trainer.models.knn, cis490_train.trainer.models.sequence
        assert "torch" in sys.modules and "xgboost" in sys.modules
        celery = sorted(m for m in sys.modules if m == "celery" or m.startswith(("celery.", "kombu")))
        assert not celery, f"celery was imported: {celery}"
        print("clean")
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "clean"
