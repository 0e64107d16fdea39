"""A directory of NumPy arrays as windows: `X.npy` and `y.npy`, optionally `hosts.npy` and `times.npy`.

Arrays are loaded without pickling (a pickled array can run code when loaded), so
labels and hosts have to be string or integer arrays, not Python objects.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import SourceError
from .windows import PLACEHOLDER_HOST, PLACEHOLDER_TIMES, Windows, class_names, file_record, placeholder_hosts, placeholder_times

X_FILE, Y_FILE, HOSTS_FILE, TIMES_FILE = "X.npy", "y.npy", "hosts.npy", "times.npy"
_NO_PICKLE = "save strings as a string array, e.g. np.save(path, np.asarray(values, dtype=str))"


def read_arrays(source: Path, *, name: str | None = None) -> Windows:
    if not source.is_dir():
        raise SourceError(source, f"a NumPy source is a directory holding {X_FILE} and {Y_FILE}")
    missing = [f for f in (X_FILE, Y_FILE) if not (source / f).is_file()]
    if missing:
        raise SourceError(source, f"has no {' or '.join(missing)}; a NumPy source holds {X_FILE} and {Y_FILE} (optionally {HOSTS_FILE}, {TIMES_FILE})")
    sequences = _sequences(source / X_FILE)
    n = len(sequences)
    labels = _labels(source / Y_FILE, n)
    hosts_file, times_file = source / HOSTS_FILE, source / TIMES_FILE
    given = [f for f in (hosts_file, times_file) if f.is_file()]
    record = {
        "format": "npy",
        "name": name or source.resolve().name,
        "files": [file_record(f) for f in (source / X_FILE, source / Y_FILE, *given)],
        "padding": None,
        "hosts": f"from {HOSTS_FILE}" if hosts_file in given else f"{PLACEHOLDER_HOST!r} for every window (no {HOSTS_FILE})",
        "window_start": f"from {TIMES_FILE}" if times_file in given else PLACEHOLDER_TIMES,
    }
    hosts = _hosts(hosts_file, n) if hosts_file in given else placeholder_hosts(n)
    times = _times(times_file, n) if times_file in given else placeholder_times(n)
    return Windows.derived(sequences, labels, class_names(labels), hosts, times, record)


def _load(path: Path, hint: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise SourceError(path, f"holds Python objects, which are not loaded (pickles can run code); {hint}") from None
        raise SourceError(path, f"is not a readable .npy array ({exc})") from None
    except (OSError, EOFError) as exc:
        raise SourceError(path, f"is not a readable .npy array ({exc})") from None


def _one_per_window(path: Path, values: np.ndarray, n: int, what: str) -> None:
    if values.ndim != 1:
        raise SourceError(path, f"has shape {list(values.shape)}; it must be 1-D, one {what} per window of {X_FILE}")
    if len(values) != n:
        raise SourceError(path, f"has {len(values)} {what}s but {X_FILE} has {n} windows; give one {what} per window")


def _sequences(path: Path) -> np.ndarray:
    x = _load(path, f"{X_FILE} must be a numeric array")
    if x.ndim not in (2, 3):
        raise SourceError(path, f"has shape {list(x.shape)} (rank {x.ndim}); valid: [n, length, channels], or [n, length] for one channel")
    if x.dtype.kind not in "iuf":
        raise SourceError(path, f"has dtype {x.dtype}; it must hold integers or floats")
    if 0 in x.shape:
        raise SourceError(path, f"is empty (shape {list(x.shape)}); it needs at least one window of one step")
    with np.errstate(over="ignore"):
        x = x.astype(np.float32)
    if x.ndim == 2:
        x = x[:, :, None]
    bad = np.isinf(x)
    if bad.any():
        window = int(np.argwhere(bad)[0][0])
        raise SourceError(path, f"window {window} holds an infinite value (or one beyond the float32 range); NaN marks a missing value")
    return x


def _labels(path: Path, n: int) -> np.ndarray:
    y = _load(path, f"{_NO_PICKLE}, or save integer labels")
    _one_per_window(path, y, n, "label")
    if y.dtype.kind == "f":
        missing = np.isnan(y)
        if missing.any():
            raise SourceError(path, f"has {int(missing.sum())} missing (NaN) labels, the first at window {int(np.argmax(missing))}; every window needs a label")
        if not np.array_equal(y, np.round(y)):
            raise SourceError(path, "holds fractional numbers; labels are strings or integers (class numbers)")
        y = y.astype(np.int64)
    if y.dtype.kind in "iu":
        return np.array([str(v) for v in y.tolist()], dtype=object)
    if y.dtype.kind in "US":
        labels = _strings(path, y)
        empty = np.array([not label.strip() for label in labels])
        if empty.any():
            raise SourceError(path, f"has {int(empty.sum())} empty labels, the first at window {int(np.argmax(empty))}; every window needs a label")
        return labels
    raise SourceError(path, f"has dtype {y.dtype}; labels are strings or integers")


def _hosts(path: Path, n: int) -> np.ndarray:
    hosts = _load(path, _NO_PICKLE)
    _one_per_window(path, hosts, n, "host name")
    if hosts.dtype.kind not in "US":
        raise SourceError(path, f"has dtype {hosts.dtype}; host names are strings ({_NO_PICKLE})")
    names = _strings(path, hosts)
    empty = np.array([not name.strip() for name in names])
    if empty.any():
        raise SourceError(path, f"has {int(empty.sum())} empty host names, the first at window {int(np.argmax(empty))}")
    return names


def _times(path: Path, n: int) -> np.ndarray:
    times = _load(path, "save int64 milliseconds since the epoch, or datetime64")
    _one_per_window(path, times, n, "start time")
    if times.dtype.kind == "M":
        if np.isnat(times).any():
            raise SourceError(path, f"has a missing time (NaT) at window {int(np.argmax(np.isnat(times)))}; every window needs its start")
        return times.astype("datetime64[ms]").astype(np.int64)
    if times.dtype.kind in "iu":
        return times.astype(np.int64)
    raise SourceError(path, f"has dtype {times.dtype}; times are int64 milliseconds since the epoch, or datetime64")


def _strings(path: Path, values: np.ndarray) -> np.ndarray:
    try:
        return np.array([v.decode() if isinstance(v, bytes) else v for v in values.tolist()], dtype=object)
    except UnicodeDecodeError:
        raise SourceError(path, "holds bytes that are not UTF-8 text") from None
