"""The summary features derived for sources without any: each statistic as defined, always finite,
computed on the series before padding, the same bytes every time."""

from __future__ import annotations

import numpy as np
import pytest

from cis490_train.trainer.sources.features import SEGMENTS, STATISTICS, feature_list, summary_features

NAMES = [name for name, _ in STATISTICS]


def _reference(series: np.ndarray) -> dict[str, float]:
    """Each statistic of one series written out the long way, with numpy's own NaN-aware functions."""
    v = series.astype(np.float64)
    ok = ~np.isnan(v)
    w, t = v[ok], np.arange(len(v))[ok]
    d = np.where(ok, v - w.mean(), 0.0)
    ref = {
        "mean": w.mean(),
        "std": w.std(),
        "min": w.min(),
        "max": w.max(),
        "skew": np.mean((w - w.mean()) ** 3) / w.std() ** 3,
        "kurt": np.mean((w - w.mean()) ** 4) / w.std() ** 4 - 3,
        "slope": np.polyfit(t, w, 1)[0],
        "absdiff": np.nanmean(np.abs(np.diff(v))),
        "acf1": np.sum(d[1:] * d[:-1]) / np.sum(d**2),
        "argmin": np.nanargmin(v) / (len(v) - 1),
        "argmax": np.nanargmax(v) / (len(v) - 1),
    }
    for q in (10, 25, 50, 75, 90):
        ref[f"q{q}"] = np.quantile(w, q / 100)
    # Piecewise aggregate: every value held for SEGMENTS sub-steps, then SEGMENTS equal parts;
    # a part that holds only missing values takes the mean.
    for i, part in enumerate(np.repeat(v, SEGMENTS).reshape(SEGMENTS, -1)):
        ref[f"paa{i}"] = np.nanmean(part) if not np.isnan(part).all() else w.mean()
    return ref


@pytest.mark.parametrize("length", [24, 13, 5])
def test_each_statistic_matches_its_definition(length):
    rng = np.random.default_rng(length)
    x = rng.normal(size=(4, length, 3)).astype(np.float32) * np.array([1.0, 50.0, 0.01], dtype=np.float32)
    x[1, 2, 0] = np.nan
    x[2, length - 1, 2] = np.nan
    got = summary_features(x).reshape(4, 3, len(STATISTICS))
    for row in range(4):
        for channel in range(3):
            ref = _reference(x[row, :, channel])
            for stat, value in ref.items():
                assert got[row, channel, NAMES.index(stat)] == pytest.approx(value, rel=1e-4, abs=1e-5), (row, channel, stat)


def test_undefined_statistics_are_zero_and_every_feature_is_finite():
    x = np.zeros((4, 6, 1), dtype=np.float32)
    x[0, :, 0] = 3.5  # constant: no spread, no shape
    x[1, :, 0] = np.nan  # nothing at all
    x[2, :, 0] = [np.nan, 1.0, np.nan, np.nan, np.nan, np.nan]  # one value
    x[3, :, 0] = [3e38, -3e38, 3e38, -3e38, 3e38, -3e38]  # at the edge of float32
    got = summary_features(x)
    assert np.isfinite(got).all() and got.dtype == np.float32
    constant = dict(zip(NAMES, got[0], strict=True))
    assert constant["mean"] == constant["min"] == constant["q50"] == constant["paa7"] == 3.5
    assert constant["std"] == constant["skew"] == constant["kurt"] == constant["acf1"] == constant["slope"] == 0.0
    assert not got[1].any()
    single = dict(zip(NAMES, got[2], strict=True))
    assert single["mean"] == single["max"] == 1.0 and single["argmax"] == pytest.approx(0.2)
    assert single["slope"] == single["absdiff"] == single["std"] == 0.0
    assert single["paa0"] == 1.0  # a part holding no value takes the mean


def test_one_step_windows_have_features():
    got = summary_features(np.array([[[2.0, -1.0]]], dtype=np.float32)).reshape(2, -1)
    assert np.isfinite(got).all()
    assert got[0, NAMES.index("mean")] == 2.0 and got[1, NAMES.index("paa3")] == -1.0


def test_lengths_restrict_each_row_to_its_series_before_padding():
    rng = np.random.default_rng(1)
    padded = rng.normal(size=(3, 10, 2)).astype(np.float32)
    lengths = np.array([10, 4, 7])
    got = summary_features(padded, lengths)
    for row, length in enumerate(lengths):
        assert np.array_equal(got[row], summary_features(padded[row : row + 1, :length])[0])


def test_same_input_same_bytes_and_names_follow_the_channels():
    x = np.random.default_rng(2).normal(size=(50, 16, 3)).astype(np.float32)
    assert summary_features(x).tobytes() == summary_features(x.copy()).tobytes()
    features = feature_list(("dim_0", "dim_1", "dim_2"))
    assert [f.name for f in features[: len(NAMES)]] == [f"f_dim_0_{stat}" for stat in NAMES]
    assert features[-1].name == f"f_dim_2_paa{SEGMENTS - 1}"
    assert all(f.kind == "realistic" and "channel dim_" in f.description for f in features)
    assert features[NAMES.index("kurt")].description == "excess kurtosis (fourth standardised moment less 3) of channel dim_0"
