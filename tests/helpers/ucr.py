"""UCR/UEA `.ts` problems for the tests: the vendored archive problems (tests/data/ucr, see
tests/data/README.md), a writer for small made-up ones, and a plain reader that the importer's
output is compared with."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from helpers.fleet import ROOT

UCR_DIR = ROOT / "tests" / "data" / "ucr"

Case = Sequence[Sequence[float | None]]  # dimensions, each a list of values; None is written as ?


def ucr_problem(name: str) -> tuple[Path, Path]:
    """The vendored problem's TRAIN and TEST files."""
    train, test = UCR_DIR / name / f"{name}_TRAIN.ts", UCR_DIR / name / f"{name}_TEST.ts"
    if not (train.is_file() and test.is_file()):
        raise FileNotFoundError(f"no vendored UCR/UEA problem {name!r} under {UCR_DIR}")
    return train, test


def read_cases(path: Path) -> tuple[np.ndarray, list[str]]:
    """An equal-length file's cases as float32 `[n, length, dimensions]` (NaN for ?) and its labels,
    read the plain way: every line after @data that is not a comment is values:...:label."""
    lines = path.read_text().splitlines()
    body = [line.strip() for line in lines[[line.strip().lower() for line in lines].index("@data") + 1 :]]
    rows = [line.split(":") for line in body if line and not line.startswith("#")]
    values = [[[float("nan") if v == "?" else float(v) for v in dim.split(",")] for dim in row[:-1]] for row in rows]
    return np.asarray(values, dtype=np.float32).transpose(0, 2, 1), [row[-1].strip() for row in rows]


def write_ts(path: Path, cases: Sequence[Case], labels: Sequence[str], *, classes: Sequence[str] | None = None, **tags: object) -> Path:
    """A `.ts` file whose header describes its cases truthfully, unless `tags` say otherwise
    (`seriesLength=30`; a tag given as None is left out)."""
    dims = {len(case) for case in cases}
    lengths = {len(dim) for case in cases for dim in case}
    header: dict[str, object] = {
        "problemName": path.name.split("_")[0],
        "timeStamps": "false",
        "missing": str(any(v is None for case in cases for dim in case for v in dim)).lower(),
        "univariate": str(dims == {1}).lower(),
        "dimensions": dims.pop() if len(dims) == 1 else None,
        "equalLength": str(len(lengths) == 1).lower(),
        "seriesLength": lengths.pop() if len(lengths) == 1 else None,
        "classLabel": "true " + " ".join(classes if classes is not None else sorted(set(labels))),
    }
    header.update(tags)
    lines = ["# a problem made up by the tests"]
    lines += [f"@{tag} {value}" for tag, value in header.items() if value is not None]
    lines.append("@data")
    for case, label in zip(cases, labels, strict=True):
        dims_text = [",".join("?" if v is None else repr(float(v)) for v in dim) for dim in case]
        lines.append(":".join([*dims_text, label]))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def write_problem(
    folder: Path,
    name: str,
    train: tuple[Sequence[Case], Sequence[str]],
    test: tuple[Sequence[Case], Sequence[str]],
    *,
    classes: Sequence[str] | None = None,
    **tags: object,
) -> Path:
    """`<name>_TRAIN.ts` and `<name>_TEST.ts` in `folder`, declaring the same classes (by default
    those of both files' labels) and header tags; returns the TRAIN file."""
    classes = classes if classes is not None else sorted(set(train[1]) | set(test[1]))
    write_ts(folder / f"{name}_TEST.ts", *test, classes=classes, **tags)
    return write_ts(folder / f"{name}_TRAIN.ts", *train, classes=classes, **tags)


def expected_tensor(cases: Sequence[Case]) -> np.ndarray:
    """What the importer should hold for equal-length `cases`: float32 `[n, length, dimensions]`, NaN for None."""
    return np.asarray([[[np.nan if v is None else v for v in dim] for dim in case] for case in cases], dtype=np.float32).transpose(0, 2, 1)
