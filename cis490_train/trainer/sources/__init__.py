"""Bringing outside data into the data contract: UCR/UEA `.ts` problems, NumPy arrays, Parquet tables.

Each reader turns its source into `Windows` and refuses bad input with one
`DataError` before anything is written; only then is the dataset published,
atomically, so a failed import leaves the output directory as it was.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import DataError, UsageError
from ..contract import Schema, windows_table
from ..publish import publish, refuse_foreign_dir
from .arrays import X_FILE, read_arrays
from .table import read_table
from .ucr import TRAIN_SUFFIX, read_problem

FORMATS = ("auto", "ts", "npy", "parquet")
PARQUET_SUFFIXES = (".parquet", ".pq")


def import_dataset(source: Path, out: Path, *, fmt: str = "auto", name: str | None = None, pad: bool = False) -> Schema:
    """Read `source` in format `fmt` (`auto`: told by its name) and write the dataset to `out`."""
    source, out = Path(source), Path(out)
    if fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    if name is not None and not name.strip():
        raise UsageError("--name is empty; give the dataset a name, or leave --name out to take the source's")
    if not source.exists():
        raise DataError(f"{source}: no such file or directory")
    fmt = detect_format(source) if fmt == "auto" else fmt
    if pad and fmt != "ts":
        raise UsageError(f"--pad pads the unequal-length series of a .ts problem; a {fmt} source is already rectangular")
    refuse_foreign_dir(out)
    if fmt == "ts":
        windows = read_problem(source, name=name, pad=pad)
    elif fmt == "npy":
        windows = read_arrays(source, name=name)
    else:
        windows = read_table(source, name=name)
    schema = windows.schema()
    table = windows_table(schema, windows.hosts, windows.starts_ms, windows.labels, windows.feature_values)
    publish(out, schema, table, windows.sequences)
    return schema


def detect_format(source: Path) -> str:
    if source.is_dir():
        if any(source.glob(f"*{TRAIN_SUFFIX}")):
            return "ts"
        if (source / X_FILE).is_file():
            return "npy"
    elif source.suffix == ".ts":
        return "ts"
    elif source.suffix.lower() in PARQUET_SUFFIXES:
        return "parquet"
    raise DataError(
        f"{source}: cannot tell its format; give a <Name>{TRAIN_SUFFIX} file or a directory holding one (ts), "
        f"a directory with {X_FILE} and y.npy (npy), or a .parquet file (parquet), or name it with --format"
    )
