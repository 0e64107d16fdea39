"""Metrics, bootstrap confidence intervals and the majority baseline."""

from __future__ import annotations

import numpy as np
import pytest

from cis490_train.trainer.evaluate import (
    METRICS,
    bootstrap_confusions,
    confusion_matrix,
    evaluate,
    metrics_from_confusion,
)


def noisy_predictions(n: int, accuracy: float, k: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    truth = rng.choice(k, size=n, p=np.linspace(2, 1, k) / np.linspace(2, 1, k).sum())
    pred = np.where(rng.random(n) < accuracy, truth, rng.integers(0, k, size=n))
    return truth, pred


def test_metrics_match_a_hand_computed_example():
    truth = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    pred = np.array([0, 0, 0, 1, 1, 0, 2, 1])
    cm = confusion_matrix(truth, pred, 4)
    assert cm[:3, :3].tolist() == [[3, 1, 0], [1, 1, 0], [0, 1, 1]]
    m = metrics_from_confusion(cm)
    assert m["accuracy"] == pytest.approx(5 / 8)
    # recalls 3/4, 1/2, 1/2 over the three classes present in the truth
    assert m["balanced_accuracy"] == pytest.approx((3 / 4 + 1 / 2 + 1 / 2) / 3)
    # F1: class 0: 6/8, class 1: 2/5, class 2: 2/3; class 3 never occurs
    assert m["macro_f1"] == pytest.approx((6 / 8 + 2 / 5 + 2 / 3) / 3)


def test_vectorised_metrics_equal_one_by_one():
    rng = np.random.default_rng(1)
    stack = rng.integers(0, 20, size=(50, 5, 5))
    stack[3, 2, :] = 0  # a class missing from the truth
    batched = metrics_from_confusion(stack)
    for i, cm in enumerate(stack):
        single = metrics_from_confusion(cm)
        for name in METRICS:
            assert batched[name][i] == pytest.approx(single[name])


@pytest.mark.parametrize("seed", range(5))
def test_ci_contains_the_point_estimate(seed):
    truth, pred = noisy_predictions(400, 0.6, seed=seed)
    result = evaluate(truth, pred, 4, baseline_class=0, n_resamples=1000, seed=seed)
    for est in [*result.metrics.values(), *result.baseline.values()]:
        assert est.ci_low <= est.value <= est.ci_high
    assert result.metrics["accuracy"].ci_low < result.metrics["accuracy"].ci_high


def test_ci_narrows_with_more_data():
    small = evaluate(*noisy_predictions(200, 0.7), 4, baseline_class=0, n_resamples=1000, seed=0)
    large = evaluate(*noisy_predictions(20_000, 0.7), 4, baseline_class=0, n_resamples=1000, seed=0)
    for name in METRICS:
        width_small = small.metrics[name].ci_high - small.metrics[name].ci_low
        width_large = large.metrics[name].ci_high - large.metrics[name].ci_low
        assert width_large < width_small / 4, name


def test_same_seed_same_intervals_other_seed_other_intervals():
    truth, pred = noisy_predictions(500, 0.6)
    a = evaluate(truth, pred, 4, baseline_class=0, n_resamples=500, seed=7)
    b = evaluate(truth, pred, 4, baseline_class=0, n_resamples=500, seed=7)
    c = evaluate(truth, pred, 4, baseline_class=0, n_resamples=500, seed=8)
    assert a.metrics == b.metrics and a.baseline == b.baseline
    assert a.metrics != c.metrics


def test_intervals_agree_with_resampling_indices():
    """Multinomial cell counts are the index bootstrap's distribution; the percentiles must agree."""
    truth, pred = noisy_predictions(500, 0.65, seed=3)
    fast = evaluate(truth, pred, 4, baseline_class=0, n_resamples=4000, seed=0)
    rng = np.random.default_rng(99)
    idx = rng.integers(0, len(truth), size=(4000, len(truth)))
    naive = {name: [] for name in METRICS}
    for row in idx:
        for name, value in metrics_from_confusion(confusion_matrix(truth[row], pred[row], 4)).items():
            naive[name].append(value)
    for name in METRICS:
        low, high = np.percentile(naive[name], [2.5, 97.5])
        assert fast.metrics[name].ci_low == pytest.approx(low, abs=0.01), name
        assert fast.metrics[name].ci_high == pytest.approx(high, abs=0.01), name


def test_chunking_does_not_change_the_resamples():
    cm = np.array([[50, 3, 2], [4, 30, 6], [1, 2, 20]])
    tiny = np.concatenate(list(bootstrap_confusions(cm, 1000, np.random.default_rng(3), chunk=7)))
    whole = np.concatenate(list(bootstrap_confusions(cm, 1000, np.random.default_rng(3), chunk=1000)))
    assert tiny.shape == (1000, 3, 3)
    assert np.array_equal(tiny, whole)
    assert np.all(tiny.sum(axis=(1, 2)) == cm.sum())


def test_baseline_scores_always_predicting_the_majority_class():
    truth, pred = noisy_predictions(300, 0.8)
    result = evaluate(truth, pred, 4, baseline_class=1, n_resamples=200, seed=0)
    direct = metrics_from_confusion(confusion_matrix(truth, np.ones_like(truth), 4))
    for name in METRICS:
        assert result.baseline[name].value == pytest.approx(direct[name])
    assert result.baseline["balanced_accuracy"].value == pytest.approx(1 / 4)
    assert result.baseline_class == 1


def test_confusion_matrix_rows_are_truth_and_columns_predictions():
    truth, pred = noisy_predictions(1000, 0.5)
    result = evaluate(truth, pred, 4, baseline_class=0, n_resamples=10, seed=0)
    assert result.confusion.sum() == 1000
    assert result.confusion.sum(axis=1).tolist() == np.bincount(truth, minlength=4).tolist()
    assert result.confusion.sum(axis=0).tolist() == np.bincount(pred, minlength=4).tolist()
    assert result.to_json()["confusion_matrix"] == result.confusion.tolist()


def test_many_predictions_and_resamples_stay_exact_and_bounded():
    truth, pred = noisy_predictions(100_000, 0.7, k=5)
    result = evaluate(truth, pred, 5, baseline_class=0, n_resamples=1000, seed=0)
    assert result.n == 100_000 and result.n_resamples == 1000
    assert result.metrics["accuracy"].value == pytest.approx(np.mean(truth == pred))
    assert result.metrics["accuracy"].ci_high - result.metrics["accuracy"].ci_low < 0.01


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="3 labels but 2 predictions"):
        confusion_matrix(np.array([0, 1, 2]), np.array([0, 1]), 3)
    with pytest.raises(ValueError, match="class indices"):
        confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3)
    with pytest.raises(ValueError, match="n_resamples"):
        evaluate(np.array([0]), np.array([0]), 2, baseline_class=0, n_resamples=0, seed=0)
