"""The job state machine, as pure functions: what an event does to a job's state.

Every transition is fenced by the lease: the attempt number and a secret the
claiming worker made and never shows (the record keeps only its sha256). A
message for an old attempt, a second worker holding a duplicate delivery, a
worker that comes back after its job was reassigned, or any other holder of a
worker credential gets a refusal and changes nothing. The coordinator applies
these decisions atomically in Redis.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ..errors import BadRecord
from .specs import DEFAULT_MAX_ATTEMPTS


class Status(StrEnum):
    PENDING = "pending"
    CLAIMED = "claimed"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})
LEASED = frozenset({Status.CLAIMED, Status.RUNNING})
UNFINISHED = frozenset(Status) - TERMINAL
_STATUSES = frozenset(Status)


class Failure(StrEnum):
    """Why an attempt ended without a result. Infrastructure failures (and running out of memory,
    which another host may not) are retried up to max_attempts; the job's own errors only when it
    sets retry_on_error."""

    TRAINER_ERROR = "trainer_error"
    OOM = "oom"
    TIMEOUT = "timeout"
    WORKER_LOST = "worker_lost"
    WORKER_SHUTDOWN = "worker_shutdown"
    UPLOAD_ERROR = "upload_error"
    CANCELLED = "cancelled"


INFRASTRUCTURE = frozenset({Failure.UPLOAD_ERROR, Failure.WORKER_SHUTDOWN, Failure.WORKER_LOST, Failure.OOM})


class AttemptOutcome(StrEnum):
    """How one attempt on one worker ended, as the worker reports it (and its log stream's end says)."""

    COMPLETED = "completed"
    FAILED = "failed"
    REQUEUED = "requeued"  # it failed, and the job goes on to its next attempt
    CANCELLED = "cancelled"
    DEFERRED = "deferred"  # put back: the host could not start it now (VRAM)
    DROPPED = "dropped"  # a message that was stale, a duplicate or not well-formed
    LEASE_LOST = "lease_lost"  # the job moved on while it ran


def should_retry(failure: str, retry_on_error: bool) -> bool:
    if failure in INFRASTRUCTURE:
        return True
    return retry_on_error and failure in (Failure.TRAINER_ERROR, Failure.TIMEOUT)


def lease_digest(secret: str) -> str:
    """What the record keeps of a claim's secret: enough to check it, useless to present."""
    return hashlib.sha256(secret.encode()).hexdigest()


def int_field(f: dict[str, str], name: str, default: int, key: str = "", low: int = 0) -> int:
    raw = f.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.lstrip("-").isdigit() or int(raw) < low:
        raise BadRecord(key, f"field {name!r} = {raw[:40]!r} is not an integer >= {low}")
    return int(raw)


def float_field(f: dict[str, str], name: str, key: str = "") -> float | None:
    raw = f.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise BadRecord(key, f"field {name!r} = {raw[:40]!r} is not a number") from None
    if not math.isfinite(value):
        raise BadRecord(key, f"field {name!r} = {raw[:40]!r} is not a finite number")
    return value


@dataclass(frozen=True)
class JobState:
    status: str
    attempt: int
    starts: int = 0
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    worker: str = ""
    heartbeat_at: float = 0.0
    lease_hash: str = ""

    @classmethod
    def from_fields(cls, f: dict[str, str], key: str = "") -> JobState:
        """The fields a transition decides on; BadRecord (naming `key`) when one is malformed."""
        status = f.get("status", Status.PENDING)
        if status not in _STATUSES:
            raise BadRecord(key, f"status {status[:40]!r} is not one of {', '.join(Status)}")
        return cls(
            status=status,
            attempt=int_field(f, "attempt", 0, key),
            starts=int_field(f, "starts", 0, key),
            max_attempts=int_field(f, "max_attempts", DEFAULT_MAX_ATTEMPTS, key, low=1),
            worker=f.get("worker", ""),
            heartbeat_at=float_field(f, "heartbeat_at", key) or 0.0,
            lease_hash=f.get("lease", ""),
        )


@dataclass(frozen=True)
class Lease:
    """Who holds a job: the attempt its message carries, the worker that took it, and the claim's
    secret, which only that worker knows."""

    attempt: int
    worker: str
    host: str = ""
    secret: str = ""

    @classmethod
    def new(cls, attempt: int, worker: str, host: str = "") -> Lease:
        """A lease for a fresh claim, with a secret of its own."""
        return cls(attempt=attempt, worker=worker, host=host, secret=secrets.token_hex(32))

    def holds(self, state: JobState) -> bool:
        return bool(state.lease_hash) and hmac.compare_digest(state.lease_hash, lease_digest(self.secret))


class Index(StrEnum):
    """The registry's indexes a transition changes besides the job's own record."""

    LEASE = "lease"  # the job holds a lease: (re)index it at the transition's heartbeat
    UNLEASE = "unlease"  # the lease ended
    UNSENT = "unsent"  # the next attempt is due to be sent; the reaper sends it if nobody does


@dataclass(frozen=True)
class Transition:
    ok: bool
    reason: str = ""
    changes: dict[str, Any] = field(default_factory=dict)
    record: dict[str, Any] | None = None
    new_record: dict[str, Any] | None = None
    dispatch: int | None = None
    indexes: frozenset[Index] = frozenset()

    @classmethod
    def refuse(cls, reason: str) -> Transition:
        return cls(ok=False, reason=reason)


def _fenced(state: JobState, lease: Lease, allowed: frozenset[str] | set[str]) -> str | None:
    if lease.attempt != state.attempt:
        return f"stale attempt {lease.attempt}: the job is on attempt {state.attempt}"
    if state.status not in allowed:
        return f"job is {state.status}"
    if state.status in LEASED and not lease.holds(state):
        return f"attempt {lease.attempt} is held by another claim ({state.worker})"
    return None


def claim(state: JobState, lease: Lease, now: float) -> Transition:
    if lease.attempt != state.attempt:
        return Transition.refuse(f"stale attempt {lease.attempt}: the job is on attempt {state.attempt}")
    if state.status != Status.PENDING:
        return Transition.refuse(f"job is {state.status}")
    if len(lease.secret) < 32:
        return Transition.refuse("a claim needs a secret of at least 32 characters")
    return Transition(
        ok=True,
        changes={
            "status": Status.CLAIMED,
            "lease": lease_digest(lease.secret),
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
        indexes=frozenset({Index.LEASE}),
    )


def start(state: JobState, lease: Lease, now: float) -> Transition:
    why = _fenced(state, lease, {Status.CLAIMED})
    if why:
        return Transition.refuse(why)
    return Transition(
        ok=True,
        changes={"status": Status.RUNNING, "started_at": now, "heartbeat_at": now, "updated_at": now},
        record={"started_at": now},
        indexes=frozenset({Index.LEASE}),
    )


def beat(state: JobState, lease: Lease, now: float, progress: str = "") -> Transition:
    why = _fenced(state, lease, LEASED)
    if why:
        return Transition.refuse(why)
    changes: dict[str, Any] = {"heartbeat_at": now}
    if progress:
        changes["progress"] = progress
    return Transition(ok=True, changes=changes, indexes=frozenset({Index.LEASE}))


def complete(state: JobState, lease: Lease, now: float, artifact_id: str, result: str) -> Transition:
    why = _fenced(state, lease, {Status.RUNNING})
    if why:
        return Transition.refuse(why)
    return Transition(
        ok=True,
        changes={
            "status": Status.COMPLETED,
            "artifact_id": artifact_id,
            "result": result,
            "finished_at": now,
            "updated_at": now,
        },
        record={"finished_at": now, "outcome": AttemptOutcome.COMPLETED, "artifact_id": artifact_id},
        indexes=frozenset({Index.UNLEASE}),
    )


def fail(state: JobState, lease: Lease, now: float, failure: str, error: str, retry: bool) -> Transition:
    """End the attempt; a retryable failure with budget left becomes the next attempt."""
    why = _fenced(state, lease, LEASED)
    if why:
        return Transition.refuse(why)
    return _end_attempt(state, now, failure, error, retry)


def reap(state: JobState, now: float, stale_after_s: float, watching_since: float = 0.0) -> Transition:
    """The reaper's verdict on a lease whose heartbeat stopped: the worker is lost, try again elsewhere.

    Silence is counted from `watching_since` at the earliest: heartbeats travel through the
    coordinator, so while it was down every lease fell silent without any worker being lost.
    """
    if state.status not in LEASED:
        return Transition.refuse(f"job is {state.status}")
    silent = now - max(state.heartbeat_at, watching_since)
    if silent < stale_after_s:
        return Transition.refuse(f"heartbeat {silent:.1f}s ago is fresh")
    error = f"worker {state.worker} lost: no heartbeat for {silent:.0f}s"
    return _end_attempt(state, now, Failure.WORKER_LOST, error, retry=True)


def _end_attempt(state: JobState, now: float, failure: str, error: str, retry: bool) -> Transition:
    record = {"finished_at": now, "outcome": AttemptOutcome.FAILED, "failure": failure, "error": error}
    common = {"failure": failure, "error": error, "updated_at": now}
    if retry and state.starts < state.max_attempts:
        nxt = state.attempt + 1
        return Transition(
            ok=True,
            changes={**common, "status": Status.PENDING, "attempt": nxt, "sent": 0, "worker": "", "host": "", "lease": ""},
            record=record,
            dispatch=nxt,
            indexes=frozenset({Index.UNLEASE, Index.UNSENT}),
        )
    if retry:
        common["error"] = f"{error} (gave up after {state.starts} of max_attempts={state.max_attempts})"
    return Transition(ok=True, changes={**common, "status": Status.FAILED, "finished_at": now, "lease": ""}, record=record, indexes=frozenset({Index.UNLEASE}))


def requeue(state: JobState, now: float) -> Transition:
    """An operator's fresh start from any state: a new attempt and a full retry budget."""
    nxt = state.attempt + 1
    record = None
    if state.status in LEASED:
        record = {"finished_at": now, "outcome": AttemptOutcome.REQUEUED, "failure": "", "error": "requeued by operator"}
    return Transition(
        ok=True,
        changes={
            "status": Status.PENDING,
            "attempt": nxt,
            "starts": 0,
            "sent": 0,
            "worker": "",
            "host": "",
            "lease": "",
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
        indexes=frozenset({Index.UNLEASE, Index.UNSENT}),
    )


def cancel(state: JobState, now: float) -> Transition:
    if state.status in TERMINAL:
        return Transition.refuse(f"job is already {state.status}")
    record = None
    if state.status in LEASED:
        record = {"finished_at": now, "outcome": AttemptOutcome.CANCELLED, "failure": Failure.CANCELLED, "error": "cancelled by operator"}
    return Transition(
        ok=True,
        changes={
            "status": Status.CANCELLED,
            "finished_at": now,
            "updated_at": now,
            "failure": Failure.CANCELLED,
            "error": "cancelled by operator",
            "lease": "",
        },
        record=record,
        indexes=frozenset({Index.UNLEASE}),
    )


def reroute(state: JobState, now: float) -> Transition:
    """A pending job whose queue or priority changed: its old message becomes stale, a new one goes out."""
    if state.status != Status.PENDING:
        return Transition.refuse(f"job is {state.status}; the change applies to its next attempt")
    return _next_message(state, now)


def resend(state: JobState, attempt: int, now: float) -> Transition:
    """A pending job whose message left the broker without a claim (deleted, revoked, dropped).

    The next attempt, not the same one: a revoked task id stays revoked on every worker.
    """
    if state.status != Status.PENDING or state.attempt != attempt:
        return Transition.refuse(f"job moved on (it is {state.status}, attempt {state.attempt})")
    return _next_message(state, now)


def _next_message(state: JobState, now: float) -> Transition:
    nxt = state.attempt + 1
    return Transition(ok=True, changes={"attempt": nxt, "sent": 0, "updated_at": now}, dispatch=nxt, indexes=frozenset({Index.UNSENT}))
