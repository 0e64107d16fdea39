"""The live view of `status --watch` and `run`: poll the registry, redraw, stop when told.

A thin shell around `views.watch_view`. Each poll reads three fields per job
and re-reads only the jobs that changed, so a refresh stays cheap with 10,000
jobs in the registry.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import Console
from rich.live import Live

from ..registry import JobRecord, Registry
from .views import status_changes, watch_view

Done = Callable[[list[JobRecord]], bool]


class JobCache:
    """The registry's job records, kept between polls and re-read only where a version changed."""

    def __init__(self, registry: Registry, ids: list[str] | None = None):
        self.registry = registry
        self.ids = ids
        self._records: dict[str, JobRecord] = {}
        self._versions: dict[str, tuple] = {}

    def refresh(self) -> list[JobRecord]:
        versions = self.registry.versions(self.ids)
        stale = [job_id for job_id, v in versions.items() if self._versions.get(job_id) != v]
        for record in self.registry.jobs(stale):
            self._records[record.job_id] = record
        self._versions = versions
        return [self._records[job_id] for job_id in versions if job_id in self._records]


def watch(
    registry: Registry,
    console: Console,
    *,
    interval: float,
    limit: int | None,
    ids: list[str] | None = None,
    keep: Callable[[JobRecord], bool] | None = None,
    done: Done | None = None,
    check: Callable[[], None] | None = None,
    hint: str = "Ctrl-C stops watching",
) -> list[JobRecord]:
    """Redraw the jobs (those `keep` accepts) every `interval` seconds until `done` says so.

    A terminal gets a live table; anything else a line per status change. `check`
    runs after each poll and may raise to stop. Ctrl-C ends it with KeyboardInterrupt.
    """
    cache = JobCache(registry, ids)

    def poll() -> list[JobRecord]:
        records = cache.refresh()
        return [r for r in records if keep(r)] if keep else records

    if console.is_terminal:
        with Live(console=console, auto_refresh=False, transient=False) as live:
            while True:
                records = poll()
                live.update(watch_view(records, limit=limit, interval=interval, hint=hint), refresh=True)
                if done and done(records):
                    return records
                if check:
                    check()
                time.sleep(interval)
    seen: dict[str, str] = {}
    while True:
        records = poll()
        lines = status_changes(records, seen)
        if lines:
            console.print("\n".join(lines), markup=False, highlight=False)
        if done and done(records):
            return records
        if check:
            check()
        time.sleep(interval)
