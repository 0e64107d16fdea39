"""`cis490-train export`: the results table as a flat file (Parquet or CSV) for notebooks and sheets.

The rows are `views.leaderboard_rows`, the same as `cis490-train results`,
flattened to one column per metric, CI bound and baseline, with the data each
job was trained on last (null for jobs trained before reports said). Files are
written atomically, so a reader never sees half an export.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from ..atomic import atomic_path
from ..core.scores import METRICS

FORMATS = ("parquet", "csv")
DEFAULT_NAMES = {fmt: f"results.{fmt}" for fmt in FORMATS}

_TEXT = ("job", "job_id", "model", "mode", "split")
_TAIL = (("host", "string"), ("duration_s", "double"), ("artifact_id", "string"))
_DATA = (("dataset", "name"), ("data_fingerprint", "fingerprint"), ("schema_hash", "schema_hash"))


def columns() -> list[tuple[str, str]]:
    """(name, type) of every column, in order; the type is pyarrow's name for it."""
    cols = [(name, "string") for name in _TEXT]
    for prefix in ("", "baseline_"):
        for metric in METRICS:
            cols += [(f"{prefix}{metric}", "double"), (f"{prefix}{metric}_ci_low", "double"), (f"{prefix}{metric}_ci_high", "double")]
    return cols + list(_TAIL) + [(name, "string") for name, _ in _DATA]


def flat_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Leaderboard rows with their nested metrics spread into columns (None where a value is missing)."""
    flat = []
    for row in rows:
        out = {name: row.get(name) for name in _TEXT}
        for prefix, source in (("", row.get("metrics") or {}), ("baseline_", row.get("baseline") or {})):
            for metric in METRICS:
                m = source.get(metric) or {}
                out[f"{prefix}{metric}"] = m.get("value")
                out[f"{prefix}{metric}_ci_low"] = m.get("ci_low")
                out[f"{prefix}{metric}_ci_high"] = m.get("ci_high")
        out.update({name: row.get(name) for name, _ in _TAIL})
        dataset = row.get("dataset") or {}
        out.update({name: dataset.get(key) or None for name, key in _DATA})
        flat.append(out)
    return flat


def write(rows: list[dict[str, Any]], path: Path, fmt: str) -> int:
    """Write the flattened rows to `path` in `fmt`; returns how many rows were written."""
    flat = flat_rows(rows)
    if fmt == "parquet":
        _write_parquet(flat, path)
    elif fmt == "csv":
        _write_csv(flat, path)
    else:
        raise ValueError(f"unknown export format {fmt!r}; valid: {', '.join(FORMATS)}")
    return len(flat)


def _write_parquet(flat: list[dict[str, Any]], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(name, pa.type_for_alias(kind)) for name, kind in columns()])
    table = pa.Table.from_pylist(flat, schema=schema)
    with atomic_path(path, suffix=".parquet") as tmp:
        pq.write_table(table, tmp)


def _write_csv(flat: list[dict[str, Any]], path: Path) -> None:
    with atomic_path(path, suffix=".csv") as tmp:
        with tmp.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=[name for name, _ in columns()])
            writer.writeheader()
            writer.writerows(flat)
