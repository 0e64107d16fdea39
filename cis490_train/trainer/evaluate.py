"""Test-set metrics with bootstrap confidence intervals, next to a majority-class baseline.

All three metrics are functions of the confusion matrix, and resampling n
predictions with replacement makes the resampled confusion matrix exactly
Multinomial(n, observed cell shares). Drawing those counts directly gives the
same bootstrap distribution as resampling indices at O(classes²) per resample
instead of O(n), so 1,000 resamples of millions of predictions stay cheap.
The baseline is scored on the very same resamples (its confusion matrix
follows from the true-class counts), so model and baseline CIs are paired.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.scores import METRICS

CI_LEVEL = 0.95
CHUNK_RESAMPLES = 4096


@dataclass(frozen=True)
class Estimate:
    value: float
    ci_low: float
    ci_high: float

    def to_json(self) -> dict[str, float]:
        return {"value": self.value, "ci_low": self.ci_low, "ci_high": self.ci_high}


@dataclass(frozen=True, eq=False)
class Evaluation:
    metrics: dict[str, Estimate]
    baseline: dict[str, Estimate]
    baseline_class: int
    confusion: np.ndarray
    n: int
    n_resamples: int

    def to_json(self) -> dict[str, Any]:
        return {
            "metrics": {k: v.to_json() for k, v in self.metrics.items()},
            "baseline": {k: v.to_json() for k, v in self.baseline.items()},
            "confusion_matrix": self.confusion.tolist(),
        }


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{len(y_true)} labels but {len(y_pred)} predictions")
    if len(y_true) and (min(y_true.min(), y_pred.min()) < 0 or max(y_true.max(), y_pred.max()) >= n_classes):
        raise ValueError(f"class indices must be in 0..{n_classes - 1}")
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def metrics_from_confusion(cm: np.ndarray) -> dict[str, np.ndarray]:
    """The three metrics of one (K, K) or many (..., K, K) confusion matrices.

    Macro-F1 averages over classes that occur in the truth or the predictions,
    balanced accuracy over classes that occur in the truth (as scikit-learn does).
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    support = cm.sum(axis=-1)
    predicted = cm.sum(axis=-2)
    n = support.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        accuracy = tp.sum(axis=-1) / n
        present = support > 0
        recall = np.where(present, tp / support, 0.0)
        balanced = recall.sum(axis=-1) / present.sum(axis=-1)
        seen = (support + predicted) > 0
        f1 = np.where(seen, 2 * tp / (support + predicted), 0.0)
        macro_f1 = f1.sum(axis=-1) / seen.sum(axis=-1)
    return {"accuracy": accuracy, "macro_f1": macro_f1, "balanced_accuracy": balanced}


def macro_f1_score(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """The point macro-F1 of one set of predictions (what validation scores report)."""
    return float(metrics_from_confusion(confusion_matrix(y_true, y_pred, n_classes))["macro_f1"])


def baseline_confusion(cm: np.ndarray, majority: int) -> np.ndarray:
    """What always predicting `majority` scores on the same true-class counts."""
    out = np.zeros_like(cm)
    out[..., :, majority] = cm.sum(axis=-1)
    return out


def bootstrap_confusions(cm: np.ndarray, n_resamples: int, rng: np.random.Generator, chunk: int = CHUNK_RESAMPLES):
    """Yield resampled confusion matrices, `chunk` at a time (memory: chunk × K² counts)."""
    k = cm.shape[0]
    n = int(cm.sum())
    shares = cm.ravel() / n
    done = 0
    while done < n_resamples:
        size = min(chunk, n_resamples - done)
        yield rng.multinomial(n, shares, size=size).reshape(size, k, k)
        done += size


def evaluate(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    n_classes: int,
    *,
    baseline_class: int,
    n_resamples: int,
    seed: int,
) -> Evaluation:
    """Point estimates and percentile CIs for the model and for the majority-class baseline."""
    if n_resamples < 1:
        raise ValueError("n_resamples must be at least 1")
    cm = confusion_matrix(y_true, y_pred, n_classes)
    if cm.sum() == 0:
        raise ValueError("cannot evaluate on an empty test set")
    base_cm = baseline_confusion(cm, baseline_class)
    model_draws: dict[str, list[np.ndarray]] = {m: [] for m in METRICS}
    base_draws: dict[str, list[np.ndarray]] = {m: [] for m in METRICS}
    for chunk in bootstrap_confusions(cm, n_resamples, np.random.default_rng(seed)):
        for name, values in metrics_from_confusion(chunk).items():
            model_draws[name].append(values)
        for name, values in metrics_from_confusion(baseline_confusion(chunk, baseline_class)).items():
            base_draws[name].append(values)
    return Evaluation(
        metrics=_estimates(metrics_from_confusion(cm), model_draws),
        baseline=_estimates(metrics_from_confusion(base_cm), base_draws),
        baseline_class=baseline_class,
        confusion=cm,
        n=int(cm.sum()),
        n_resamples=n_resamples,
    )


def _estimates(point: dict[str, np.ndarray], draws: dict[str, list[np.ndarray]]) -> dict[str, Estimate]:
    tail = 100 * (1 - CI_LEVEL) / 2
    out = {}
    for name in METRICS:
        low, high = np.percentile(np.concatenate(draws[name]), [tail, 100 - tail])
        out[name] = Estimate(float(point[name]), float(low), float(high))
    return out
