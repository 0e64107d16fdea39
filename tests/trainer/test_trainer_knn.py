"""kNN's two spaces: whole windows (the 1-NN-ED recipe at the defaults) and summary features."""

from __future__ import annotations

import numpy as np
import pytest

from cis490_train.core.hyper import resolve
from cis490_train.errors import DataError
from cis490_train.trainer.models import ModelConfig, Part, model_class


def make(model: str = "knn", n_classes: int = 3, **hyper):
    cls = model_class(model)
    return cls(ModelConfig(resolve(model, hyper), n_classes=n_classes, seed=0, threads=1))


def noise_part(rng, n: int, length: int = 50, channels: int = 2, features: np.ndarray | None = None) -> Part:
    y = rng.integers(0, 3, size=n)
    seq = rng.normal(size=(n, length, channels)).astype(np.float32)
    return Part(y=y, features=features, sequences=seq)


def test_defaults_are_one_nearest_neighbour_on_the_raw_window():
    rng = np.random.default_rng(0)
    train = noise_part(rng, 60, channels=1)
    test = noise_part(rng, 40, channels=1)
    knn = make()
    assert knn.inputs == "sequence"
    knn.fit(train, train.empty(), lambda p: None)
    a, b = train.sequences.reshape(60, -1), test.sequences.reshape(40, -1)
    nearest = ((b[:, None, :] - a[None, :, :]) ** 2).sum(axis=2).argmin(axis=1)
    assert np.array_equal(knn.predict(test), train.y[nearest])


def test_feature_space_reads_the_summary_features():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, size=200)
    features = (y[:, None] * 3.0 + rng.normal(scale=0.3, size=(200, 4))).astype(np.float32)
    knn = make(space="features", n_neighbors=5)
    assert knn.inputs == "summary"
    knn.fit(Part(y=y[:150], features=features[:150]), Part(y=y[:0], features=features[:0]), lambda p: None)
    test = Part(y=y[150:], features=features[150:])
    assert np.mean(knn.predict(test) == test.y) > 0.95


def test_validation_windows_become_neighbours_once_scored():
    rng = np.random.default_rng(2)
    train, val = noise_part(rng, 30), noise_part(rng, 10)
    seen = []
    knn = make()
    knn.fit(train, val, seen.append)
    assert seen[-1].metric is not None  # scored on train-only neighbours first
    assert knn.fit_info()["n_memorised"] == 40
    assert np.array_equal(knn.predict(val), val.y)  # each validation window is its own nearest neighbour now


def test_oracle_features_weigh_as_much_as_the_whole_window_and_survive_a_reload(tmp_path):
    """Two separating columns beside 100 noise steps: unweighted they would drown."""
    rng = np.random.default_rng(3)

    def with_oracle(n):
        part = noise_part(rng, n)
        oracle = (np.eye(3)[part.y][:, :2] * 4.0 + rng.normal(scale=0.2, size=(n, 2))).astype(np.float32)
        return Part(y=part.y, features=oracle, sequences=part.sequences)

    train, test = with_oracle(150), with_oracle(100)
    knn = make()
    knn.fit(train, train.empty(), lambda p: None)
    assert knn.feature_weight == np.sqrt(100 / 2)
    assert np.mean(knn.predict(test) == test.y) > 0.9
    blind = make()
    blind.fit(Part(y=train.y, sequences=train.sequences), train.empty(), lambda p: None)
    assert np.mean(blind.predict(Part(y=test.y, sequences=test.sequences)) == test.y) < 0.6
    knn.save(tmp_path)
    again = model_class("knn").load(tmp_path)
    assert again.inputs == "sequence" and np.array_equal(again.predict(test), knn.predict(test))


def test_weights_of_another_format_are_refused_with_a_retrain_hint(tmp_path):
    import torch

    rng = np.random.default_rng(4)
    train = noise_part(rng, 20)
    knn = make()
    knn.fit(train, train.empty(), lambda p: None)
    knn.save(tmp_path)
    payload = torch.load(tmp_path / "model.pt", weights_only=True)
    torch.save({**payload, "format": 1}, tmp_path / "model.pt")
    with pytest.raises(DataError, match=r"knn weights of format 1; this trainer reads format 2 \(retrain"):
        model_class("knn").load(tmp_path)
