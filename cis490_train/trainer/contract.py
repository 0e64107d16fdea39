"""The data contract: file names, required columns and the feature schema.

A dataset directory holds `windows.parquet` (one row per window),
`sequences.npy` (one `[seq_len, n_channels]` tensor per window, row i is
window_id i) and `schema.json`. The schema hash covers only what a trained
model depends on (feature names, dtypes and kinds, classes, sequence layout),
so a checkpoint can refuse data that would silently feed it other columns.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import DataError

SCHEMA_VERSION = 1
WINDOWS_FILE = "windows.parquet"
SEQUENCES_FILE = "sequences.npy"
SCHEMA_FILE = "schema.json"

MODES = ("realistic", "oracle")
KIND_PREFIX = {"realistic": "f_", "oracle": "o_"}

# Column name -> Arrow type string as pyarrow prints it.
BASE_COLUMNS: dict[str, str] = {
    "window_id": "int64",
    "host": "string",
    "window_start": "timestamp[ms, tz=UTC]",
    "label": "string",
}
FEATURE_DTYPE = "float32"


@dataclass(frozen=True)
class Feature:
    name: str
    kind: str
    description: str
    dtype: str = FEATURE_DTYPE


@dataclass(frozen=True)
class Schema:
    version: int
    classes: tuple[str, ...]
    features: tuple[Feature, ...]
    seq_len: int
    channels: tuple[str, ...]
    window_seconds: float | None
    schema_hash: str
    source: dict[str, Any]

    def feature_columns(self, mode: str) -> tuple[str, ...]:
        """Realistic mode sees what inference sees; oracle adds the privileged columns."""
        if mode not in MODES:
            raise DataError(f"unknown mode {mode!r}; valid modes: {', '.join(MODES)}")
        kinds = ("realistic",) if mode == "realistic" else ("realistic", "oracle")
        return tuple(f.name for f in self.features if f.kind in kinds)

    def oracle_columns(self, mode: str) -> tuple[str, ...]:
        """The privileged columns `mode` may see: none in realistic mode."""
        return tuple(name for name in self.feature_columns(mode) if name.startswith(KIND_PREFIX["oracle"]))

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "classes": list(self.classes),
            "features": [
                {"name": f.name, "dtype": f.dtype, "kind": f.kind, "description": f.description} for f in self.features
            ],
            "columns": dict(BASE_COLUMNS),
            "sequence": {
                "file": SEQUENCES_FILE,
                "dtype": FEATURE_DTYPE,
                "seq_len": self.seq_len,
                "channels": list(self.channels),
            },
            "window_seconds": self.window_seconds,
            "source": self.source,
            "schema_hash": self.schema_hash,
        }


def compute_schema_hash(
    classes: tuple[str, ...], features: tuple[Feature, ...], seq_len: int, channels: tuple[str, ...]
) -> str:
    """sha256 of the canonical JSON of what a model consumes; descriptions are prose and left out."""
    payload = {
        "classes": list(classes),
        "features": [{"name": f.name, "dtype": f.dtype, "kind": f.kind} for f in features],
        "sequence": {"dtype": FEATURE_DTYPE, "seq_len": seq_len, "channels": list(channels)},
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def make_schema(
    classes: tuple[str, ...],
    features: tuple[Feature, ...],
    seq_len: int,
    channels: tuple[str, ...],
    window_seconds: float | None,
    source: dict[str, Any],
) -> Schema:
    return Schema(
        version=SCHEMA_VERSION,
        classes=classes,
        features=features,
        seq_len=seq_len,
        channels=channels,
        window_seconds=window_seconds,
        schema_hash=compute_schema_hash(classes, features, seq_len, channels),
        source=source,
    )


def windows_table(schema: Schema, host: np.ndarray, window_start_ms: np.ndarray, label: np.ndarray, features: np.ndarray):
    """The windows table in the contract's columns and types: `window_id` in row order, then host,
    start, label (None: unlabelled) and one float32 column per feature of `schema`, in its order."""
    import pyarrow as pa

    columns = {
        "window_id": pa.array(np.arange(len(label), dtype=np.int64)),
        "host": pa.array(host.tolist(), type=pa.string()),
        "window_start": pa.array(window_start_ms.astype(np.int64), type=pa.timestamp("ms", tz="UTC")),
        "label": pa.array(label.tolist(), type=pa.string()),
    }
    for j, feature in enumerate(schema.features):
        columns[feature.name] = pa.array(features[:, j].astype(np.float32), type=pa.float32())
    return pa.table(columns)


def parse_schema(raw: Any) -> tuple[Schema | None, list[str]]:
    """Read schema.json's content; return the schema (None if unusable) and every problem found."""
    if not isinstance(raw, dict):
        return None, [f"{SCHEMA_FILE} must hold a JSON object"]
    problems: list[str] = []
    for key in ("version", "classes", "features", "sequence", "schema_hash"):
        if key not in raw:
            problems.append(f"{SCHEMA_FILE} has no {key!r}")
    if problems:
        return None, problems
    if raw["version"] != SCHEMA_VERSION:
        problems.append(f"{SCHEMA_FILE} version {raw['version']!r} is not supported (expected {SCHEMA_VERSION})")
    classes = raw["classes"]
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) and c for c in classes)):
        return None, problems + [f"{SCHEMA_FILE} 'classes' must be a non-empty list of names"]
    if len(set(classes)) != len(classes):
        problems.append(f"{SCHEMA_FILE} 'classes' has duplicates")
    features: list[Feature] = []
    seen: set[str] = set()
    if not isinstance(raw["features"], list):
        return None, problems + [f"{SCHEMA_FILE} 'features' must be a list"]
    for i, item in enumerate(raw["features"]):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            problems.append(f"{SCHEMA_FILE} feature #{i} needs a 'name'")
            continue
        name, kind = item["name"], item.get("kind")
        if kind not in KIND_PREFIX:
            problems.append(f"feature {name!r}: kind {kind!r} is not one of {list(KIND_PREFIX)}")
            continue
        if not name.startswith(KIND_PREFIX[kind]):
            problems.append(f"feature {name!r}: {kind} features are named {KIND_PREFIX[kind]}*")
        if item.get("dtype", FEATURE_DTYPE) != FEATURE_DTYPE:
            problems.append(f"feature {name!r}: dtype must be {FEATURE_DTYPE}, not {item.get('dtype')!r}")
        if name in seen:
            problems.append(f"feature {name!r} is declared twice")
        seen.add(name)
        features.append(Feature(name=name, kind=kind, description=str(item.get("description", ""))))
    if not any(f.kind == "realistic" for f in features):
        problems.append(f"{SCHEMA_FILE} declares no realistic (f_*) feature")
    seq = raw["sequence"]
    seq_len = seq.get("seq_len") if isinstance(seq, dict) else None
    channels = seq.get("channels") if isinstance(seq, dict) else None
    if not (isinstance(seq_len, int) and seq_len > 0):
        return None, problems + [f"{SCHEMA_FILE} sequence.seq_len must be a positive integer"]
    if not (isinstance(channels, list) and channels and all(isinstance(c, str) for c in channels)):
        return None, problems + [f"{SCHEMA_FILE} sequence.channels must be a non-empty list of names"]
    window_seconds = raw.get("window_seconds")
    if window_seconds is not None and not (isinstance(window_seconds, (int, float)) and window_seconds > 0):
        problems.append(f"{SCHEMA_FILE} window_seconds must be a positive number or null")
        window_seconds = None
    schema = make_schema(
        tuple(classes), tuple(features), seq_len, tuple(channels), window_seconds, dict(raw.get("source") or {})
    )
    if raw["schema_hash"] != schema.schema_hash:
        problems.append(
            f"{SCHEMA_FILE} schema_hash {raw['schema_hash']!r} does not match its content ({schema.schema_hash})"
        )
    return schema, problems
