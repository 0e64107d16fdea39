"""Checkpoints: the weights file plus `ckpt.json`, which says what the weights mean.

`ckpt.json` records the feature columns, classes and schema hash the model was
trained on; loading refuses data with another schema hash rather than feeding
the weights columns they have never seen.
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
        return self.model.predict(Part.from_rows(dataset, rows))


def load_checkpoint(
    directory: Path, *, data: Path | None = None, device: str = "cpu", threads: int = 1
) -> LoadedCheckpoint:
    """Rebuild the trained model; with `data`, first refuse a dataset whose schema hash differs."""
    directory = Path(directory)
    try:
        meta = json.loads((directory / CKPT_FILE).read_text())
    except FileNotFoundError:
        raise DataError(f"{directory} holds no {CKPT_FILE}: not a trainer checkpoint") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{directory / CKPT_FILE} is not readable JSON: {exc}") from None
    if meta.get("format") != CKPT_FORMAT:
        raise DataError(f"{directory / CKPT_FILE} has format {meta.get('format')!r}, expected {CKPT_FORMAT}")
    if data is not None:
        check_dataset(data, expect_schema_hash=meta["schema_hash"])
    model = model_class(meta["model"]).load(directory, device=device, threads=threads)
    return LoadedCheckpoint(model=model, meta=meta, directory=directory)
