"""Jobs: inserting and re-routing them (an apply), their fenced transitions, and reading them back."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import replace
from typing import Any, Callable

from ..core import lifecycle, plan
from ..core.lifecycle import JobState, Lease, Transition
from ..core.specs import JobSpec
from ..core.plan import Existing, JobPlan
from ..core.routing import fallback_queue
from ..errors import BadRecord, JobNotFound
from . import functions
from .connection import Connection, flatten
from .keys import AUDIT, FALLBACKS, JOBS, STATS, UNSENT, attempts_key, spec_key, state_key
from .records import ApplyOutcome, JobRecord, spec_digest
from .stats import LOST, REQUEUED


class Jobs(Connection):
    # --- apply -------------------------------------------------------------------------

    def existing(self, ids: Iterable[str]) -> list[Existing | None]:
        """What an apply looks at for each job (None: not in the registry), in one pipelined read."""
        rows = self._fields(list(ids), "status", "digest", "attempt", "sent")
        return [
            None if status is None else Existing(status, digest or "", int(attempt or 0), sent != "0")
            for status, digest, attempt, sent in rows
        ]

    def apply(self, plans: Iterable[tuple[JobSpec, str, int]], manifest: str, now: float | None = None) -> list[ApplyOutcome]:
        """Insert new jobs and reroute changed pending ones, as `plan.decide` says; (spec, queue, broker priority) per job."""
        now = time.time() if now is None else now
        plans = [JobPlan(*p) for p in plans]
        current = self.existing(p.spec.job_id for p in plans)
        outcomes: list[ApplyOutcome | None] = [None] * len(plans)
        self.load_functions()
        with self.guard():
            creates = self.r.pipeline(transaction=False)
            created_idx = []
            for i, ((spec, queue, bprio), existing) in enumerate(zip(plans, current)):
                new_digest = spec_digest(spec, queue, bprio)
                step = plan.decide(new_digest, existing)
                if step.action == plan.INSERT:
                    fields = _initial_fields(spec, queue, bprio, manifest, new_digest, now)
                    due = now + spec.prefer_cuda_grace_s if fields["fallback_queue"] else ""
                    functions.call(
                        creates,
                        functions.CREATE,
                        [state_key(spec.job_id), spec_key(spec.job_id), JOBS, spec.job_id, FALLBACKS, UNSENT],
                        [json.dumps(spec.to_dict(), sort_keys=True), due, now, *flatten(fields)],
                    )
                    created_idx.append(i)
                elif step.action == plan.UNCHANGED:
                    outcomes[i] = ApplyOutcome(spec.job_id, spec.name, step.action, step.attempt, step.send)
                else:
                    outcomes[i] = self._update(spec, queue, bprio, manifest, new_digest, now)
            for i, created in zip(created_idx, creates.execute()):
                spec = plans[i].spec
                if created:
                    outcomes[i] = ApplyOutcome(spec.job_id, spec.name, plan.INSERT, 1, True)
                else:  # another enqueue inserted it first
                    outcomes[i] = ApplyOutcome(spec.job_id, spec.name, plan.UNCHANGED, self.get(spec.job_id).attempt, False)
        return [o for o in outcomes if o is not None]

    def _update(self, spec: JobSpec, queue: str, bprio: int, manifest: str, digest: str, now: float) -> ApplyOutcome:
        fields = _routing_fields(spec, queue, bprio, manifest, digest)
        spec_json = json.dumps(spec.to_dict(), sort_keys=True)

        def decide(state: JobState) -> Transition:
            moved = lifecycle.reroute(state, now)  # what `plan.on_change` previews
            return replace(moved, changes={**fields, **moved.changes}) if moved.ok else Transition(ok=True, changes=fields)

        _, state = self.transition(spec.job_id, decide, extra=lambda pipe, _: pipe.set(spec_key(spec.job_id), spec_json))
        step = plan.on_change(state, now)
        return ApplyOutcome(spec.job_id, spec.name, step.action, step.attempt, step.send)

    def mark_sent(self, items: Iterable[tuple[str, int]]) -> None:
        """Record that the message of (job, attempt) is on the broker, unless the job moved on."""
        self.load_functions()
        with self.guard():
            pipe = self.r.pipeline(transaction=False)
            for job_id, attempt in items:
                functions.call(pipe, functions.MARK_SENT, [state_key(job_id), UNSENT], [str(attempt), job_id])
            pipe.execute()

    # --- transitions --------------------------------------------------------------------

    def claim(self, job_id: str, lease: Lease) -> Transition:
        return self.transition(job_id, lambda s: lifecycle.claim(s, lease, time.time()))[0]

    def start(self, job_id: str, lease: Lease) -> Transition:
        return self.transition(job_id, lambda s: lifecycle.start(s, lease, time.time()))[0]

    def beat(self, job_id: str, lease: Lease, progress: dict[str, Any] | None = None) -> Transition:
        blob = json.dumps(progress) if progress else ""
        return self.transition(job_id, lambda s: lifecycle.beat(s, lease, time.time(), blob))[0]

    def complete(self, job_id: str, lease: Lease, artifact_id: str, result: dict[str, Any]) -> Transition:
        blob = json.dumps(result)
        return self.transition(job_id, lambda s: lifecycle.complete(s, lease, time.time(), artifact_id, blob))[0]

    def fail(self, job_id: str, lease: Lease, failure: str, error: str, retry: bool) -> Transition:
        return self.transition(job_id, lambda s: lifecycle.fail(s, lease, time.time(), failure, error, retry))[0]

    def requeue(self, job_id: str) -> Transition:
        """Operator action: recorded in the operator-only audit list, so a worker credential cannot."""
        return self.transition(job_id, lambda s: lifecycle.requeue(s, time.time()), audit="requeue")[0]

    def cancel(self, job_id: str) -> Transition:
        return self.transition(job_id, lambda s: lifecycle.cancel(s, time.time()), audit="cancel")[0]

    def reap(self, job_id: str, stale_after_s: float, watching_since: float = 0.0, now: float | None = None) -> Transition:
        return self.transition(
            job_id, lambda s: lifecycle.reap(s, time.time() if now is None else now, stale_after_s, watching_since), extra=count_dispatch(REQUEUED)
        )[0]

    def resend(self, job_id: str, attempt: int) -> Transition:
        """A pending job whose message is gone from the broker gets its next attempt (see `lifecycle.resend`)."""
        return self.transition(job_id, lambda s: lifecycle.resend(s, attempt, time.time()), extra=count_dispatch(LOST))[0]

    def note_waiting(self, job_id: str, attempt: int, reason: str) -> bool:
        """Say on a pending job why the host that took its message put it back."""

        def decide(state: JobState) -> Transition:
            if state.attempt != attempt or state.status != lifecycle.Status.PENDING:
                return Transition.refuse("job moved on")
            return Transition(ok=True, changes={"waiting": reason, "updated_at": time.time()})

        return self.transition(job_id, decide)[0].ok

    def status_of(self, job_id: str) -> tuple[str, int]:
        """The job's status and attempt: one cheap read a running attempt makes every second."""
        with self.guard():
            status, attempt = self.r.hmget(state_key(job_id), "status", "attempt")
        return status or "", int(attempt) if attempt and attempt.isascii() and attempt.isdigit() else 0

    def audit(self, job_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Operators' cancels and requeues, newest first (of one job, with `job_id`): what `show` lists."""
        with self.guard():
            raw = self.r.lrange(AUDIT, 0, -1)
        entries = []
        for item in raw:
            try:
                entry = json.loads(item)
            except ValueError:
                continue
            if isinstance(entry, dict) and isinstance(entry.get("at"), (int, float)) and job_id in (None, entry.get("job_id")):
                entries.append(entry)
                if len(entries) == limit:
                    break
        return entries

    # --- reads ------------------------------------------------------------------------

    def job_ids(self) -> list[str]:
        with self.guard():
            return sorted(self.r.smembers(JOBS))

    def get(self, job_id: str) -> JobRecord:
        with self.guard():
            pipe = self.r.pipeline(transaction=False)
            pipe.hgetall(state_key(job_id))
            pipe.get(spec_key(job_id))
            fields, spec_json = pipe.execute()
        if not fields:
            raise JobNotFound(job_id)
        return JobRecord.from_redis(job_id, fields, spec_json)

    def readable(self, job_id: str) -> JobRecord | None:
        """The job's record, or None (reported in `problems`) when it is missing or cannot be read."""
        try:
            return self.get(job_id)
        except JobNotFound:
            return None
        except BadRecord as exc:
            self.report(exc)
            return None

    def jobs(
        self,
        ids: Iterable[str] | None = None,
        *,
        manifest: str | None = None,
        model: str | None = None,
        status: str | frozenset[str] | None = None,
    ) -> list[JobRecord]:
        """Every job's record (or those of `ids`), narrowed to a manifest, a model and a status or set of
        statuses: the filters read three fields of each job, whole records only of those that match."""
        ids = self.job_ids() if ids is None else list(ids)
        if manifest is None and model is None and status is None:
            return self._records(ids)
        statuses = {status} if isinstance(status, str) else status

        def wanted(job_manifest: str | None, job_model: str | None, job_status: str | None) -> bool:
            return (
                (manifest is None or job_manifest == manifest)
                and (model is None or job_model == model)
                and (statuses is None or job_status in statuses)
            )

        rows = self._fields(ids, "manifest", "model", "status")
        return self._records(job_id for job_id, row in zip(ids, rows) if wanted(*row))

    def _records(self, ids: Iterable[str]) -> list[JobRecord]:
        ids = list(ids)
        with self.guard():
            pipe = self.r.pipeline(transaction=False)
            for job_id in ids:
                pipe.hgetall(state_key(job_id))
                pipe.get(spec_key(job_id))
            raw = pipe.execute()
        records = []
        for i, job_id in enumerate(ids):
            fields, spec_json = raw[2 * i], raw[2 * i + 1]
            if fields:
                try:
                    records.append(JobRecord.from_redis(job_id, fields, spec_json))
                except BadRecord as exc:
                    self.report(exc)
        return records

    def versions(self, ids: Iterable[str] | None = None) -> dict[str, tuple[str | None, ...]]:
        """Per job, fields that change whenever its record does (a transition, a heartbeat, a re-routing
        enqueue): a live view re-reads only the jobs whose version moved."""
        ids = self.job_ids() if ids is None else list(ids)
        rows = self._fields(ids, "updated_at", "heartbeat_at", "digest")
        return {job_id: tuple(v) for job_id, v in zip(ids, rows) if any(v)}

    def first_jobs(self, order: Callable[[str, int, str], Any], limit: int, manifest: str | None = None) -> tuple[list[JobRecord], list[str]]:
        """The first `limit` jobs by `order(status, priority, name)` and every job's status: a status page
        over 10,000 jobs reads four fields of each and whole records of the rows it shows."""
        ids = self.job_ids()
        rows = [(job_id, *row) for job_id, row in zip(ids, self._fields(ids, "status", "priority", "name", "manifest")) if row[0] is not None]
        if manifest is not None:
            rows = [row for row in rows if row[4] == manifest]
        rows.sort(key=lambda row: order(row[1], _priority(row[2]), row[3] or ""))
        return self.jobs(row[0] for row in rows[:limit]), [row[1] for row in rows]

    def find(self, key: str) -> JobRecord:
        """A job by id, unique id prefix or name."""
        ids = self.job_ids()
        if key in ids:
            return self.get(key)
        prefixed = [i for i in ids if i.startswith(key)] if len(key) >= 4 else []
        if len(prefixed) == 1:
            return self.get(prefixed[0])
        named = [job_id for job_id, (name,) in zip(ids, self._fields(ids, "name")) if name == key]
        if len(named) == 1:
            return self.get(named[0])
        if len(prefixed) > 1 or len(named) > 1:
            found = sorted({*prefixed, *named})
            raise JobNotFound(f"{key} (ambiguous: matches {', '.join(found)})")
        raise JobNotFound(key)

    def manifest_of(self, ids: Iterable[str] | None = None) -> dict[str, str]:
        """Each job's manifest name, for cheap orphan checks."""
        ids = self.job_ids() if ids is None else list(ids)
        return {job_id: manifest for job_id, (manifest,) in zip(ids, self._fields(ids, "manifest"))}

    def _fields(self, ids: list[str], *names: str) -> list[list[str | None]]:
        """A few fields of each job, in `ids` order: a scan of 10,000 jobs costs one pipelined round
        trip, not 10,000 records."""
        with self.guard():
            pipe = self.r.pipeline(transaction=False)
            for job_id in ids:
                pipe.hmget(state_key(job_id), *names)
            return pipe.execute()

    def attempts(self, job_id: str) -> list[dict[str, Any]]:
        """The job's attempt records; one that cannot be read is reported and left out."""
        with self.guard():
            raws = self.r.lrange(attempts_key(job_id), 0, -1)
        records = []
        for i, raw in enumerate(raws):
            try:
                rec = json.loads(raw)
            except (ValueError, RecursionError):
                rec = None
            if isinstance(rec, dict):
                records.append(rec)
            else:
                self.report(BadRecord(f"{attempts_key(job_id)}[{i}]", "not a JSON object"))
        return records



def _routing_fields(spec: JobSpec, queue: str, bprio: int, manifest: str, digest: str) -> dict[str, Any]:
    """What an enqueue sets on every apply; a change of any of these re-routes a pending job."""
    return {
        "name": spec.name,
        "model": spec.model,
        "mode": spec.mode,
        "queue": queue,
        "fallback_queue": fallback_queue(spec),
        "priority": spec.priority,
        "bprio": bprio,
        "max_attempts": spec.max_attempts,
        "manifest": manifest,
        "digest": digest,
    }


def _initial_fields(spec: JobSpec, queue: str, bprio: int, manifest: str, digest: str, now: float) -> dict[str, Any]:
    return {
        **_routing_fields(spec, queue, bprio, manifest, digest),
        "status": lifecycle.Status.PENDING,
        "attempt": 1,
        "starts": 0,
        "sent": 0,
        "created_at": now,
        "updated_at": now,
    }


def _priority(raw: str | None) -> int:
    try:
        return int(raw or 0)
    except ValueError:
        return 0


def count_dispatch(counter: str) -> Callable[[Any, Transition], None]:
    """A transition's extra step: count the recovery when it sent the job on to its next attempt."""

    def count(pipe, t: Transition) -> None:
        if t.dispatch is not None:
            pipe.hincrby(STATS, counter, 1)

    return count


