"""What the results page shows of an artifact, taken once from its bundle's `report.json`.

The report is the uploader's data. It is read only from the first members of a
verified bundle (bounded in bytes decompressed, in the offsets members declare,
in members and in size; a stream that ends stops the scan), every value is
checked and copied field by field, and nothing in it ever names a path. The
summary is kept as `summary.json` beside the bundle in the same shape as the
report's fields, so the page never opens a bundle and one parser reads both.
"""

from __future__ import annotations

import json
import math
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zstandard

from ..core.provenance import DataIdentity
from ..core.scores import METRICS
from .bundle import REPORT_NAME, BoundedTarInfo
from .records import NAME

SUMMARY_NAME = "summary.json"
SCAN_BYTES = 16 << 20  # decompressed bytes read looking for the report before giving up
MAX_MEMBERS = 8
MAX_REPORT_BYTES = 4 << 20
MAX_SUMMARY_BYTES = 1 << 20
MAX_CURVE_POINTS = 1000
MAX_TEXT = 200


class _ScanLimit(Exception):
    pass


class _BoundedReader:
    """A read-only stream that refuses to yield more than `limit` bytes in all, or to read on past its end.

    tarfile's stream mode skips a member by reading it block by block and does not stop at
    the end of the stream: a tiny bundle declaring a huge member would keep a thread busy.
    """

    def __init__(self, raw: Any, limit: int):
        self._raw = raw
        self._left = limit

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            raise _ScanLimit()
        size = self._left if size is None or size < 0 else min(size, self._left)
        data = self._raw.read(size)
        if not data and size:
            raise _ScanLimit()
        self._left -= len(data)
        return data


@dataclass(frozen=True)
class Estimate:
    value: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class CurvePoint:
    phase: str
    epoch: int
    loss: float | None
    metric: float | None


@dataclass(frozen=True)
class Summary:
    name: str = ""
    split_recipe: str = ""
    device: str = ""
    seed: int | None = None
    n_train: int | None = None
    n_val: int | None = None
    n_test: int | None = None
    duration_s: float | None = None
    train_seconds: float | None = None
    metrics: tuple[tuple[str, Estimate], ...] = ()
    baseline: tuple[tuple[str, Estimate], ...] = ()
    metric_name: str = ""
    curve: tuple[CurvePoint, ...] = ()
    dataset: DataIdentity | None = None

    def metric(self, name: str) -> Estimate | None:
        return dict(self.metrics).get(name)

    def baseline_of(self, name: str) -> Estimate | None:
        return dict(self.baseline).get(name)

    def to_json(self) -> dict[str, Any]:
        def estimates(pairs):
            return {k: {"value": e.value, "ci_low": e.ci_low, "ci_high": e.ci_high} for k, e in pairs}

        return {
            "name": self.name,
            "split_recipe": self.split_recipe,
            "device": self.device,
            "seed": self.seed,
            "n_train": self.n_train,
            "n_val": self.n_val,
            "n_test": self.n_test,
            "duration_s": self.duration_s,
            "train_seconds": self.train_seconds,
            "dataset": self.dataset.to_json() if self.dataset else None,
            "metrics": estimates(self.metrics),
            "baseline": estimates(self.baseline),
            "curve": [
                {"phase": p.phase, "epoch": p.epoch, "loss": p.loss, "metric": p.metric, "metric_name": self.metric_name}
                for p in self.curve
            ],
        }

    @classmethod
    def from_report(cls, report: Any) -> Summary | None:
        """Keep what is well-formed, drop what is not; None when the report has no metrics at all."""
        if not isinstance(report, dict):
            return None
        metrics = _estimates(report.get("metrics"))
        if not metrics:
            return None
        curve, metric_name = _curve(report.get("curve"))
        return cls(
            name=_text(report.get("name")),
            split_recipe=_name(report.get("split_recipe")),
            device=_name(report.get("device")),
            seed=_count(report.get("seed")),
            n_train=_count(report.get("n_train")),
            n_val=_count(report.get("n_val")),
            n_test=_count(report.get("n_test")),
            duration_s=_seconds(report.get("duration_s")),
            train_seconds=_seconds(report.get("train_seconds")),
            metrics=metrics,
            baseline=_estimates(report.get("baseline")),
            metric_name=metric_name,
            curve=curve,
            dataset=DataIdentity.from_json(report.get("dataset")),
        )


def read_report(bundle: Path) -> dict[str, Any] | None:
    """The bundle's `report.json`, if it is among the first members; None for anything else."""
    try:
        with Path(bundle).open("rb") as raw:
            stream = _BoundedReader(zstandard.ZstdDecompressor().stream_reader(raw), SCAN_BYTES)
            with tarfile.open(fileobj=stream, mode="r|", tarinfo=BoundedTarInfo) as tar:
                for index, member in enumerate(tar):
                    if index >= MAX_MEMBERS or member.offset_data + member.size > SCAN_BYTES:
                        return None
                    if member.name != REPORT_NAME:
                        continue
                    if not member.isfile() or member.size > MAX_REPORT_BYTES:
                        return None
                    body = tar.extractfile(member)
                    return json.loads(body.read()) if body is not None else None
    except (_ScanLimit, OSError, EOFError, tarfile.TarError, zstandard.ZstdError, ValueError, RecursionError):
        return None
    return None


def summarise_bundle(bundle: Path) -> Summary | None:
    return Summary.from_report(read_report(bundle))


def load_summary(path: Path) -> Summary | None:
    """A kept `summary.json`, checked again on the way in: it is data read from disk."""
    try:
        with Path(path).open("rb") as f:
            data = f.read(MAX_SUMMARY_BYTES + 1)
        if len(data) > MAX_SUMMARY_BYTES:
            return None
        return Summary.from_report(json.loads(data))
    except (OSError, ValueError, RecursionError):
        return None


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _seconds(value: Any) -> float | None:
    value = _finite(value)
    return value if value is not None and value >= 0 else None


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63 else None


def _text(value: Any) -> str:
    if not isinstance(value, str):
        return ""
    return value if len(value) <= MAX_TEXT else value[: MAX_TEXT - 1] + "…"


def _name(value: Any) -> str:
    return value if isinstance(value, str) and NAME.fullmatch(value) else ""


def _share(value: Any) -> float | None:
    value = _finite(value)
    return value if value is not None and 0.0 <= value <= 1.0 else None


def _estimates(raw: Any) -> tuple[tuple[str, Estimate], ...]:
    if not isinstance(raw, dict):
        return ()
    out = []
    for name in METRICS:
        est = raw.get(name)
        if not isinstance(est, dict):
            continue
        value, low, high = (_share(est.get(k)) for k in ("value", "ci_low", "ci_high"))
        if value is not None and low is not None and high is not None:
            out.append((name, Estimate(value, low, high)))
    return tuple(out)


def _curve(raw: Any) -> tuple[tuple[CurvePoint, ...], str]:
    """Well-formed points in order, evenly thinned to MAX_CURVE_POINTS (the last one kept)."""
    if not isinstance(raw, list):
        return (), ""
    points, metric_name = [], ""
    for item in raw:
        if not isinstance(item, dict):
            continue
        epoch = _count(item.get("epoch"))
        if epoch is None:
            continue
        loss, metric = _finite(item.get("loss")), _share(item.get("metric"))
        points.append(CurvePoint(_name(item.get("phase")) or "train", epoch, loss, metric))
        if metric is not None and not metric_name:
            metric_name = _name(item.get("metric_name"))
    if len(points) > MAX_CURVE_POINTS:
        stride = math.ceil(len(points) / MAX_CURVE_POINTS)
        points = points[:-1:stride][: MAX_CURVE_POINTS - 1] + [points[-1]]
    return tuple(points), metric_name
