"""Summary features derived from the sequences, for the sources that bring none (.ts, NumPy).

The summary models (gbt, knn, mlp) see only these, so per channel they carry the
series' shape as well as its level: spread, quantiles, moments, trend, roughness,
memory, where the extremes fall and a coarse outline (piecewise aggregate means).
Missing values (NaN) are skipped. A statistic a series does not define (a channel
with no value at all; skewness, kurtosis and autocorrelation of a constant series;
the slope of a single value) is 0, and values beyond the float32 range saturate,
so no feature is ever NaN or infinite. Plain numpy in a fixed order: same input,
same bytes.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np

from ..contract import Feature

QUANTILES = (0.10, 0.25, 0.50, 0.75, 0.90)
SEGMENTS = 8
ROWS_PER_CHUNK = 4096  # bounds the float64 working copies of a large import

# Statistic name -> what its feature's description says, in the order of the feature columns.
STATISTICS: tuple[tuple[str, str], ...] = (
    ("mean", "mean"),
    ("std", "standard deviation (population)"),
    ("min", "minimum"),
    ("max", "maximum"),
    ("q10", "10th percentile"),
    ("q25", "25th percentile"),
    ("q50", "median"),
    ("q75", "75th percentile"),
    ("q90", "90th percentile"),
    ("skew", "skewness (third standardised moment)"),
    ("kurt", "excess kurtosis (fourth standardised moment less 3)"),
    ("slope", "least-squares slope per time step"),
    ("absdiff", "mean absolute difference between consecutive steps"),
    ("acf1", "lag-1 autocorrelation"),
    ("argmin", "position of the minimum as a fraction of the length (0 first step, 1 last)"),
    ("argmax", "position of the maximum as a fraction of the length (0 first step, 1 last)"),
    *((f"paa{i}", f"mean of segment {i + 1} of {SEGMENTS} equal segments (piecewise aggregate)") for i in range(SEGMENTS)),
)
# Below this spread (relative to the level, at least 1) a series counts as constant: it has no shape.
_CONSTANT = 1e-12
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def feature_list(channels: tuple[str, ...]) -> tuple[Feature, ...]:
    """The derived features, channel by channel: `f_<channel>_<statistic>`."""
    return tuple(
        Feature(f"f_{channel}_{stat}", "realistic", f"{description} of channel {channel}")
        for channel in channels
        for stat, description in STATISTICS
    )


def summary_features(sequences: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
    """float32 `[n, channels * len(STATISTICS)]` in `feature_list` order; row i is computed on the
    first `lengths[i]` steps of window i (its series before padding), all of them by default."""
    n, steps, channels = sequences.shape
    lengths = np.full(n, steps) if lengths is None else np.asarray(lengths)
    out = np.empty((n, channels, len(STATISTICS)), dtype=np.float32)
    for length in np.unique(lengths):
        rows = np.flatnonzero(lengths == length)
        for start in range(0, len(rows), ROWS_PER_CHUNK):
            chunk = rows[start : start + ROWS_PER_CHUNK]
            series = np.asarray(sequences[chunk, :length], dtype=np.float64).transpose(0, 2, 1)
            out[chunk] = _statistics(series)
    return out.reshape(n, -1)


def _statistics(x: np.ndarray) -> np.ndarray:
    """`x` is float64 `[rows, channels, steps]` with NaN for missing values."""
    steps = x.shape[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        valid = ~np.isnan(x)
        count = valid.sum(-1)
        mean = np.where(valid, x, 0.0).sum(-1) / count
        d = np.where(valid, x - mean[..., None], 0.0)
        m2, m3, m4 = ((d**p).sum(-1) / count for p in (2, 3, 4))
        shaped = m2 > (_CONSTANT * np.maximum(1.0, np.abs(mean))) ** 2
        ordered = np.sort(x, axis=-1)
        last = np.maximum(count - 1, 0)
        stats = [
            mean,
            np.where(shaped, np.sqrt(m2), 0.0),
            ordered[..., 0],
            np.take_along_axis(ordered, last[..., None], -1)[..., 0],
            *(_quantile(ordered, last, q) for q in QUANTILES),
            np.where(shaped, m3 / m2**1.5, 0.0),
            np.where(shaped, m4 / m2**2 - 3.0, 0.0),
            _slope(valid, d, count),
            _mean_abs_diff(x),
            np.where(shaped, (d[..., 1:] * d[..., :-1]).sum(-1) / (d**2).sum(-1), 0.0),
            np.argmin(np.where(valid, x, np.inf), -1) / max(steps - 1, 1),
            np.argmax(np.where(valid, x, -np.inf), -1) / max(steps - 1, 1),
            *_segment_means(valid, d, mean),
        ]
    values = np.nan_to_num(np.stack(stats, axis=-1), nan=0.0)
    return np.clip(values, -_FLOAT32_MAX, _FLOAT32_MAX).astype(np.float32)


def _quantile(ordered: np.ndarray, last: np.ndarray, q: float) -> np.ndarray:
    """numpy's default (linear) quantile of each row's values, which `np.sort` put before its NaNs."""
    pos = q * last
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, last)
    below = np.take_along_axis(ordered, lo[..., None], -1)[..., 0]
    above = np.take_along_axis(ordered, hi[..., None], -1)[..., 0]
    return below + (pos - lo) * (above - below)


def _slope(valid: np.ndarray, d: np.ndarray, count: np.ndarray) -> np.ndarray:
    t = np.arange(valid.shape[-1], dtype=np.float64)
    t_mean = np.where(valid, t, 0.0).sum(-1) / count
    tc = np.where(valid, t - t_mean[..., None], 0.0)
    sxx = (tc**2).sum(-1)
    return np.where(sxx > 0, (tc * d).sum(-1) / sxx, 0.0)


def _mean_abs_diff(x: np.ndarray) -> np.ndarray:
    steps = np.abs(np.diff(x, axis=-1))
    both = ~np.isnan(steps)
    return np.where(both, steps, 0.0).sum(-1) / both.sum(-1)


def _segment_means(valid: np.ndarray, d: np.ndarray, mean: np.ndarray) -> list[np.ndarray]:
    """Means over SEGMENTS equal parts of the length, a step split between two parts where the length
    does not divide (each step holds its value over a unit of time); an empty part takes the mean."""
    steps = d.shape[-1]
    zero = np.zeros(d.shape[:-1] + (1,))
    level = np.concatenate([zero, np.cumsum(d, -1)], -1)
    seen = np.concatenate([zero, np.cumsum(valid, -1, dtype=np.float64)], -1)
    d_pad = np.concatenate([d, zero], -1)
    v_pad = np.concatenate([valid.astype(np.float64), zero], -1)

    def upto(boundary: int) -> tuple[np.ndarray, np.ndarray]:
        """Sum of deviations and of values seen before time `boundary / SEGMENTS * steps`."""
        k, frac = divmod(boundary * steps, SEGMENTS)
        frac /= SEGMENTS
        return level[..., k] + frac * d_pad[..., k], seen[..., k] + frac * v_pad[..., k]

    bounds = [upto(s) for s in range(SEGMENTS + 1)]
    means = []
    for (sum_a, n_a), (sum_b, n_b) in pairwise(bounds):
        n_seg = n_b - n_a
        means.append(np.where(n_seg > 0, mean + (sum_b - sum_a) / n_seg, mean))
    return means
