"""The results page: the store's artifacts as a leaderboard with CI bars and learning curves.

Pure: index rows and their summaries in, a view with every coordinate worked
out; the template only places them. Everything user-given (job names) is
escaped by the template, and the page carries no script.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tornado.template

from ..core.provenance import DataIdentity
from ..core.scores import LABELS, METRICS
from ..core.text import duration
from .records import ArtifactRecord
from .summary import Estimate, Summary

TEMPLATES = Path(__file__).parent / "templates"
BAR_WIDTH = 100
CHART_WIDTH, CHART_HEIGHT = 360, 140
CHART_PAD = (36, 12, 10, 22)  # left, right, top, bottom
_LOADER = tornado.template.Loader(str(TEMPLATES))  # autoescapes every {{ }} (xhtml_escape)


@dataclass(frozen=True)
class Bar:
    """One metric's point estimate and 95 % CI on a 0..1 bar, with the majority baseline's value."""

    label: str
    estimate: Estimate
    baseline: Estimate | None

    @staticmethod
    def x(value: float) -> float:
        return round(value * BAR_WIDTH, 1)


@dataclass(frozen=True)
class Row:
    record: ArtifactRecord
    summary: Summary | None
    bars: tuple[Bar | None, ...]

    @property
    def title(self) -> str:
        name = self.summary.name if self.summary else ""
        return name or self.record.job_id or self.record.artifact_id[:12]

    @property
    def dataset(self) -> DataIdentity | None:
        """The data this artifact was trained on: what tells two bundles of one job apart."""
        return self.summary.dataset if self.summary else None

    @property
    def anchor(self) -> str:
        return f"a-{self.record.artifact_id[:16]}"


@dataclass(frozen=True)
class Series:
    name: str
    css: str
    points: tuple[tuple[int, float, float, float], ...]  # epoch, value, x, y

    @property
    def polyline(self) -> str:
        return " ".join(f"{x},{y}" for _, _, x, y in self.points)


@dataclass(frozen=True)
class Chart:
    """One phase of one job's training: loss (scaled to its own maximum) and the validation metric (0..1)."""

    phase: str
    epochs: int
    loss_max: float | None
    series: tuple[Series, ...]
    x_ticks: tuple[tuple[float, int], ...]


@dataclass(frozen=True)
class Curves:
    row: Row
    charts: tuple[Chart, ...]


@dataclass(frozen=True)
class Page:
    rows: tuple[Row, ...]
    curves: tuple[Curves, ...]
    metrics: tuple[str, ...]


def build_page(entries: list[tuple[ArtifactRecord, Summary | None]]) -> Page:
    """Rows with metrics first, best macro-F1 on top; rows without a summary after them, newest first."""
    rows = [Row(record, summary, _bars(summary)) for record, summary in entries]
    scored = sorted((r for r in rows if r.summary), key=lambda r: (-_macro_f1(r), r.record.created_at))
    unscored = sorted((r for r in rows if not r.summary), key=lambda r: r.record.created_at, reverse=True)
    ordered = tuple(scored + unscored)
    curves = tuple(Curves(r, _charts(r.summary)) for r in ordered if r.summary and r.summary.curve)
    return Page(rows=ordered, curves=curves, metrics=METRICS)


def render(page: Page) -> bytes:
    return _LOADER.load("results.html").generate(
        page=page,
        labels=LABELS,
        bar_width=BAR_WIDTH,
        chart_width=CHART_WIDTH,
        chart_height=CHART_HEIGHT,
        pad=CHART_PAD,
        duration=format_duration,
        size=format_size,
    )


def format_duration(seconds: float | None) -> str:
    return duration(seconds, words=True, none="—")


def format_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _macro_f1(row: Row) -> float:
    est = row.summary.metric("macro_f1") if row.summary else None
    return est.value if est else -1.0


def _bars(summary: Summary | None) -> tuple[Bar | None, ...]:
    if summary is None:
        return tuple(None for _ in METRICS)
    out = []
    for name in METRICS:
        est = summary.metric(name)
        out.append(Bar(LABELS[name], est, summary.baseline_of(name)) if est else None)
    return tuple(out)


def _charts(summary: Summary) -> tuple[Chart, ...]:
    phases: dict[str, list] = {}
    for point in summary.curve:
        phases.setdefault(point.phase, []).append(point)
    left, right, top, bottom = CHART_PAD
    width, height = CHART_WIDTH - left - right, CHART_HEIGHT - top - bottom
    charts = []
    for phase, points in phases.items():
        first, last = points[0].epoch, points[-1].epoch
        span = max(last - first, 1)

        def x(epoch: int) -> float:
            return round(left + width * ((epoch - first) / span if last > first else 0.5), 1)

        def y(share: float) -> float:
            return round(top + height * (1.0 - share), 1)

        losses = [p.loss for p in points if p.loss is not None]
        loss_max = max(losses) if losses else None
        series = []
        if loss_max is not None:
            scale = loss_max if loss_max > 0 else 1.0
            series.append(
                Series(
                    "loss",
                    "loss",
                    tuple((p.epoch, p.loss, x(p.epoch), y(max(p.loss, 0.0) / scale)) for p in points if p.loss is not None),
                )
            )
        metric = tuple((p.epoch, p.metric, x(p.epoch), y(p.metric)) for p in points if p.metric is not None)
        if metric:
            series.append(Series(summary.metric_name or "validation metric", "metric", metric))
        ticks = sorted({first, last, first + span // 2} if last > first else {first})
        charts.append(Chart(phase, len(points), loss_max, tuple(series), tuple((x(e), e) for e in ticks)))
    return tuple(charts)
