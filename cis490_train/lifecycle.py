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

# Failure types. Infrastructure failures (and running out of memory, which another host may not)
# are retried up to max_attempts; the job's own errors only when it sets retry_on_error.
TRAINER_ERROR = "trainer_error"
OOM = "oom"
TIMEOUT = "timeout"
WORKER_LOST = "worker_lost"
WORKER_SHUTDOWN = "worker_shutdown"
UPLOAD_ERROR = "upload_error"
CANCELLED_FAILURE = "cancelled"
FAILURE_TYPES = (TRAINER_ERROR, OOM, TIMEOUT, WORKER_LOST, WORKER_SHUTDOWN, UPLOAD_ERROR, CANCELLED_FAILURE)
INFRASTRUCTURE = frozenset({UPLOAD_ERROR, WORKER_SHUTDOWN, WORKER_LOST, OOM})


def should_retry(failure: str, retry_on_error: bool) -> bool:
    if failure in INFRASTRUCTURE:
        return True
    return retry_on_error and failure in (TRAINER_ERROR, TIMEOUT)


@dataclass(frozen=True)
class JobState:
    status: str
    attempt: int
    starts: int = 0
    max_attempts: int = 3
    worker: str = ""
    heartbeat_at: float = 0.0

    @classmethod
    def from_fields(cls, f: dict[str, str]) -> JobState:
        return cls(
            status=f.get("status", PENDING),
            attempt=int(f.get("attempt") or 0),
            starts=int(f.get("starts") or 0),
            max_attempts=int(f.get("max_attempts") or 3),
            worker=f.get("worker", ""),
            heartbeat_at=float(f.get("heartbeat_at") or 0.0),
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
            "waiting": "",
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
    return _end_attempt(state, now, failure, error, retry)


def reap(state: JobState, now: float, stale_after_s: float) -> Transition:
    """The reaper's verdict on a lease whose heartbeat stopped: the worker is lost, try again elsewhere."""
    if state.status not in LEASED:
        return Transition.refuse(f"job is {state.status}")
    silent = now - state.heartbeat_at
    if silent < stale_after_s:
        return Transition.refuse(f"heartbeat {silent:.1f}s ago is fresh")
    error = f"worker {state.worker} lost: no heartbeat for {silent:.0f}s"
    return _end_attempt(state, now, WORKER_LOST, error, retry=True)


def _end_attempt(state: JobState, now: float, failure: str, error: str, retry: bool) -> Transition:
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
        record = {"finished_at": now, "outcome": CANCELLED, "failure": CANCELLED_FAILURE, "error": "cancelled by operator"}
    return Transition(
        ok=True,
        changes={"status": CANCELLED, "finished_at": now, "updated_at": now, "failure": CANCELLED_FAILURE, "error": "cancelled by operator"},
        record=record,
    )


def reroute(state: JobState, now: float) -> Transition:
    """A pending job whose queue or priority changed: its old message becomes stale, a new one goes out."""
    if state.status != PENDING:
        return Transition.refuse(f"job is {state.status}; the change applies to its next attempt")
    nxt = state.attempt + 1
    return Transition(ok=True, changes={"attempt": nxt, "sent": 0, "updated_at": now}, dispatch=nxt)
