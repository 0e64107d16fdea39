"""The reaper's passes: what it repairs, each pass surviving the others' errors.

Stale leases get their next attempt (or fail the job); a message a worker took
and never claimed is sent again; an attempt whose message never reached the
broker is sent; a CUDA-preferring job whose grace ran out is offered to the CPU
tier; and a pending job whose message is nowhere on the broker is sent again as
its next attempt. Only the coordinator holding the reaper lock runs them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from ..broker.app import transport_options
from ..config import Settings
from ..core.lifecycle import AttemptOutcome, Status
from ..errors import BadRecord, JobNotFound
from ..ids import task_id
from ..registry import RESENT, JobRecord, Registry

log = logging.getLogger("cis490.reaper")

# How long an attempt may sit unsent (its sender died between the registry write and the broker) before it is sent.
UNSENT_GRACE_S = 10.0
# How often the broker is searched for the messages of pending jobs; a message missing from two
# searches in a row is lost, so a lost message is sent again within about twice this.
LOST_SCAN_S = 5.0


class Send(Protocol):
    """What the reaper sends through (`broker.messages.Messages`; a test records instead)."""

    def dispatch(self, registry: Registry, job: JobRecord) -> None: ...

    def send(self, job_id: str, attempt: int, queue: str, priority: int) -> None: ...


Survive = Callable[[str, Callable[[], Any]], None]


class Reaper:
    def __init__(self, registry: Registry, messages: Send, settings: Settings, watching_since: float, survive: Survive):
        self.registry = registry
        self.messages = messages
        self.settings = settings
        # Heartbeats travel through the coordinator: a lease's silence counts from when it started watching.
        self.watching_since = watching_since
        self.survive = survive
        self._suspects: set[tuple[str, int]] = set()
        self._last_scan = 0.0

    def reap(self, now: float | None = None) -> None:
        """One reaper pass; each part survives the others' errors."""
        now = time.time() if now is None else now
        for part in (self._stale_leases, self._taken_unclaimed, self._unsent, self._fallbacks, self._lost_messages):
            self.survive("reaper", lambda part=part: part(now))

    def _stale_leases(self, now: float) -> None:
        stale = self.settings.stale_after_s
        for job_id in self.registry.stale_leases(now - stale):
            t = self._each(job_id, lambda: self.registry.reap(job_id, stale, watching_since=self.watching_since, now=now))
            if t is not None and t.ok:
                job = self.registry.get(job_id)
                log.warning("reaper: %s (%s) %s; %s", job.name, job_id, job.error, AttemptOutcome.REQUEUED if t.dispatch else AttemptOutcome.FAILED)
                if t.dispatch is not None:
                    self.messages.dispatch(self.registry, job)

    def _taken_unclaimed(self, now: float) -> None:
        stale = self.settings.stale_after_s
        limbo = max(3 * stale, self.settings.vram_wait_s + 2 * stale)
        for job in self.registry.release_taken_unclaimed(now - limbo):
            log.warning("reaper: %s attempt %s was taken by a worker that never claimed it; sending it again", job.name, job.attempt)
            self.messages.dispatch(self.registry, job)

    def _unsent(self, now: float) -> None:
        for job_id in self.registry.unsent_before(now - UNSENT_GRACE_S):
            job = self.registry.readable(job_id)
            if job is not None and job.status == Status.PENDING and not job.sent:
                log.warning("reaper: sending %s attempt %s, whose message never reached the broker", job.name, job.attempt)
                self.messages.dispatch(self.registry, job)
                self.registry.count(RESENT)
            else:
                self.registry.forget_unsent(job_id)

    def _fallbacks(self, now: float) -> None:
        for job_id in self.registry.due_fallbacks(now):
            job = self._each(job_id, lambda: self.registry.fall_back(job_id))
            if job is not None:
                log.info("reaper: no CUDA host started %s in %ss; offering it to the CPU tier (%s)", job.name, job.spec.prefer_cuda_grace_s, job.fallback_queue)
                self.messages.send(job.job_id, job.attempt, job.fallback_queue, job.broker_priority)

    def _lost_messages(self, now: float) -> None:
        """The registry, not the broker, is the truth about pending work: a pending job whose message
        is in no queue and not taken, in two searches in a row, gets its next attempt sent."""
        if now - self._last_scan < LOST_SCAN_S:
            return
        self._last_scan = now
        transport = transport_options()
        pending = self.registry.pending_sent()
        queues = {q for _, _, qs in pending for q in qs}
        present = self.registry.broker_task_ids(queues, transport["priority_steps"], transport["sep"]) if pending else set()
        missing = {(job_id, attempt) for job_id, attempt, _ in pending if task_id(job_id, attempt) not in present}
        confirmed, self._suspects = missing & self._suspects, missing
        for job_id, attempt in sorted(confirmed):
            t = self._each(job_id, lambda: self.registry.resend(job_id, attempt))
            if t is not None and t.ok:
                job = self.registry.get(job_id)
                log.warning("reaper: the message of %s attempt %s left the broker unclaimed; sending attempt %s", job.name, attempt, job.attempt)
                self.messages.dispatch(self.registry, job)

    def _each(self, job_id: str, act: Callable[[], Any]) -> Any:
        """One job's step of a pass: a record that cannot be read is reported and skipped, not fatal."""
        try:
            return act()
        except BadRecord as exc:
            self.registry.report(exc)
        except JobNotFound:
            pass
        return None
