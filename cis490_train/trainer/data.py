"""Reading and checking a dataset directory (see `contract` for the layout).

Loading reads only the Parquet columns a mode needs and memory-maps the
sequence tensors, so a tabular job never pages in the (much larger) sequences
and a sequence job reads only the rows it selects.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.provenance import DataIdentity, is_data_name
from ..errors import DataError
from .contract import (
    BASE_COLUMNS,
    FEATURE_DTYPE,
    KIND_PREFIX,
    SCHEMA_FILE,
    SEQUENCES_FILE,
    WINDOWS_FILE,
    Schema,
    parse_schema,
)
from .synth import GENERATOR, synthesize

__all__ = ["Dataset", "DatasetSummary", "check_dataset", "dataset_name", "describe_dataset", "load_dataset", "load_model_inputs", "synthesize"]

_UTC = ("UTC", "Etc/UTC", "+00:00")


@dataclass(frozen=True, eq=False)
class Dataset:
    """The columns one job needs; row i is window_id i, `label` is a class index or -1 (unlabelled)."""

    path: Path
    schema: Schema
    host: np.ndarray
    window_start_ms: np.ndarray
    label: np.ndarray
    feature_names: tuple[str, ...]
    features: np.ndarray | None
    sequences: np.ndarray | None

    @property
    def n(self) -> int:
        return len(self.label)

    def fingerprint(self) -> str:
        """Identifies the data a model saw: same schema, rows, hosts, times and labels, same value."""
        h = hashlib.sha256()
        h.update(self.schema.schema_hash.encode())
        h.update(str(self.n).encode())
        names, codes = np.unique(self.host.astype(str), return_inverse=True)
        h.update(json.dumps(names.tolist()).encode())
        h.update(codes.astype(np.int32).tobytes())
        h.update(self.window_start_ms.astype(np.int64).tobytes())
        h.update(self.label.astype(np.int16).tobytes())
        return h.hexdigest()

    def identity(self) -> DataIdentity:
        """What a report says of the data it was trained on."""
        name = dataset_name(self.schema.source, self.path)
        return DataIdentity(name=name, fingerprint=self.fingerprint(), schema_hash=self.schema.schema_hash)


def dataset_name(source: dict, path: Path) -> str:
    """How results name a dataset to a person: the name its source gives itself (an imported
    archive's `GunPoint`), else the synthetic preset's (`synth`, `synth-small`), else the
    directory's; '' when none of them is a valid name."""
    candidates = (source.get("name"), _synthetic_name(source), Path(path).absolute().name)
    return next((name for name in candidates if is_data_name(name)), "")


def _synthetic_name(source: dict) -> str | None:
    preset = source.get("preset")
    if source.get("generator") != GENERATOR or not isinstance(preset, str):
        return None
    return "synth" if preset == "default" else f"synth-{preset}"


def _missing_message(path: Path) -> str:
    return (
        f"no dataset at {path}: make one with `cis490-train data synth --out {path}`, "
        "or point --data or CIS490_DATA_DIR at an existing dataset directory"
    )


def check_dataset(path: Path, expect_schema_hash: str | None = None) -> Schema:
    """Raise one DataError that lists every way `path` breaks the contract; return its schema."""
    schema, _table, _sequences = _open(Path(path), None, expect_schema_hash)
    return schema


@dataclass(frozen=True)
class DatasetSummary:
    """What `data check` reports of a dataset that follows the contract."""

    path: str
    windows: int
    labelled: int
    hosts: tuple[str, ...]
    classes: tuple[str, ...]
    realistic: tuple[str, ...]
    oracle: tuple[str, ...]
    seq_len: int
    channels: tuple[str, ...]
    schema_hash: str

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "windows": self.windows,
            "labelled": self.labelled,
            "hosts": list(self.hosts),
            "classes": list(self.classes),
            "features": {"realistic": list(self.realistic), "oracle": list(self.oracle)},
            "sequence": {"seq_len": self.seq_len, "channels": list(self.channels)},
            "schema_hash": self.schema_hash,
        }


def describe_dataset(path: Path) -> DatasetSummary:
    """Check the dataset at `path` (one DataError listing every problem), then count what it holds."""
    schema = check_dataset(path)
    data = load_dataset(path)
    return DatasetSummary(
        path=str(path),
        windows=int(data.n),
        labelled=int((data.label >= 0).sum()),
        hosts=tuple(sorted({str(h) for h in data.host})),
        classes=tuple(schema.classes),
        realistic=tuple(f.name for f in schema.features if f.kind == "realistic"),
        oracle=tuple(f.name for f in schema.features if f.kind == "oracle"),
        seq_len=schema.seq_len,
        channels=tuple(schema.channels),
        schema_hash=schema.schema_hash,
    )


def load_dataset(
    path: Path,
    mode: str = "realistic",
    *,
    summary: bool = True,
    sequences: bool = False,
    oracle_only: bool = False,
    expect_schema_hash: str | None = None,
) -> Dataset:
    """Check the dataset, then load the base columns plus the mode's features and/or the tensors.

    `oracle_only` narrows the features to the mode's privileged columns (what a
    sequence model adds to its tensors in oracle mode).
    """
    path = Path(path)
    schema, table, seq = _open(path, mode if summary else None, expect_schema_hash, oracle_only)
    columns = _columns(schema, mode, oracle_only) if summary else ()
    features = None
    if columns:
        features = np.empty((table.num_rows, len(columns)), dtype=np.float32)
        for j, name in enumerate(columns):
            features[:, j] = table.column(name).to_numpy()
    return Dataset(
        path=path,
        schema=schema,
        host=table.column("host").to_numpy(),
        window_start_ms=table.column("window_start").cast("int64").to_numpy(),
        label=_label_codes(table, schema),
        feature_names=tuple(columns),
        features=features,
        sequences=seq if sequences else None,
    )


def load_model_inputs(path: Path, mode: str, inputs: str, expect_schema_hash: str | None = None) -> Dataset:
    """What a model of `inputs` kind reads: summary models the mode's features, sequence
    models the tensors plus the mode's oracle features (none in realistic mode)."""
    sequence = inputs == "sequence"
    return load_dataset(
        path, mode, summary=True, sequences=sequence, oracle_only=sequence, expect_schema_hash=expect_schema_hash
    )


def _columns(schema: Schema, mode: str, oracle_only: bool) -> tuple[str, ...]:
    return schema.oracle_columns(mode) if oracle_only else schema.feature_columns(mode)


def _label_codes(table, schema: Schema) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    codes = pc.index_in(table.column("label"), value_set=pa.array(schema.classes, type=pa.string()))
    return codes.fill_null(-1).to_numpy().astype(np.int64)


def _open(path: Path, mode: str | None, expect_schema_hash: str | None, oracle_only: bool = False):
    """Every contract check in one pass; returns (schema, table of base + `mode`'s columns, tensor memmap)."""
    if not path.exists():
        raise DataError(_missing_message(path))
    if not path.is_dir():
        raise DataError(f"{path} is not a dataset directory (it is a file)")
    problems: list[str] = []
    for name in (WINDOWS_FILE, SEQUENCES_FILE, SCHEMA_FILE):
        if not (path / name).is_file():
            problems.append(f"missing {name}")
    schema = _read_schema(path, problems)
    if schema is not None and expect_schema_hash is not None and schema.schema_hash != expect_schema_hash:
        problems.append(
            f"schema_hash {schema.schema_hash} differs from the expected {expect_schema_hash} "
            "(this data has other features, classes or sequence layout than the model was trained on)"
        )
    columns = _columns(schema, mode, oracle_only) if schema is not None and mode is not None else ()
    table = _read_windows(path, schema, columns, problems)
    seq = _read_sequences(path, schema, table.num_rows if table is not None else None, problems)
    if problems:
        noun = "problem" if len(problems) == 1 else "problems"
        raise DataError(f"dataset {path} breaks the data contract ({len(problems)} {noun}): " + "; ".join(problems))
    return schema, table, seq


def _read_schema(path: Path, problems: list[str]) -> Schema | None:
    file = path / SCHEMA_FILE
    if not file.is_file():
        return None
    try:
        raw = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        problems.append(f"{SCHEMA_FILE} is not readable JSON ({exc})")
        return None
    schema, found = parse_schema(raw)
    problems.extend(found)
    return schema


def _type_problem(name: str, arrow_type, expected: str) -> str | None:
    import pyarrow as pa

    ok = {
        "int64": pa.types.is_int64(arrow_type),
        "string": pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type),
        "timestamp[ms, tz=UTC]": pa.types.is_timestamp(arrow_type)
        and arrow_type.unit == "ms"
        and arrow_type.tz in _UTC,
        FEATURE_DTYPE: pa.types.is_float32(arrow_type),
    }[expected]
    return None if ok else f"column {name!r} has type {arrow_type}, expected {expected}"


def _read_windows(path: Path, schema: Schema | None, columns: tuple[str, ...], problems: list[str]):
    import pyarrow as pa
    import pyarrow.parquet as pq

    file = path / WINDOWS_FILE
    if not file.is_file():
        return None
    try:
        arrow_schema = pq.read_schema(file)
    except (OSError, pa.ArrowException) as exc:
        problems.append(f"{WINDOWS_FILE} is not readable Parquet ({exc})")
        return None
    found = {field.name: field.type for field in arrow_schema}
    expected = dict(BASE_COLUMNS)
    if schema is not None:
        expected.update({f.name: f.dtype for f in schema.features})
        declared = {f.name for f in schema.features}
        for name in found:
            if name.startswith(tuple(KIND_PREFIX.values())) and name not in declared:
                problems.append(f"column {name!r} is not declared in {SCHEMA_FILE}")
    bad_before = len(problems)
    for name, dtype in expected.items():
        if name not in found:
            problems.append(f"{WINDOWS_FILE} has no column {name!r}")
        elif why := _type_problem(name, found[name], dtype):
            problems.append(why)
    if len(problems) > bad_before:
        return None
    try:
        table = pq.read_table(file, columns=list(BASE_COLUMNS) + list(columns), memory_map=True)
    except (OSError, pa.ArrowException) as exc:
        problems.append(f"{WINDOWS_FILE} cannot be read ({exc})")
        return None
    _check_rows(table, schema, problems)
    return table


def _check_rows(table, schema: Schema | None, problems: list[str]) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    n = table.num_rows
    ids = table.column("window_id")
    if ids.null_count or not np.array_equal(ids.to_numpy(), np.arange(n, dtype=np.int64)):
        problems.append("window_id must be 0..n-1 in row order (it indexes the sequence tensor)")
    for name in ("host", "window_start"):
        if table.column(name).null_count:
            problems.append(f"column {name!r} has {table.column(name).null_count} null values")
    if schema is None:
        return
    labels = table.column("label")
    codes = pc.index_in(labels, value_set=pa.array(schema.classes, type=pa.string()))
    unknown = pc.and_(pc.is_valid(labels), pc.is_null(codes))
    n_unknown = pc.sum(unknown).as_py() or 0
    if n_unknown:
        values = pc.unique(pc.filter(labels, unknown)).to_pylist()[:5]
        problems.append(f"{n_unknown} labels are not among the classes {list(schema.classes)} (e.g. {values})")
    if labels.null_count == n:
        problems.append("no window is labelled")


def _read_sequences(path: Path, schema: Schema | None, n_rows: int | None, problems: list[str]):
    file = path / SEQUENCES_FILE
    if not file.is_file():
        return None
    try:
        seq = np.load(file, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        problems.append(f"{SEQUENCES_FILE} is not a readable .npy array ({exc})")
        return None
    if seq.dtype != np.float32:
        problems.append(f"{SEQUENCES_FILE} has dtype {seq.dtype}, expected float32")
    if seq.ndim != 3:
        problems.append(f"{SEQUENCES_FILE} has shape {seq.shape}, expected [n_windows, seq_len, n_channels]")
        return None
    if schema is not None and seq.shape[1:] != (schema.seq_len, len(schema.channels)):
        problems.append(
            f"{SEQUENCES_FILE} windows are {list(seq.shape[1:])}, the schema says "
            f"[{schema.seq_len}, {len(schema.channels)}] (seq_len, channels)"
        )
    if n_rows is not None and seq.shape[0] != n_rows:
        problems.append(f"{SEQUENCES_FILE} has {seq.shape[0]} windows but {WINDOWS_FILE} has {n_rows} rows")
    return seq
