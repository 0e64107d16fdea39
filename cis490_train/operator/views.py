"""Tables and lines the CLI prints: pure functions from registry records to rich renderables.

Every string that comes from a manifest, the registry or a trainer reaches the terminal through
`plain` (or `cell`, its rich form): a worker credential or a corrupted record can write any text
there, and a terminal obeys the escape sequences it is sent.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..core.provenance import label_of
from ..core.scores import LABELS, METRICS
from ..core.text import duration, progress_summary
from ..core.lifecycle import LEASED, AttemptOutcome, Status
from ..core.routing import QueueClass
from ..errors import BadRequest
from ..ids import parse_task_id

if TYPE_CHECKING:
    from ..registry import JobRecord, WorkerInfo

_STATUS_STYLE = {
    Status.PENDING: "yellow",
    Status.CLAIMED: "cyan",
    Status.RUNNING: "bold cyan",
    Status.COMPLETED: "green",
    Status.FAILED: "bold red",
    Status.CANCELLED: "dim",
}


def plain(text: object, keep: str = "") -> str:
    """`text` as literal, printable text: each control or other non-printable character (C0, DEL,
    C1, bidi overrides, line separators; all but those in `keep`) is written as its escape, `\\x1b`
    or `\\u202e`, so no job name, error or log line can clear the screen, retitle the window,
    plant a link or hide text."""
    s = str(text)
    if s.isprintable():
        return s
    return "".join(c if c.isprintable() or c in keep else repr(c)[1:-1] for c in s)


def cell(text: object, style: str = "") -> Text:
    """`plain(text)` as a rich Text: rich neither parses it as markup nor replaces `:emoji:` codes."""
    return Text(plain(text), style=style)


def counts_line(records: list[JobRecord]) -> str:
    return counts_of(r.status for r in records)


def counts_of(statuses: Iterable[str]) -> str:
    counts = Counter(statuses)
    parts = [f"{counts[s]} {s}" for s in Status if counts[s]]
    total = sum(counts.values())
    return f"{total} job{'s' if total != 1 else ''}: " + (", ".join(parts) if parts else "none")


def progress_text(r: JobRecord) -> str:
    if r.status not in LEASED or not r.progress:
        return ""
    return progress_summary(r.progress)


def progress_fraction(p: dict[str, Any]) -> float | None:
    """How far the current phase is, 0..1: by steps where the trainer counts them, else by epochs."""
    for done, total in (("step", "steps"), ("epoch", "epochs")):
        if p.get(total) and p.get(done) is not None:
            return min(1.0, max(0.0, p[done] / p[total]))
    return None


def eta_seconds(r: JobRecord, now: float) -> float | None:
    """Time left in the running phase: the trainer's own ETA aged by the time since the heartbeat that
    carried it, else extrapolated from the time the phase has taken for the fraction done."""
    p = r.progress
    if r.status not in LEASED or not p:
        return None
    since = max(0.0, now - r.heartbeat_at) if r.heartbeat_at else 0.0
    if p.get("eta_s") is not None:
        return max(0.0, p["eta_s"] - since)
    fraction = progress_fraction(p)
    if not fraction:
        return None
    if p.get("elapsed_s") is not None:
        elapsed = p["elapsed_s"] + since
    elif r.started_at:
        elapsed = now - r.started_at
    else:
        return None
    return max(0.0, elapsed * (1 - fraction) / fraction)


BAR_WIDTH = 12


def progress_bar(fraction: float, width: int = BAR_WIDTH) -> Text:
    """`━━━━╸───────`: heavy for what is done, light for what is left (readable without colour too)."""
    halves = round(max(0.0, min(1.0, fraction)) * width * 2)
    full, half = divmod(halves, 2)
    bar = Text("━" * full + "╸" * half, style="green")
    bar.append("─" * (width - full - half), style="dim")
    return bar


def progress_cell(r: JobRecord) -> Text:
    """A bar and the progress in words for a job that trains; the first error line for a failed one."""
    fraction = progress_fraction(r.progress) if r.status in LEASED and r.progress else None
    if fraction is None:
        return _plain_progress(r)
    bar = progress_bar(fraction)
    bar.append(plain(f" {fraction:.0%} {progress_summary(r.progress, eta=False)}"))
    return bar


def _plain_progress(r: JobRecord) -> Text:
    return cell(progress_text(r) or (r.error.splitlines()[0][:60] if r.status == Status.FAILED and r.error else ""))


# What an operator looks for first: what runs, what broke, what waits.
_STATUS_ORDER = {s: i for i, s in enumerate((Status.RUNNING, Status.CLAIMED, Status.FAILED, Status.PENDING, Status.COMPLETED, Status.CANCELLED))}


def display_order(status: str, priority: int, name: str) -> tuple[int, int, str]:
    """Running and failed jobs first, then by priority and name."""
    return (_STATUS_ORDER.get(status, 9), -priority, name)


def jobs_table(
    records: list[JobRecord],
    now: float | None = None,
    limit: int | None = None,
    bars: bool = False,
    title: str | None = None,
    hidden: int = 0,
) -> Table:
    """The jobs, running and failed first; with `limit`, only that many rows and a line saying so.

    With `bars` (the live view), progress is a bar with an ETA column beside it. A caller that
    read only the first rows passes the whole registry's `title` and the number of rows it left out.
    """
    now = time.time() if now is None else now
    ordered = sorted(records, key=lambda r: display_order(r.status, r.spec.priority, r.name))
    if limit is not None and len(ordered) > limit:
        ordered, hidden = ordered[:limit], hidden + len(ordered) - limit
    caption = f"{hidden} more job{'s' if hidden != 1 else ''} not shown (--all lists every job)" if hidden else None
    table = Table(title=title or counts_line(records), title_justify="left", caption=caption, caption_justify="left")
    columns = ("job", "id", "model", "mode", "split", "status", "try", "host", "progress", *(("eta",) if bars else ()), "beat")
    for col in columns:
        table.add_column(col, no_wrap=col in ("id", "status", "eta"))
    for r in ordered:
        beat = f"{now - r.heartbeat_at:.0f}s ago" if r.heartbeat_at and r.status in LEASED else ""
        progress: tuple[RenderableType, ...] = (progress_cell(r), duration(eta_seconds(r, now))) if bars else (_plain_progress(r),)
        table.add_row(
            cell(r.name),
            cell(r.job_id),
            cell(r.spec.model),
            cell(r.spec.mode),
            cell(r.spec.split_recipe),
            cell(r.status, style=_STATUS_STYLE.get(r.status, "")),
            f"{r.starts}/{r.max_attempts}",
            cell(r.host),
            *progress,
            beat,
        )
    return table


def watch_view(
    records: list[JobRecord], now: float | None = None, limit: int | None = None, interval: float = 2.0, hint: str = "Ctrl-C stops watching"
) -> Group:
    """What `status --watch` and `run` redraw: the jobs table with bars, and when it was drawn."""
    now = time.time() if now is None else now
    footer = Text(f"updated {_clock(now)}, every {interval:g}s; {hint}", style="dim")
    return Group(jobs_table(records, now=now, limit=limit, bars=True), footer)


def status_changes(records: list[JobRecord], seen: dict[str, str]) -> list[str]:
    """One line per job whose status differs from `seen` (updated in place): the plain, non-terminal view."""
    lines = []
    for r in records:
        if seen.get(r.job_id) != r.status:
            host = f" on {r.host}" if r.host else ""
            lines.append(plain(f"{r.name}: {r.status}{host}"))
            seen[r.job_id] = r.status
    return lines


def metric_cell(m: dict[str, Any] | None) -> str:
    if not m or m.get("value") is None:
        return ""
    return f"{m['value']:.3f} [{m['ci_low']:.3f}, {m['ci_high']:.3f}]"


def leaderboard_rows(records: list[JobRecord]) -> list[dict[str, Any]]:
    rows = []
    for r in records:
        if r.status != Status.COMPLETED or not r.result:
            continue
        res = r.result
        rows.append(
            {
                "job": r.name,
                "job_id": r.job_id,
                "model": r.spec.model,
                "mode": r.spec.mode,
                "split": r.spec.split_recipe,
                "metrics": res.get("metrics") or {},
                "baseline": res.get("baseline") or {},
                "dataset": res.get("dataset"),
                "host": res.get("host") or r.host,
                "duration_s": (r.finished_at - r.started_at) if r.finished_at and r.started_at else None,
                "artifact_id": r.artifact_id,
            }
        )
    rows.sort(key=lambda row: -((row["metrics"].get("macro_f1") or {}).get("value") or 0.0))
    return rows


def results_table(rows: list[dict[str, Any]]) -> Table:
    """Two lines a job (a score above its CI, the model above mode and split), three in the last
    text column (the host, the artifact, the data it was trained on), so the table fits 120
    columns; long host and data names fold, nothing is cut."""
    table = Table(title=f"{len(rows)} completed job{'s' if len(rows) != 1 else ''} (95% bootstrap CI)", title_justify="left", show_lines=True)
    table.add_column("model\nmode, split", no_wrap=True)
    for name in METRICS:
        table.add_column(LABELS[name], no_wrap=True)
    table.add_column("baseline\naccuracy", no_wrap=True)
    table.add_column("host\nartifact\ndata", overflow="fold")
    table.add_column("duration", no_wrap=True)
    lines = Text("\n").join
    for row in rows:
        m, b = row["metrics"], row["baseline"]
        table.add_row(
            lines([cell(row["model"]), cell(f"{row['mode']}, {row['split']}")]),
            *(_score_lines(m.get(name)) for name in METRICS),
            f"{b['accuracy']['value']:.3f}" if b.get("accuracy") else "",
            lines([cell(row["host"]), cell(row["artifact_id"][:12]), *_data_line(row["dataset"])]),
            duration(row["duration_s"]),
        )
    return table


def _data_line(dataset: dict[str, Any] | None) -> list[Text]:
    """The data a job was trained on, as a line of its own; none for a job trained before results said."""
    label = label_of(dataset)
    return [cell(label)] if label else []


def _score_lines(m: dict[str, Any] | None) -> str:
    if not m or m.get("value") is None:
        return ""
    return f"{m['value']:.3f}\n[{m['ci_low']:.3f}, {m['ci_high']:.3f}]"


def workers_table(workers: list[WorkerInfo], now: float | None = None) -> Table:
    now = time.time() if now is None else now
    table = Table(title=f"{len(workers)} live worker{'s' if len(workers) != 1 else ''}", title_justify="left")
    for col in ("worker", "host", "tiers", "cores", "RAM GiB", "GPUs", "busy with", "queues", "seen"):
        table.add_column(col)
    for w in workers:
        cap = w.capability
        gpus = ", ".join(f"{g['name']} {g['vram_total_gib']:g} GiB" for g in cap.get("cuda_devices", [])) or "-"
        table.add_row(
            cell(w.name),
            cell(w.host_id),
            cell(",".join(w.tiers)),
            cell(cap.get("cpu_cores", "")),
            f"{cap.get('ram_total_gib', 0):g}",
            cell(gpus),
            cell(", ".join(_job_of(a) for a in w.active) or "-"),
            cell(", ".join(q for q in w.queues if QueueClass.parse(q)) or "-"),
            f"{now - w.seen_at:.0f}s ago",
        )
    return table


def _job_of(task: str) -> str:
    try:
        return parse_task_id(task)[0]
    except BadRequest:
        return task


def _clock(ts: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts)) if ts else "-"


def action_line(entry: dict[str, Any]) -> str:
    """An operator's cancel or requeue of the job, as the audit list keeps it (newest first)."""
    return plain(f"operator    {entry.get('action', '?')} at {_clock(entry.get('at'))}, during attempt {entry.get('attempt', '?')}")


def attempt_line(a: dict[str, Any]) -> str:
    """One attempt of `show`: where it ran, when, how long, and how it ended."""
    outcome = a.get("outcome", "in progress")
    failure = f" [{a['failure']}]" if a.get("failure") else ""
    ran = ""
    if a.get("finished_at") and a.get("claimed_at"):
        ran = f", {duration(a['finished_at'] - a['claimed_at'])}"
    error = (a.get("error") or "").splitlines()
    why = f": {error[0]}" if error and outcome != AttemptOutcome.COMPLETED else ""
    return plain(f"attempt {a['attempt']:<3} {a.get('host', '')} ({a.get('worker', '')}) claimed {_clock(a.get('claimed_at'))}{ran}: {outcome}{failure}{why}")
