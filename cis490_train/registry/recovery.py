"""Recovery: what the coordinator's reaper looks at and repairs.

Attempts whose message never reached the broker, messages taken and never
claimed, pending jobs whose message left the broker, stale leases (the reaper
lock decides who acts), and CUDA-preferring jobs whose grace ran out.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable

from ..core import lifecycle
from ..core.lifecycle import JobState, Transition
from ..errors import BadRecord, BadRequest, JobNotFound
from ..ids import parse_task_id
from . import functions
from .jobs import Jobs
from .keys import FALLBACKS, KOMBU_UNACKED, KOMBU_UNACKED_INDEX, LEASES, REAPER, STATS, UNSENT
from .records import JobRecord
from .stats import FALLBACK, RELEASED

SCAN_PAGE = 1000
# A Celery message names its task id as `correlation_id` once, in its properties.
_TASK_IN_MESSAGE = re.compile(rb'"correlation_id": ?"([0-9a-f]{16}:[0-9]{1,7})"')


class Recovery(Jobs):
    def unsent_before(self, ts: float) -> list[str]:
        """Jobs whose current attempt was due to be sent before `ts` and is not known to be on the broker."""
        with self.guard():
            return list(self.r.zrangebyscore(UNSENT, "-inf", ts))

    def forget_unsent(self, job_id: str) -> None:
        with self.guard():
            self.r.zrem(UNSENT, job_id)


    def lead(self, name: str, ttl_s: float) -> bool:
        """Take or keep the reaper lock; False while another live worker holds it."""
        return bool(self.fcall(functions.LEAD, [REAPER], [name, max(1, int(ttl_s * 1000))]))

    def let_go(self, name: str) -> None:
        """Release the reaper lock if `name` holds it."""
        self.fcall(functions.RELEASE, [REAPER], [name])

    def reaper(self) -> str | None:
        with self.guard():
            return self.r.get(REAPER)

    def stale_leases(self, older_than: float) -> list[str]:
        with self.guard():
            return list(self.r.zrangebyscore(LEASES, "-inf", older_than))

    def release_taken_unclaimed(self, older_than: float) -> list[JobRecord]:
        """Messages a worker took from the broker before `older_than` whose job is still pending on
        that attempt: the worker died between taking and claiming. Their broker entries are removed
        here (Celery would restore them only after the visibility timeout); the caller re-sends."""
        with self.guard():
            tags = self.r.zrangebyscore(KOMBU_UNACKED_INDEX, "-inf", older_than)
            raws = self.r.hmget(KOMBU_UNACKED, tags) if tags else []
        released = []
        for tag, raw in zip(tags, raws):
            task = _task_of(raw)
            if task is None:
                continue
            job_id, attempt = task
            try:
                job = self.get(job_id)
            except JobNotFound:
                continue
            except BadRecord as exc:
                self.report(exc)
                continue
            if job.status != lifecycle.Status.PENDING or job.attempt != attempt:
                continue
            with self.guard():
                if not self.r.hdel(KOMBU_UNACKED, tag):
                    continue  # acknowledged meanwhile: it was not in limbo
                self.r.zrem(KOMBU_UNACKED_INDEX, tag)
                self.r.hincrby(STATS, RELEASED, 1)
            released.append(job)
        return released

    def pending_sent(self) -> list[tuple[str, int, tuple[str, ...]]]:
        """(job id, attempt, queues) of every pending job whose current message is on the broker."""
        ids = self.job_ids()
        found = []
        for job_id, (status, attempt, sent, queue, fallback, active) in zip(
            ids, self._fields(ids, "status", "attempt", "sent", "queue", "fallback_queue", "fallback_active")
        ):
            if status != lifecycle.Status.PENDING or sent == "0" or not queue or not (attempt or "").isdigit():
                continue
            queues = (queue, fallback) if fallback and active == "1" else (queue,)
            found.append((job_id, int(attempt), queues))
        return found

    def broker_task_ids(self, queues: Iterable[str], priority_steps: Iterable[int], sep: str) -> set[str]:
        """The task ids of every message waiting in `queues` (all priority levels) or taken and not
        yet acknowledged: where an attempt's message can be while its job is pending.

        Read in pages of raw bytes and matched, not parsed: a scan of 10,000 messages stays cheap
        and never blocks Redis the way one script over them would.
        """
        keys = [f"{queue}{sep}{step}" if step else queue for queue in queues for step in sorted(set(priority_steps))]
        raw = self.bytes_client()
        found: set[str] = set()
        with self.guard():
            for key in keys:
                start = 0
                while True:
                    page = raw.lrange(key, start, start + SCAN_PAGE - 1)
                    found.update(_task_ids(page))
                    if len(page) < SCAN_PAGE:
                        break
                    start += SCAN_PAGE
            cursor = 0
            while True:
                cursor, entries = raw.hscan(KOMBU_UNACKED, cursor, count=SCAN_PAGE)
                found.update(_task_ids(entries.values()))
                if cursor == 0:
                    break
        return found

    def due_fallbacks(self, now: float) -> list[str]:
        with self.guard():
            return list(self.r.zrangebyscore(FALLBACKS, "-inf", now))

    def fall_back(self, job_id: str) -> JobRecord | None:
        """A prefer_cuda job no CUDA host started in time: also offer its attempt to the CPU tier."""

        def decide(state: JobState) -> Transition:
            if state.status != lifecycle.Status.PENDING:
                return Transition.refuse(f"job is {state.status}")
            return Transition(ok=True, changes={"fallback_active": 1, "updated_at": time.time()})

        def due_done(pipe, _: Transition) -> None:
            pipe.zrem(FALLBACKS, job_id)
            pipe.hincrby(STATS, FALLBACK, 1)

        t, _ = self.transition(job_id, decide, extra=due_done)
        if not t.ok:
            with self.guard():
                self.r.zrem(FALLBACKS, job_id)
            return None
        return self.get(job_id)


def _task_of(raw: str | None) -> tuple[str, int] | None:
    """(job id, attempt) of a kombu unacked entry holding one of our task messages."""
    try:
        return parse_task_id(json.loads(raw)[0]["headers"]["id"])
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, RecursionError, BadRequest):
        return None


def _task_ids(messages: Iterable[bytes]) -> list[str]:
    return [m.decode() for m in _TASK_IN_MESSAGE.findall(b"\n".join(messages))]
