"""Writing a dataset directory atomically: a reader sees the old dataset or the whole new one.

Every writer of datasets (the synthetic generator, the importers) goes through
`publish`, so none of them can leave a half-written directory or a temporary
sibling behind, and none replaces a directory that is not a dataset.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from ..atomic import fsync_dir, fsync_file, temp_sibling
from ..errors import DataError
from .contract import SCHEMA_FILE, SEQUENCES_FILE, WINDOWS_FILE, Schema


def refuse_foreign_dir(out: Path) -> None:
    """Replacing a dataset is fine; replacing someone's unrelated non-empty directory is not."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / SCHEMA_FILE).exists())):
        raise DataError(f"refusing to overwrite {out}: it exists and is not a dataset directory")


def publish(out: Path, schema: Schema, table, sequences: np.ndarray) -> None:
    """Write into a temporary sibling, fsync it, then swap it in: `out` is never half-written."""
    import pyarrow.parquet as pq

    refuse_foreign_dir(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(out)
    tmp.mkdir()
    try:
        pq.write_table(table, tmp / WINDOWS_FILE, compression="zstd")
        with open(tmp / SEQUENCES_FILE, "wb") as f:
            np.save(f, sequences, allow_pickle=False)
        (tmp / SCHEMA_FILE).write_text(json.dumps(schema.to_json(), indent=2, sort_keys=True) + "\n")
        for name in (WINDOWS_FILE, SEQUENCES_FILE, SCHEMA_FILE):
            fsync_file(tmp / name)
        fsync_dir(tmp)
        _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(out.parent)


def _swap_in(tmp: Path, out: Path) -> None:
    """rename(2) replaces only an empty directory, so an old dataset is moved aside first."""
    try:
        os.replace(tmp, out)
        return
    except OSError:
        if not out.exists():
            raise
    old = temp_sibling(out, ".old")
    os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
