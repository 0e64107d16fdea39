"""The job state machine, as pure functions: what an event does to a job's state.

Every transition is fenced by the lease (attempt number + worker): a message
for an old attempt, a second worker holding a duplicate delivery, or a worker
that comes back after its job was reassigned gets a refusal and changes
nothing. The registry applies these decisions atomically in Redis.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PENDING, CLAIMED, RUNNING = "pending", "claimed", "running"
COMPLETED, FAILED, CANCELLED = "completed", "failed", "cancelled"
STATUSES = (PENDING, CLAIMED, RUNNING, COMPLETED, FAILED, CANCELLED)
TERMINAL = frozenset({COMPLETED, FAILED, CANCELLED})
LEASED = frozenset({CLAIMED, RUNNING})

# Failure types; infrastructure failures are retried up to max_attempts.
TRAINER_ERROR = "trainer_error"
UPLOAD_ERROR = "upload_error"
WORKER_SHUTDOWN = "worker_shutdown"
WORKER_LOST = "worker_lost"
LEASE_LOST = "lease_lost"
INFRASTRUCTURE = frozenset({UPLOAD_ERROR, WORKER_SHUTDOWN, WORKER_LOST})


@dataclass(frozen=True)
class JobState:
    status: str
    attempt: int
    starts: int = 0
    max_attempts: int = 3
    worker: str = ""

    @classmethod
    def from_fields(cls, f: dict[str, str]) -> JobState:
        return cls(
            status=f.get("status", PENDING),
            attempt=int(f.get("attempt") or 0),
            starts=int(f.get("starts") or 0),
            max_attempts=int(f.get("max_attempts") or 3),
            worker=f.get("worker", ""),
        )


@dataclass(frozen=True)
class Lease:
    """Who holds a job: the attempt its message carries and the worker that took it."""

    attempt: int
    worker: str
    host: str = ""


@dataclass(frozen=True)
class Transition:
    ok: bool
    reason: str = ""
    changes: dict[str, Any] = field(default_factory=dict)
    record: dict[str, Any] | None = None
    new_record: dict[str, Any] | None = None
    dispatch: int | None = None

    @classmethod
    def refuse(cls, reason: str) -> Transition:
        return cls(ok=False, reason=reason)


def _fenced(state: JobState, lease: Lease, allowed: frozenset[str] | set[str]) -> str | None:
    if lease.attempt != state.attempt:
        return f"stale attempt {lease.attempt}: the job is on attempt {state.attempt}"
    if state.status not in allowed:
        return f"job is {state.status}"
    if state.status in LEASED and state.worker != lease.worker:
        return f"attempt {lease.attempt} is held by {state.worker}"
    return None


def claim(state: JobState, lease: Lease, now: float) -> Transition:
    if lease.attempt != state.attempt:
        return Transition.refuse(f"stale attempt {lease.attempt}: the job is on attempt {state.attempt}")
    if state.status != PENDING:
        return Transition.refuse(f"job is {state.status}")
    return Transition(
        ok=True,
        changes={
            "status": CLAIMED,
            "worker": lease.worker,
            "host": lease.host,
            "claimed_at": now,
            "heartbeat_at": now,
            "started_at": "",
            "finished_at": "",
            "starts": state.starts + 1,
            "progress": "",
            "error": "",
            "failure": "",
            "updated_at": now,
        },
        new_record={"attempt": lease.attempt, "worker": lease.worker, "host": lease.host, "claimed_at": now},
    )


def start(state: JobState, lease: Lease, now: float) -> Transition:
    why = _fenced(state, lease, {CLAIMED})
    if why:
        return Transition.refuse(why)
    return Transition(
        ok=True,
        changes={"status": RUNNING, "started_at": now, "heartbeat_at": now, "updated_at": now},
        record={"started_at": now},
    )


def beat(state: JobState, lease: Lease, now: float, progress: str = "") -> Transition:
    why = _fenced(state, lease, LEASED)
    if why:
        return Transition.refuse(why)
    changes: dict[str, Any] = {"heartbeat_at": now}
    if progress:
        changes["progress"] = progress
    return Transition(ok=True, changes=changes)


def complete(state: JobState, lease: Lease, now: float, artifact_id: str, result: str) -> Transition:
    why = _fenced(state, lease, {RUNNING})
    if why:
        return Transition.refuse(why)
    return Transition(
        ok=True,
        changes={
            "status": COMPLETED,
            "artifact_id": artifact_id,
            "result": result,
            "finished_at": now,
            "updated_at": now,
        },
        record={"finished_at": now, "outcome": COMPLETED, "artifact_id": artifact_id},
    )


def fail(state: JobState, lease: Lease, now: float, failure: str, error: str, retry: bool) -> Transition:
    """End the attempt; a retryable failure with budget left becomes the next attempt."""
    why = _fenced(state, lease, LEASED)
    if why:
        return Transition.refuse(why)
    record = {"finished_at": now, "outcome": FAILED, "failure": failure, "error": error}
    common = {"failure": failure, "error": error, "updated_at": now}
    if retry and state.starts < state.max_attempts:
        nxt = state.attempt + 1
        return Transition(
            ok=True,
            changes={**common, "status": PENDING, "attempt": nxt, "sent": 0, "worker": "", "host": ""},
            record=record,
            dispatch=nxt,
        )
    if retry:
        common["error"] = f"{error} (gave up after {state.starts} of max_attempts={state.max_attempts})"
    return Transition(ok=True, changes={**common, "status": FAILED, "finished_at": now}, record=record)


def requeue(state: JobState, now: float) -> Transition:
    """An operator's fresh start from any state: a new attempt and a full retry budget."""
    nxt = state.attempt + 1
    record = None
    if state.status in LEASED:
        record = {"finished_at": now, "outcome": "requeued", "failure": "", "error": "requeued by operator"}
    return Transition(
        ok=True,
        changes={
            "status": PENDING,
            "attempt": nxt,
            "starts": 0,
            "sent": 0,
            "worker": "",
            "host": "",
            "error": "",
            "failure": "",
            "progress": "",
            "artifact_id": "",
            "result": "",
            "claimed_at": "",
            "started_at": "",
            "finished_at": "",
            "heartbeat_at": "",
            "updated_at": now,
        },
        record=record,
        dispatch=nxt,
    )


def cancel(state: JobState, now: float) -> Transition:
    if state.status in TERMINAL:
        return Transition.refuse(f"job is already {state.status}")
    record = None
    if state.status in LEASED:
        record = {"finished_at": now, "outcome": CANCELLED, "failure": "cancelled", "error": "cancelled by operator"}
    return Transition(
        ok=True,
        changes={"status": CANCELLED, "finished_at": now, "updated_at": now, "failure": "cancelled"},
        record=record,
    )


def reroute(state: JobState, now: float) -> Transition:
    """A pending job whose queue or priority changed: its old message becomes stale, a new one goes out."""
    if state.status != PENDING:
        return Transition.refuse(f"job is {state.status}; the change applies to its next attempt")
    nxt = state.attempt + 1
    return Transition(ok=True, changes={"attempt": nxt, "sent": 0, "updated_at": now}, dispatch=nxt)
