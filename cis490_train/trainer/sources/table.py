"""A Parquet table of windows as windows: a `label` column, optional `host` and `window_start`,
and the feature columns.

`f_*` columns are realistic features and `o_*` oracle ones, as named; any other
numeric column is a realistic feature `f_<name>`. A table has no sequences, so the
tensor of a window is one time step with one channel per realistic feature
(`[1, n_realistic]`, channels named as those features): the sequence models still
run, on the same information the summary models see. A null label is an
unlabelled window, as in the contract's own table. A `window_id` column is ignored:
windows are numbered in row order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import SourceError
from ..contract import KIND_PREFIX, Feature
from .windows import PLACEHOLDER_HOST, PLACEHOLDER_TIMES, Windows, class_names, file_record, placeholder_hosts, placeholder_times

LABEL, HOST, START, WINDOW_ID = "label", "host", "window_start", "window_id"
_RESERVED = (LABEL, HOST, START, WINDOW_ID)


def read_table(source: Path, *, name: str | None = None) -> Windows:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not source.is_file():
        raise SourceError(source, "a Parquet source is one .parquet file")
    try:
        table = pq.read_table(source)
    except (OSError, pa.ArrowException) as exc:
        raise SourceError(source, f"is not a readable Parquet file ({exc})") from None
    if LABEL not in table.column_names:
        raise SourceError(source, f"has no {LABEL!r} column; a table of windows needs one (null: unlabelled)")
    if table.num_rows == 0:
        raise SourceError(source, "has no rows")
    n = table.num_rows
    labels = _labels(source, table.column(LABEL))
    values, features = _features(source, table)
    realistic = [j for j, f in enumerate(features) if f.kind == "realistic"]
    record = {
        "format": "parquet",
        "name": name or source.stem,
        "files": [file_record(source)],
        "features": {"derived": False, "from": "the table's numeric columns", "sequence": "one step, one channel per realistic feature"},
        "padding": None,
        "hosts": f"from the {HOST!r} column" if HOST in table.column_names else f"{PLACEHOLDER_HOST!r} for every window (no {HOST!r} column)",
        "window_start": f"from the {START!r} column" if START in table.column_names else PLACEHOLDER_TIMES,
    }
    return Windows(
        sequences=np.ascontiguousarray(values[:, None, realistic]),
        labels=labels,
        classes=class_names(labels),
        hosts=_hosts(source, table.column(HOST)) if HOST in table.column_names else placeholder_hosts(n),
        starts_ms=_starts(source, table.column(START)) if START in table.column_names else placeholder_times(n),
        channels=tuple(features[j].name for j in realistic),
        features=features,
        feature_values=values,
        source=record,
    )


def _labels(source: Path, column) -> np.ndarray:
    import pyarrow as pa

    kind = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind)):
        raise SourceError(source, f"column {LABEL!r} has type {column.type}; labels are strings or integers (null: unlabelled)")
    labels = np.array([None if v is None else str(v) for v in column.to_pylist()], dtype=object)
    if any(label is not None and not label.strip() for label in labels):
        raise SourceError(source, f"column {LABEL!r} has empty labels; give a class name, or null for an unlabelled window")
    if all(label is None for label in labels):
        raise SourceError(source, f"column {LABEL!r} labels no window; at least one window needs a class")
    return labels


def _hosts(source: Path, column) -> np.ndarray:
    import pyarrow as pa

    kind = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise SourceError(source, f"column {HOST!r} has type {column.type}; host names are strings")
    hosts = np.array(column.to_pylist(), dtype=object)
    if any(h is None or not h.strip() for h in hosts):
        raise SourceError(source, f"column {HOST!r} has null or empty host names; every window needs its host")
    return hosts


def _starts(source: Path, column) -> np.ndarray:
    import pyarrow as pa

    if column.null_count:
        raise SourceError(source, f"column {START!r} has {column.null_count} null values; every window needs its start")
    if pa.types.is_timestamp(column.type):
        # An instant is the same in every zone; a timestamp without a zone is read as UTC.
        return column.cast(pa.timestamp("ms", tz=column.type.tz), safe=False).cast(pa.int64()).to_numpy()
    if pa.types.is_integer(column.type):
        return column.cast(pa.int64()).to_numpy()
    raise SourceError(source, f"column {START!r} has type {column.type}; give a timestamp, or int64 milliseconds since the epoch")


def _features(source: Path, table) -> tuple[np.ndarray, tuple[Feature, ...]]:
    import pyarrow as pa

    names: list[tuple[str, str]] = []
    for column in table.column_names:
        if column in _RESERVED:
            continue
        kind = table.column(column).type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)):
            raise SourceError(
                source,
                f"column {column!r} has type {kind}: other columns than {', '.join(_RESERVED)} are features, and features are numeric",
            )
        names.append((column, column if column.startswith(tuple(KIND_PREFIX.values())) else f"{KIND_PREFIX['realistic']}{column}"))
    taken = [feature for _, feature in names]
    twice = sorted({f for f in taken if taken.count(f) > 1})
    if twice:
        raise SourceError(source, f"feature names {twice} come from two columns each (a column x becomes f_x); rename one of each")
    if not any(feature.startswith(KIND_PREFIX["realistic"]) for feature in taken):
        raise SourceError(source, "has no realistic feature column (f_*, or any other numeric column); at least one is needed")
    values = np.empty((table.num_rows, len(names)), dtype=np.float32)
    for j, (column, _) in enumerate(names):
        data = table.column(column).cast(pa.float64()).to_numpy(zero_copy_only=False)
        with np.errstate(over="ignore"):
            values[:, j] = data
        bad = ~np.isfinite(values[:, j])
        if bad.any():
            rows = np.flatnonzero(bad)[:3].tolist()
            raise SourceError(source, f"column {column!r} has {int(bad.sum())} null, NaN or non-float32 values (rows {rows}...); features are finite numbers")
    features = tuple(
        Feature(feature, "oracle" if feature.startswith(KIND_PREFIX["oracle"]) else "realistic", f"column {column!r} of {source.name}")
        for column, feature in names
    )
    return values, features
