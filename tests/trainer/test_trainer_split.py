"""Split recipes: what each one promises, and that nothing leaks across."""

from __future__ import annotations

import numpy as np
import pytest

from cis490_train.errors import DataError
from cis490_train.trainer.data import load_dataset
from cis490_train.trainer.split import make_split

TRAIN_HOST = "elliott-thinkpad"


@pytest.fixture(scope="module")
def data(dataset):
    return load_dataset(dataset, summary=False)


def split(data, recipe, seed=0, train_hosts=(TRAIN_HOST,)):
    return make_split(
        recipe,
        data.host,
        data.window_start_ms,
        data.label,
        seed=seed,
        train_hosts=train_hosts,
        window_seconds=data.schema.window_seconds,
    )


@pytest.mark.parametrize("recipe", ["host", "sample", "time"])
def test_no_window_is_on_two_sides(data, recipe):
    s = split(data, recipe)
    parts = [s.train, s.val, s.test, s.unlabelled]
    for i, a in enumerate(parts):
        assert np.all(np.diff(a) > 0), "indices are sorted and unique"
        for b in parts[i + 1 :]:
            assert not np.intersect1d(a, b).size
    assert s.train.size and s.val.size and s.test.size


@pytest.mark.parametrize("recipe", ["host", "sample", "time"])
def test_supervised_parts_hold_only_labelled_windows(data, recipe):
    s = split(data, recipe)
    assert np.all(data.label[np.concatenate([s.train, s.val, s.test])] >= 0)
    assert np.all(data.label[s.unlabelled] == -1)


def test_host_split_keeps_hosts_apart(data):
    s = split(data, "host")
    train_hosts = set(data.host[np.concatenate([s.train, s.val, s.unlabelled])])
    test_hosts = set(data.host[s.test])
    assert train_hosts == {TRAIN_HOST}
    assert test_hosts == set(data.host) - {TRAIN_HOST}
    labelled = np.flatnonzero(data.label >= 0)
    assert s.train.size + s.val.size + s.test.size == labelled.size


def test_host_split_accepts_several_train_hosts(data):
    hosts = (TRAIN_HOST, "curie-laptop")
    s = split(data, "host", train_hosts=hosts)
    assert set(data.host[s.train]) == set(hosts)
    assert not set(data.host[s.test]) & set(hosts)


def test_host_split_refuses_unknown_or_exhaustive_train_hosts(data):
    with pytest.raises(DataError, match=r"\['nobody-laptop'\] are not in the data; its hosts are"):
        split(data, "host", train_hosts=(TRAIN_HOST, "nobody-laptop"))
    with pytest.raises(DataError, match="no host is left to test on"):
        split(data, "host", train_hosts=tuple(set(data.host)))
    with pytest.raises(DataError, match="needs train_hosts"):
        split(data, "host", train_hosts=())


def test_time_split_tests_only_on_each_hosts_later_windows(data):
    s = split(data, "time")
    length = int(data.schema.window_seconds * 1000)
    for host in np.unique(data.host):
        train = np.concatenate([s.train, s.val, s.unlabelled])
        train = train[data.host[train] == host]
        test = s.test[data.host[s.test] == host]
        assert train.size and test.size, host
        assert data.window_start_ms[train].max() + length <= data.window_start_ms[test].min(), host


def test_time_split_drops_train_windows_that_straddle_the_cut():
    """Overlapping windows (60 s long, every 30 s): the one ending after the cut is in neither part."""
    n = 20
    start = np.arange(n, dtype=np.int64) * 30_000
    label = np.arange(n) % 2
    s = make_split("time", np.array(["h"] * n), start, label, seed=0, window_seconds=60, val_fraction=0)
    cut = start[s.test].min()
    assert np.all(start[s.train] + 60_000 <= cut)
    straddling = np.flatnonzero((start < cut) & (start + 60_000 > cut))
    assert straddling.size == 1
    assert not np.isin(straddling, np.concatenate([s.train, s.test])).any()


def test_sample_split_is_stratified(data):
    s = split(data, "sample")
    labelled = data.label[data.label >= 0]
    for k in range(len(data.schema.classes)):
        assert np.sum(data.label[s.test] == k) == round(np.sum(labelled == k) * 0.3)


def test_sample_split_follows_the_seed(data):
    a, b, c = split(data, "sample", seed=0), split(data, "sample", seed=0), split(data, "sample", seed=1)
    assert np.array_equal(a.test, b.test) and np.array_equal(a.val, b.val)
    assert not np.array_equal(a.test, c.test)
    assert a.test.size == c.test.size


def test_validation_comes_from_the_train_side(data):
    s = split(data, "host")
    assert set(data.host[s.val]) == {TRAIN_HOST}
    assert 0.05 < s.val.size / (s.val.size + s.train.size) < 0.15


def test_unknown_recipe_is_refused(data):
    with pytest.raises(DataError, match="unknown split recipe 'random'"):
        split(data, "random")


def test_a_split_without_test_windows_is_refused():
    label = np.array([0, 1, -1, -1])
    host = np.array(["a", "a", "b", "b"])
    with pytest.raises(DataError, match="no labelled window to test on"):
        make_split("host", host, np.arange(4), label, seed=0, train_hosts=("a",))
