"""Checkpoints: the weights file plus `ckpt.json`, which says what the weights mean.

`ckpt.json` records the feature columns, classes and schema hash the model was
trained on; loading refuses data with another schema hash rather than feeding
the weights columns they have never seen.

A checkpoint may come from any uploader's bundle: every field of `ckpt.json`
that loading and rescoring read is checked first, and weights that cannot be
loaded or cannot score the data fail with one line (DataError), not a traceback.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_json
from ..errors import DataError
from .data import Dataset, check_dataset, load_model_inputs
from .models import Model, Part, model_class
from .split import make_split

CKPT_FILE = "ckpt.json"
CKPT_FORMAT = 1
_FIELDS: dict[str, type] = {
    "model": str,
    "mode": str,
    "job_id": str,
    "split_recipe": str,
    "seed": int,
    "train_hosts": list,
    "feature_columns": list,
    "classes": list,
    "baseline_class": str,
    "schema_hash": str,
    "data_fingerprint": str,
    "metrics": dict,
}
# What malformed weights raise from torch, xgboost (XGBoostError is a ValueError) and the loaders.
_BAD_WEIGHTS = (OSError, EOFError, RuntimeError, KeyError, IndexError, TypeError, ValueError, AttributeError)


def versions() -> dict[str, str | None]:
    """Installed versions, read from package metadata so that nothing heavy is imported."""

    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": version("torch"),
        "xgboost": version("xgboost") or version("xgboost-cpu"),
        "pyarrow": version("pyarrow"),
        "cis490_train": version("cis490-train"),
    }


def write_checkpoint(directory: Path, model: Model, meta: dict[str, Any]) -> dict[str, Any]:
    """Weights first, then ckpt.json: a ckpt.json always describes weights that exist."""
    model.save(directory)
    full = {
        "format": CKPT_FORMAT,
        "weights": model.weights_file,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": versions(),
        **meta,
    }
    write_json(Path(directory) / CKPT_FILE, full)
    return full


@dataclass(frozen=True, eq=False)
class LoadedCheckpoint:
    model: Model
    meta: dict[str, Any]
    directory: Path

    def load_data(self, path: Path) -> Dataset:
        """The dataset as this model reads it; DataError if its schema is not the one trained on."""
        dataset = load_model_inputs(
            path, self.meta["mode"], self.model.inputs, expect_schema_hash=self.meta["schema_hash"]
        )
        if list(dataset.feature_names) != list(self.meta["feature_columns"]):
            raise DataError(
                f"dataset {path} yields features {list(dataset.feature_names)}, "
                f"the checkpoint was trained on {self.meta['feature_columns']}"
            )
        return dataset

    def test_rows(self, dataset: Dataset) -> np.ndarray:
        """The test side of the split this model was trained with (recipe, train hosts, seed) on `dataset`."""
        meta = self.meta
        split = make_split(
            meta["split_recipe"],
            dataset.host,
            dataset.window_start_ms,
            dataset.label,
            seed=meta["seed"],
            train_hosts=meta["train_hosts"],
            window_seconds=dataset.schema.window_seconds,
        )
        return split.test

    def predict(self, dataset: Dataset, rows: np.ndarray | None = None) -> np.ndarray:
        """Class indices (into meta['classes']) for `rows` (default: every window)."""
        if dataset.schema.schema_hash != self.meta["schema_hash"]:
            raise DataError(
                f"dataset schema_hash {dataset.schema.schema_hash} differs from "
                f"the checkpoint's {self.meta['schema_hash']}"
            )
        rows = np.arange(dataset.n) if rows is None else np.asarray(rows)
        try:
            return self.model.predict(Part.from_rows(dataset, rows))
        except _BAD_WEIGHTS as exc:
            raise DataError(f"the {self.meta['model']} weights in {self.directory} cannot score this dataset: {_one_line(exc)}") from None


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__


def _check_meta(meta: Any, path: Path) -> dict[str, Any]:
    """Every field that loading and rescoring read, with its type: ckpt.json is an uploader's data."""
    if not isinstance(meta, dict):
        raise DataError(f"{path} is not a JSON object: not a trainer checkpoint")
    if meta.get("format") != CKPT_FORMAT:
        raise DataError(f"{path} has format {meta.get('format')!r}, expected {CKPT_FORMAT}")
    for key, kind in _FIELDS.items():
        value = meta.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise DataError(f"{path}: {key!r} is missing or not a {kind.__name__}")
    for key in ("train_hosts", "feature_columns", "classes"):
        if not all(isinstance(v, str) for v in meta[key]):
            raise DataError(f"{path}: {key!r} is not a list of strings")
    if meta["seed"] < 0:
        raise DataError(f"{path}: 'seed' {meta['seed']} is negative")
    if meta["baseline_class"] not in meta["classes"]:
        raise DataError(f"{path}: 'baseline_class' {meta['baseline_class']!r} is not one of 'classes'")
    for name, est in meta["metrics"].items():
        if not isinstance(est, dict) or not all(_is_number(est.get(k)) for k in ("value", "ci_low", "ci_high")):
            raise DataError(f"{path}: metric {name!r} is not a value with its interval")
    return meta


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def load_checkpoint(
    directory: Path, *, data: Path | None = None, device: str = "cpu", threads: int = 1
) -> LoadedCheckpoint:
    """Rebuild the trained model; with `data`, first refuse a dataset whose schema hash differs."""
    directory = Path(directory)
    try:
        meta = json.loads((directory / CKPT_FILE).read_text())
    except FileNotFoundError:
        raise DataError(f"{directory} holds no {CKPT_FILE}: not a trainer checkpoint") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise DataError(f"{directory / CKPT_FILE} is not readable JSON: {_one_line(exc)}") from None
    meta = _check_meta(meta, directory / CKPT_FILE)
    if data is not None:
        check_dataset(data, expect_schema_hash=meta["schema_hash"])
    cls = model_class(meta["model"])
    try:
        model = cls.load(directory, device=device, threads=threads)
    except _BAD_WEIGHTS as exc:
        raise DataError(f"{directory / cls.weights_file} cannot be loaded as {meta['model']} weights: {_one_line(exc)}") from None
    return LoadedCheckpoint(model=model, meta=meta, directory=directory)
