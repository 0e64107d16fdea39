"""Gradient-boosted trees (xgboost, histogram method) on the per-window summary features.

Early stopping watches the validation log-loss rather than its macro-F1: a
small validation split gives few distinct F1 values, and the first round to
reach the top one is seldom the best model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ...atomic import atomic_path
from ..evaluate import macro_f1_score
from .base import Model, ModelConfig, Part, Progress, ProgressCallback, import_optional, steering

xgb = import_optional("xgboost", "pip install xgboost-cpu  (or `pip install xgboost` on a CUDA host)")


class _RoundProgress(xgb.callback.TrainingCallback):
    def __init__(self, progress: ProgressCallback, rounds: int, has_val: bool):
        super().__init__()
        self.progress = progress
        self.rounds = rounds
        self.has_val = has_val

    def after_iteration(self, model, epoch: int, evals_log) -> bool:
        metric = evals_log["val"]["macro_f1"][-1] if self.has_val else None
        self.progress(
            Progress(
                epoch=epoch + 1,
                epochs=self.rounds,
                step=epoch + 1,
                steps=self.rounds,
                loss=float(evals_log["train"]["mlogloss"][-1]),
                metric=float(metric) if metric is not None else None,
                metric_name="val_macro_f1" if self.has_val else None,
                boundary=True,
            )
        )
        return False


class GBTModel(Model):
    name = "gbt"
    inputs = "summary"
    weights_file = "model.xgb.json"

    def __init__(self, config: ModelConfig, booster=None):
        super().__init__(config)
        self.booster = booster
        self.validation = ""

    def _params(self) -> dict:
        h = self.config.hyper
        return {
            "objective": "multi:softprob",
            "num_class": self.config.n_classes,
            "tree_method": "hist",
            "device": self.config.device,
            "max_depth": h["max_depth"],
            "eta": h["learning_rate"],
            "subsample": h["subsample"],
            "colsample_bytree": h["colsample_bytree"],
            "min_child_weight": h["min_child_weight"],
            "lambda": h["reg_lambda"],
            "seed": self.config.seed,
            "nthread": self.config.threads,
            "eval_metric": "mlogloss",
        }

    def fit(self, train: Part, val: Part, progress: ProgressCallback, unlabelled: Part | None = None) -> None:
        h, k, threads = self.config.hyper, self.config.n_classes, self.config.threads
        train, val, self.validation = steering(train, val, bool(h["early_stopping_rounds"]))
        dtrain = xgb.DMatrix(train.features, label=train.y, nthread=threads)
        evals = [(dtrain, "train")]
        if val.n:
            evals.append((xgb.DMatrix(val.features, label=val.y, nthread=threads), "val"))

        def macro_f1(predt: np.ndarray, dmat) -> tuple[str, float]:
            pred = predt.reshape(-1, k).argmax(axis=1)
            return "macro_f1", macro_f1_score(dmat.get_label().astype(np.int64), pred, k)

        callbacks = [_RoundProgress(progress, h["n_estimators"], bool(val.n))]
        if h["early_stopping_rounds"] and val.n:
            callbacks.append(
                xgb.callback.EarlyStopping(
                    rounds=h["early_stopping_rounds"],
                    metric_name="mlogloss",
                    data_name="val",
                    maximize=False,
                    save_best=True,
                )
            )
        self.booster = xgb.train(
            self._params(),
            dtrain,
            num_boost_round=h["n_estimators"],
            evals=evals,
            custom_metric=macro_f1,
            callbacks=callbacks,
            verbose_eval=False,
        )

    def fit_info(self) -> dict:
        return {"rounds": int(self.booster.num_boosted_rounds()), "validation": self.validation}

    def predict(self, part: Part) -> np.ndarray:
        if not part.n:
            return np.empty(0, dtype=np.int64)
        dmat = xgb.DMatrix(part.features, nthread=self.config.threads)
        proba = self.booster.predict(dmat).reshape(-1, self.config.n_classes)
        return proba.argmax(axis=1).astype(np.int64)

    def save(self, directory: Path) -> None:
        with atomic_path(Path(directory) / self.weights_file, suffix=".json") as tmp:
            self.booster.save_model(str(tmp))

    @classmethod
    def load(cls, directory: Path, device: str = "cpu", threads: int = 1) -> GBTModel:
        booster = xgb.Booster()
        booster.load_model(str(Path(directory) / cls.weights_file))
        booster.set_param({"device": device, "nthread": threads})
        config = ModelConfig(hyper={}, n_classes=_num_class(booster), seed=0, device=device, threads=threads)
        return cls(config, booster)

    @classmethod
    def cuda_available(cls) -> bool:
        """A CUDA build of xgboost that can actually train a round on a GPU here."""
        if not xgb.build_info().get("USE_CUDA"):
            return False
        try:
            dmat = xgb.DMatrix(np.zeros((2, 1), dtype=np.float32), label=np.array([0.0, 1.0]))
            xgb.train({"device": "cuda", "tree_method": "hist", "verbosity": 0}, dmat, num_boost_round=1)
        except xgb.core.XGBoostError:
            return False
        return True


def _num_class(booster) -> int:
    config = json.loads(booster.save_config())
    return int(config["learner"]["learner_model_param"]["num_class"])
