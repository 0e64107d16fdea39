"""A UCR/UEA problem, its `<Name>_TRAIN.ts` and `<Name>_TEST.ts`, as windows.

The archive's results are reported on its official split, so the split has to
survive the import: TRAIN cases get host `train` and TEST cases host `test`, in
file order, TRAIN first, and `split_recipe = "host"` with `train_hosts = ["train"]`
trains and tests on exactly the archive's cases.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import SourceError
from .ts import TsFile, dimensions_text, parse_ts
from .windows import PLACEHOLDER_TIMES, Windows, file_record, placeholder_times

TRAIN_SUFFIX = "_TRAIN.ts"
TEST_SUFFIX = "_TEST.ts"
TRAIN_HOST, TEST_HOST = "train", "test"
_SHAPE = f"a problem is <Name>{TRAIN_SUFFIX} with <Name>{TEST_SUFFIX} beside it"


def read_problem(source: Path, *, name: str | None = None, pad: bool = False) -> Windows:
    """`source` is the TRAIN file or a directory holding the pair; `pad` pads unequal lengths."""
    train_path, test_path = find_pair(source)
    train, test = parse_ts(train_path), parse_ts(test_path)
    _same_problem(train, test)
    cases = train.cases + test.cases
    lengths = np.array([case.shape[1] for case in cases])
    if not pad:
        _equal_lengths(train, test, lengths)
    longest = int(lengths.max())
    sequences = np.empty((len(cases), longest, train.dimensions), dtype=np.float32)
    for i, case in enumerate(cases):
        sequences[i, : case.shape[1]] = case.T
        sequences[i, case.shape[1] :] = case[:, -1]
    n_train, n_test = len(train.cases), len(test.cases)
    padded = int((lengths < longest).sum())
    source_record = {
        "format": "ts",
        "name": name or _problem_name(train),
        "files": [file_record(train_path), file_record(test_path)],
        "cases": {TRAIN_HOST: n_train, TEST_HOST: n_test},
        "missing_values": int(sum(int(np.isnan(case).sum()) for case in cases)),
        "padding": {"to": longest, "shortest": int(lengths.min()), "padded_cases": padded, "with": "each series' last value"}
        if padded
        else None,
        "hosts": f"{TRAIN_HOST} for the cases of {train_path.name}, {TEST_HOST} for those of {test_path.name}",
        "window_start": PLACEHOLDER_TIMES,
    }
    return Windows.derived(
        sequences=sequences,
        labels=np.array(train.labels + test.labels, dtype=object),
        classes=train.header.classes,
        hosts=np.array([TRAIN_HOST] * n_train + [TEST_HOST] * n_test, dtype=object),
        starts_ms=placeholder_times(len(cases)),
        source=source_record,
        lengths=lengths,
    )


def _problem_name(train: TsFile) -> str:
    """@problemName, without the file suffix some archive files leave in it; else the file's prefix."""
    problem = train.header.problem or train.path.name
    for suffix in (".ts", "_TRAIN", "_TEST"):
        problem = problem.removesuffix(suffix)
    return problem


def find_pair(source: Path) -> tuple[Path, Path]:
    train = _train_file(source)
    test = train.with_name(train.name[: -len(TRAIN_SUFFIX)] + TEST_SUFFIX)
    if not test.is_file():
        raise SourceError(train, f"no {test.name} beside it: {_SHAPE}, and the TEST file holds the official test set")
    return train, test


def _train_file(source: Path) -> Path:
    if source.is_dir():
        found = sorted(source.glob(f"*{TRAIN_SUFFIX}"))
        preferred = source / f"{source.name}{TRAIN_SUFFIX}"
        if preferred in found:
            return preferred
        if len(found) == 1:
            return found[0]
        if not found:
            raise SourceError(source, f"holds no *{TRAIN_SUFFIX} file; {_SHAPE}")
        names = ", ".join(p.name for p in found)
        raise SourceError(source, f"holds several problems ({names}); give one of these files")
    if source.name.endswith(TRAIN_SUFFIX):
        return source
    if source.name.endswith(TEST_SUFFIX):
        raise SourceError(source, f"give the {TRAIN_SUFFIX} file; its {TEST_SUFFIX} is found beside it")
    raise SourceError(source, f"is not named <Name>{TRAIN_SUFFIX}: {_SHAPE} (or give the directory holding the pair)")


def _same_problem(train: TsFile, test: TsFile) -> None:
    if set(test.header.classes) != set(train.header.classes):
        raise SourceError(
            test.path,
            f"@classLabel declares {list(test.header.classes)}, {train.path.name} declares "
            f"{list(train.header.classes)}; the two files of a problem declare the same classes",
            test.header.lines["classlabel"],
        )
    if test.dimensions != train.dimensions:
        raise SourceError(
            test.path,
            f"the case has {dimensions_text(test.dimensions)}, the cases of {train.path.name} have {train.dimensions}",
            test.lines[0],
        )


def _equal_lengths(train: TsFile, test: TsFile, lengths: np.ndarray) -> None:
    """Unequal lengths need --pad: say where the first case of another length is."""
    first = int(lengths[0])
    odd = int(np.argmax(lengths != first))
    if lengths[odd] == first:
        return
    file, index = (train, odd) if odd < len(train.cases) else (test, odd - len(train.cases))
    raise SourceError(
        file.path,
        f"the case has {lengths[odd]} values per dimension, the first case of {train.path.name} has {first}; "
        f"series of unequal length ({lengths.min()} to {lengths.max()} values) are imported only with --pad, "
        "which pads each series at the end with its last value",
        file.lines[index],
    )
