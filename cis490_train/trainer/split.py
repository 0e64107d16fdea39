"""Train/validation/test splits that cannot leak.

`host` asks whether a model carries over to machines it never saw, `time`
whether it carries over to the future of the machines it saw, `sample` how well
it fits the pooled data (the easy, optimistic number). Only labelled windows
enter supervised train/val/test; unlabelled windows on the train side are
offered to semi-supervised models, never those on the test side.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import DataError

RECIPES = ("host", "sample", "time")
TEST_FRACTION = 0.3
VAL_FRACTION = 0.1


@dataclass(frozen=True, eq=False)
class Split:
    """Row indices (sorted, disjoint) into the dataset."""

    recipe: str
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    unlabelled: np.ndarray


def make_split(
    recipe: str,
    host: np.ndarray,
    window_start_ms: np.ndarray,
    label: np.ndarray,
    *,
    seed: int,
    train_hosts: Sequence[str] = (),
    window_seconds: float | None = None,
    test_fraction: float = TEST_FRACTION,
    val_fraction: float = VAL_FRACTION,
) -> Split:
    """Split the rows; `label` is -1 for unlabelled windows."""
    if recipe not in RECIPES:
        raise DataError(f"unknown split recipe {recipe!r}; valid recipes: {', '.join(RECIPES)}")
    label = np.asarray(label)
    host = np.asarray(host).astype(str)
    rng = np.random.default_rng([seed, RECIPES.index(recipe)])
    if recipe == "host":
        train_side, test_side = _by_host(host, train_hosts)
    elif recipe == "sample":
        train_side = np.ones(len(label), dtype=bool)
        test_side = np.zeros(len(label), dtype=bool)
        test_side[_stratified_pick(np.flatnonzero(label >= 0), label, test_fraction, rng)] = True
        train_side &= ~test_side
    else:
        train_side, test_side = _by_time(host, np.asarray(window_start_ms), window_seconds, test_fraction)
    labelled = label >= 0
    train = np.flatnonzero(train_side & labelled)
    test = np.flatnonzero(test_side & labelled)
    if len(train) == 0:
        raise DataError(f"the {recipe} split leaves no labelled window to train on")
    if len(test) == 0:
        raise DataError(f"the {recipe} split leaves no labelled window to test on")
    val = np.sort(_stratified_pick(train, label, val_fraction, rng))
    train = np.setdiff1d(train, val, assume_unique=True)
    return Split(recipe, train, val, test, np.flatnonzero(train_side & ~labelled))


def _by_host(host: np.ndarray, train_hosts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    present = sorted(set(host.tolist()))
    if not train_hosts:
        raise DataError("the host split needs train_hosts (the hosts to train on)")
    unknown = [h for h in train_hosts if h not in present]
    if unknown:
        raise DataError(f"train_hosts {unknown} are not in the data; its hosts are {present}")
    train_side = np.isin(host, list(train_hosts))
    if train_side.all():
        raise DataError(f"train_hosts {list(train_hosts)} cover every host in the data; no host is left to test on")
    return train_side, ~train_side


def _by_time(
    host: np.ndarray, start: np.ndarray, window_seconds: float | None, test_fraction: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per host, a cut time: test windows start at or after it, train windows end at or before it."""
    length_ms = int(round(window_seconds * 1000)) if window_seconds else 0
    train_side = np.zeros(len(host), dtype=bool)
    test_side = np.zeros(len(host), dtype=bool)
    for name in np.unique(host):
        rows = np.flatnonzero(host == name)
        times = np.sort(start[rows])
        cut = times[min(len(times) - 1, int(np.floor(len(times) * (1 - test_fraction))))]
        test_side[rows] = start[rows] >= cut
        train_side[rows] = start[rows] + length_ms <= cut
    return train_side, test_side


def _stratified_pick(rows: np.ndarray, label: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A seeded `fraction` of `rows`, taken class by class so every class keeps its share."""
    picked = []
    for k in np.unique(label[rows]):
        members = rows[label[rows] == k]
        take = int(round(len(members) * fraction))
        if take:
            picked.append(rng.permutation(members)[:take])
    return np.sort(np.concatenate(picked)) if picked else np.empty(0, dtype=np.int64)
