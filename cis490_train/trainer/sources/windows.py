"""What every source is read into, and the schema that comes of it.

A reader fills `Windows` and nothing else, so the rules of the contract (column
types, feature kinds, the schema hash) are applied in one place for every format,
and the placeholders for what a source does not record are the same everywhere.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..contract import Feature, Schema, make_schema
from .features import STATISTICS, feature_list, summary_features

# The host of every window of a source that names none; the split recipes `sample` and `time` still apply.
PLACEHOLDER_HOST = "unknown"
PLACEHOLDER_TIMES = "row index as seconds since 1970-01-01T00:00:00Z (the source records no time)"


@dataclass(frozen=True, eq=False)
class Windows:
    """One row per window; `labels` holds class names (None: unlabelled), `sequences` NaN where
    missing, `feature_values` one column per entry of `features`."""

    sequences: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    hosts: np.ndarray
    starts_ms: np.ndarray
    channels: tuple[str, ...]
    features: tuple[Feature, ...]
    feature_values: np.ndarray
    source: dict[str, Any]

    @classmethod
    def derived(
        cls,
        sequences: np.ndarray,
        labels: np.ndarray,
        classes: tuple[str, ...],
        hosts: np.ndarray,
        starts_ms: np.ndarray,
        source: dict[str, Any],
        lengths: np.ndarray | None = None,
    ) -> Windows:
        """Windows of a source without features: the summary features are computed from the
        sequences (each on its first `lengths[i]` steps, its series before padding)."""
        channels = tuple(f"dim_{i}" for i in range(sequences.shape[2]))
        how = {
            "derived": True,
            "per_channel": [name for name, _ in STATISTICS],
            "missing": "skipped; a statistic the series does not define is 0",
        }
        return cls(
            sequences=sequences,
            labels=labels,
            classes=classes,
            hosts=hosts,
            starts_ms=starts_ms,
            channels=channels,
            features=feature_list(channels),
            feature_values=summary_features(sequences, lengths),
            source={**source, "features": how},
        )

    def schema(self) -> Schema:
        return make_schema(
            self.classes, self.features, self.sequences.shape[1], self.channels, None, self.source
        )


def placeholder_hosts(n: int) -> np.ndarray:
    return np.full(n, PLACEHOLDER_HOST, dtype=object)


def placeholder_times(n: int) -> np.ndarray:
    """Row order as time, one second apart: the `time` split then keeps the source's row order."""
    return np.arange(n, dtype=np.int64) * 1000


def file_record(path: Path) -> dict[str, str]:
    """A source file by name and content, so the schema says exactly what was imported."""
    with open(path, "rb") as f:
        return {"name": path.name, "sha256": hashlib.file_digest(f, "sha256").hexdigest()}


def class_names(labels: np.ndarray) -> tuple[str, ...]:
    """The classes in order: numerically where every label is a number, else alphabetically."""
    names = sorted({str(label) for label in labels if label is not None})
    if all(re.fullmatch(r"-?[0-9]+", name) for name in names):
        return tuple(sorted(names, key=int))
    return tuple(names)
