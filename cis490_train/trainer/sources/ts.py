"""Parsing one UCR/UEA `.ts` file (the sktime/aeon format) and holding its header to its cases.

A header line is `@tag value`; `@data` ends the header; then one case per line,
its dimensions separated by `:`, the values of a dimension by `,`, the class label
last; `?` is a missing value; a line starting with `#` (or `%`, as some archive
files have it) is a comment. Tags are read case-insensitively and tags other than
the ones below are ignored, as aeon does. A header that says something its cases
contradict is refused at the first case that contradicts it: such a file has been
edited or cut, and a dataset built from it would not be the archive's problem.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import SourceError

COMMENT = ("#", "%")
MISSING = "?"
_BOOLEANS = ("timestamps", "missing", "univariate", "equallength", "targetlabel")
_COUNTS = ("serieslength", "dimensions")
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class Header:
    """What the header declares; None where it says nothing. `lines` maps each tag to its line."""

    problem: str | None = None
    classes: tuple[str, ...] = ()
    univariate: bool | None = None
    dimensions: int | None = None
    equal_length: bool | None = None
    series_length: int | None = None
    lines: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class TsFile:
    """The cases in file order: each float64 `[dimensions, length]`, NaN where the file has `?`."""

    path: Path
    header: Header
    cases: tuple[np.ndarray, ...]
    labels: tuple[str, ...]
    lines: tuple[int, ...]

    @property
    def dimensions(self) -> int:
        return self.cases[0].shape[0]


def parse_ts(path: Path) -> TsFile:
    try:
        with open(path, encoding="utf-8") as f:
            lines = enumerate(f, start=1)
            header = _read_header(path, lines)
            cases, labels, numbers = _read_cases(path, header, lines)
    except UnicodeDecodeError as exc:
        raise SourceError(path, f"is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise SourceError(path, f"cannot be read ({exc.strerror or exc})") from None
    return TsFile(path, header, tuple(cases), tuple(labels), tuple(numbers))


def _content(lines):
    """The numbered lines that are neither blank nor comments, stripped."""
    for number, raw in lines:
        line = raw.strip()
        if line and not line.startswith(COMMENT):
            yield number, line


def _read_header(path: Path, lines) -> Header:
    values: dict[str, object] = {}
    at: dict[str, int] = {}
    seen_any = False
    for number, line in _content(lines):
        seen_any = True
        if not line.startswith("@"):
            raise SourceError(path, f"{line[:40]!r} comes before @data; the header is @tag lines and comments, ended by a @data line", number)
        tag, *args = line.split()
        key = tag[1:].lower()
        at[key] = number
        if key == "data":
            if args:
                raise SourceError(path, "@data takes no value; the cases start on the next line", number)
            return _finish_header(path, values, at, number)
        if key in _BOOLEANS:
            values[key] = _boolean(path, tag, args, number)
        elif key in _COUNTS:
            values[key] = _count(path, tag, args, number)
        elif key == "problemname" and args:
            values[key] = " ".join(args)
        elif key == "classlabel":
            values[key] = _class_labels(path, tag, args, number)
    if not seen_any:
        raise SourceError(path, "is empty (a .ts file is a header ending in @data, then one case per line)")
    raise SourceError(path, "has no @data line (the header ends with @data, then one case per line)")


def _finish_header(path: Path, values: dict, at: dict[str, int], data_line: int) -> Header:
    if values.get("timestamps"):
        raise SourceError(path, "@timeStamps true: series with time stamps are not supported (give the values only, @timeStamps false)", at["timestamps"])
    if values.get("targetlabel"):
        raise SourceError(path, "@targetLabel true is a regression problem; only classification problems (@classLabel true ...) can be imported", at["targetlabel"])
    if "classlabel" not in values:
        raise SourceError(path, "the header has no @classLabel line; give the classes as @classLabel true <class> <class> ...", data_line)
    return Header(
        problem=values.get("problemname"),
        classes=values["classlabel"],
        univariate=values.get("univariate"),
        dimensions=values.get("dimensions"),
        equal_length=values.get("equallength"),
        series_length=values.get("serieslength"),
        lines=at,
    )


def _boolean(path: Path, tag: str, args: list[str], number: int) -> bool:
    if len(args) != 1 or args[0].lower() not in ("true", "false"):
        raise SourceError(path, f"{tag} takes true or false, not {' '.join(args)!r}", number)
    return args[0].lower() == "true"


def _count(path: Path, tag: str, args: list[str], number: int) -> int:
    if len(args) != 1 or not args[0].isdigit() or int(args[0]) < 1:
        raise SourceError(path, f"{tag} takes a whole number above 0, not {' '.join(args)!r}", number)
    return int(args[0])


def _class_labels(path: Path, tag: str, args: list[str], number: int) -> tuple[str, ...]:
    if not args or args[0].lower() not in ("true", "false"):
        raise SourceError(path, f"{tag} takes true followed by the class names, not {' '.join(args)!r}", number)
    if args[0].lower() == "false":
        raise SourceError(path, f"{tag} false: the importer needs class labels ({tag} true <class> <class> ...)", number)
    classes = tuple(args[1:])
    if not classes:
        raise SourceError(path, f"{tag} true names no class; list them: {tag} true <class> <class> ...", number)
    if len(set(classes)) != len(classes):
        raise SourceError(path, f"{tag} names a class twice: {list(classes)}", number)
    return classes


def _read_cases(path: Path, header: Header, lines):
    cases: list[np.ndarray] = []
    labels: list[str] = []
    numbers: list[int] = []
    known = set(header.classes)
    for number, line in _content(lines):
        *dims, label = line.split(":")
        label = label.strip()
        if not dims:
            raise SourceError(path, "expected the values, then :label (dimensions separated by ':', values by ',')", number)
        if label in ("", MISSING):
            raise SourceError(path, f"the case has no class label (the last ':' field); every case needs one of {list(header.classes)}", number)
        if label not in known:
            raise SourceError(path, f"class label {label!r} is not declared in @classLabel {list(header.classes)}", number)
        case = _case(path, dims, number)
        _hold_to_header(path, header, case, cases[0] if cases else None, number)
        cases.append(case)
        labels.append(label)
        numbers.append(number)
    if not cases:
        raise SourceError(path, "has no case after @data (one case per line: values, then :label)")
    return cases, labels, numbers


def _case(path: Path, dims: list[str], number: int) -> np.ndarray:
    values = [_values(path, text, i + 1, number) for i, text in enumerate(dims)]
    for i, v in enumerate(values[1:], start=2):
        if len(v) != len(values[0]):
            raise SourceError(path, f"dimension {i} has {len(v)} values, dimension 1 has {len(values[0])}; the dimensions of a case have one length", number)
    return np.stack(values)


def _values(path: Path, text: str, dim: int, number: int) -> np.ndarray:
    tokens = [t.strip() for t in text.split(",")]
    try:
        values = np.array(["nan" if t == MISSING else t for t in tokens], dtype=np.float64)
    except ValueError:
        bad = next((t for t in tokens if t != MISSING and not _is_number(t)), text.strip())
        what = "an empty value" if not bad else f"value {bad[:30]!r}"
        raise SourceError(path, f"{what} in dimension {dim} is not a number (values are decimal numbers, {MISSING} for a missing one)", number) from None
    too_big = np.abs(values) > _FLOAT32_MAX
    if too_big.any():
        raise SourceError(path, f"value {tokens[int(np.argmax(too_big))]!r} in dimension {dim} is not a finite float32 number", number)
    return values


def dimensions_text(k: int) -> str:
    return f"{k} dimension{'' if k == 1 else 's'}"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _hold_to_header(path: Path, header: Header, case: np.ndarray, first: np.ndarray | None, number: int) -> None:
    """Refuse the first case that contradicts the header, or the cases before it."""
    dims, length = case.shape
    if header.univariate and dims > 1:
        raise SourceError(path, f"@univariate true, but the case has {dims} dimensions", number)
    if header.dimensions is not None and dims != header.dimensions:
        raise SourceError(path, f"the case has {dimensions_text(dims)}, @dimensions says {header.dimensions}", number)
    if first is not None and dims != first.shape[0]:
        raise SourceError(path, f"the case has {dimensions_text(dims)}, the cases before it have {first.shape[0]}", number)
    if header.equal_length is False:
        return
    if header.series_length is not None and length != header.series_length:
        raise SourceError(path, f"the case has {length} values per dimension, @seriesLength says {header.series_length}", number)
    if header.equal_length and first is not None and length != first.shape[1]:
        raise SourceError(path, f"@equalLength true, but the case has {length} values per dimension and the first case has {first.shape[1]}", number)
