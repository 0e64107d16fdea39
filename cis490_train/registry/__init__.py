"""The job registry in Redis: specs, states, attempts, queue classes, host policies, live workers.

Keys under `cis490:op:` are written only by operators (enqueue, cancel,
requeue); job state under `cis490:job:` is written by operators and workers.
Every per-job transition reads the state, asks `lifecycle` what to do and
writes under WATCH, so two writers never interleave.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from . import functions
from ..core import lifecycle, plan
from ..errors import BadRecord, BadRequest, BrokerUnavailable, Cis490Error, JobNotFound, PermissionDenied
from ..ids import parse_task_id
from ..core.lifecycle import JobState, Lease, Transition, float_field, int_field
from ..core.protocol import clean_progress
from ..core.manifest import HostSpec, JobSpec
from ..core.plan import Existing, JobPlan
from ..core.routing import QueueClass, fallback_queue

log = logging.getLogger("cis490.registry")

PREFIX = "cis490:"
JOBS = PREFIX + "op:jobs"
QUEUES = PREFIX + "op:queues"
HOSTS = PREFIX + "op:hosts"
AUDIT = PREFIX + "op:audit"
WORKERS = PREFIX + "workers"
LEASES = PREFIX + "leases"  # job id -> last heartbeat, for every claimed or running job
UNSENT = PREFIX + "unsent"  # job id -> when its current attempt became due to be sent
FALLBACKS = PREFIX + "fallbacks"  # prefer_cuda job id -> when it may also go to the CPU tier
# Held by the coordinator that runs the reaper (only one acts at a time); written by no worker.
REAPER = PREFIX + "coordinator"
# Fleet counters (a hash): the reaper's recoveries by kind, the bundles committed, and the
# exceptions the coordinator's loops survived (`errors:<loop>`).
STATS = PREFIX + "stats"
REQUEUED, RELEASED, RESENT, FALLBACK, LOST = "requeued", "released", "resent", "fallback", "lost"
RECOVERIES = (REQUEUED, RELEASED, RESENT, FALLBACK, LOST)
UPLOADS, UPLOAD_BYTES = "uploads", "upload_bytes"
LOOP_ERRORS = "errors:"
# kombu's Redis transport keeps each taken, not yet acknowledged message here (late ack).
KOMBU_UNACKED = "unacked"
KOMBU_UNACKED_INDEX = "unacked_index"
AUDIT_KEEP = 10_000
SCAN_PAGE = 1000
# A Celery message names its task id as `correlation_id` once, in its properties.
_TASK_IN_MESSAGE = re.compile(rb'"correlation_id": ?"([0-9a-f]{16}:[0-9]{1,7})"')

def _state_key(job_id: str) -> str:
    return f"{PREFIX}job:{job_id}"


def _attempts_key(job_id: str) -> str:
    return f"{PREFIX}job:{job_id}:attempts"


def log_key(job_id: str, attempt: int) -> str:
    """The stream of one attempt's trainer output: the one kind of job data a worker writes itself."""
    return f"{PREFIX}log:{job_id}:{attempt}"


def _spec_key(job_id: str) -> str:
    return f"{PREFIX}op:spec:{job_id}"


def _worker_key(name: str) -> str:
    return f"{PREFIX}worker:{name}"


def spec_digest(spec: JobSpec, queue: str, broker_priority: int) -> str:
    blob = json.dumps([spec.to_dict(), queue, broker_priority], sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class JobRecord:
    job_id: str
    spec: JobSpec
    status: str
    attempt: int
    starts: int
    max_attempts: int
    queue: str
    broker_priority: int
    manifest: str
    worker: str = ""
    host: str = ""
    created_at: float | None = None
    updated_at: float | None = None
    claimed_at: float | None = None
    started_at: float | None = None
    heartbeat_at: float | None = None
    finished_at: float | None = None
    progress: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    failure: str = ""
    artifact_id: str = ""
    result: dict[str, Any] = field(default_factory=dict)
    sent: bool = True
    fallback_queue: str = ""
    fallback_active: bool = False
    waiting: str = ""
    lease_hash: str = ""

    @property
    def queues(self) -> tuple[str, ...]:
        """Every queue the current attempt's message goes to."""
        if self.fallback_queue and self.fallback_active:
            return (self.queue, self.fallback_queue)
        return (self.queue,)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def state(self) -> JobState:
        return JobState(self.status, self.attempt, self.starts, self.max_attempts, self.worker, self.heartbeat_at or 0.0, self.lease_hash)

    @classmethod
    def from_redis(cls, job_id: str, f: dict[str, str], spec_json: str | None) -> JobRecord:
        """A job's record as read back; BadRecord naming its key when a field cannot be used.

        Every field is parsed here, once, so a damaged or forged record is reported and skipped
        by the caller instead of crashing whatever shows it.
        """
        key = _state_key(job_id)
        state = JobState.from_fields(f, key)

        def num(name: str) -> float | None:
            return float_field(f, name, key)

        return cls(
            job_id=job_id,
            spec=_spec_of(job_id, f, spec_json),
            status=state.status,
            attempt=state.attempt,
            starts=state.starts,
            max_attempts=state.max_attempts,
            queue=f.get("queue", ""),
            broker_priority=int_field(f, "bprio", 0, key),
            manifest=f.get("manifest", ""),
            worker=f.get("worker", ""),
            host=f.get("host", ""),
            created_at=num("created_at"),
            updated_at=num("updated_at"),
            claimed_at=num("claimed_at"),
            started_at=num("started_at"),
            heartbeat_at=num("heartbeat_at"),
            finished_at=num("finished_at"),
            progress=clean_progress(_json_field(f, "progress", key)),
            error=f.get("error", ""),
            failure=f.get("failure", ""),
            artifact_id=f.get("artifact_id", ""),
            result=_result_field(f, key),
            sent=f.get("sent", "1") == "1",
            fallback_queue=f.get("fallback_queue", ""),
            fallback_active=f.get("fallback_active", "0") == "1",
            waiting=f.get("waiting", ""),
            lease_hash=state.lease_hash,
        )


def _json_field(f: dict[str, str], name: str, key: str) -> Any:
    raw = f.get(name)
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise BadRecord(key, f"field {name!r} is not JSON") from None


def _result_field(f: dict[str, str], key: str) -> dict[str, Any]:
    result = _json_field(f, "result", key)
    if result is None:
        return {}
    if not isinstance(result, dict):
        raise BadRecord(key, "field 'result' is not a JSON object")
    return clean_result(result)


_RESULT_TEXT = ("model", "mode", "split_recipe", "device", "host")
_RESULT_COUNTS = ("seed", "n_train", "n_val", "n_test", "attempt", "bundle_bytes")
_RESULT_SECONDS = ("duration_s", "train_seconds", "trainer_s")


def clean_result(raw: dict[str, Any]) -> dict[str, Any]:
    """A job's result with only the fields the views, `export` and `evaluate` read, each of the right type."""
    out: dict[str, Any] = {}
    for key in _RESULT_TEXT:
        if isinstance(raw.get(key), str):
            out[key] = raw[key][:256]
    for key in _RESULT_COUNTS:
        value = raw.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            out[key] = value
    for key in _RESULT_SECONDS:
        value = raw.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
            out[key] = float(value)
    for key in ("metrics", "baseline"):
        out[key] = _estimates(raw.get(key))
    return out


def _estimates(raw: Any) -> dict[str, dict[str, float]]:
    if not isinstance(raw, dict):
        return {}
    out = {}
    for name, est in raw.items():
        if not isinstance(est, dict):
            continue
        values = [est.get(k) for k in ("value", "ci_low", "ci_high")]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
            out[str(name)[:64]] = dict(zip(("value", "ci_low", "ci_high"), map(float, values)))
    return out


def _spec_of(job_id: str, f: dict[str, str], spec_json: str | None) -> JobSpec:
    if not spec_json:
        return JobSpec(name=f.get("name", job_id), model=f.get("model", "?"))
    key = _spec_key(job_id)
    try:
        spec = JobSpec.from_dict(json.loads(spec_json))
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        raise BadRecord(key, f"the job spec cannot be read ({type(exc).__name__})") from None
    if not isinstance(spec.name, str) or not isinstance(spec.model, str):
        raise BadRecord(key, "the job spec's name or model is not a string")
    return spec


@dataclass(frozen=True)
class ApplyOutcome:
    job_id: str
    name: str
    action: str  # plan.ACTIONS
    attempt: int
    needs_send: bool

    @property
    def outcome(self) -> str:
        """inserted | updated | unchanged"""
        return plan.OUTCOMES[self.action]


@dataclass(frozen=True)
class WorkerInfo:
    name: str
    host_id: str
    tiers: tuple[str, ...]
    queues: tuple[str, ...]
    capability: dict[str, Any]
    pid: int
    started_at: float
    seen_at: float
    active: tuple[str, ...] = ()
    ready: bool = False
    errors: int = 0  # exceptions its sync loop survived

    def to_json(self) -> str:
        return json.dumps(
            {
                "name": self.name,
                "host_id": self.host_id,
                "tiers": list(self.tiers),
                "queues": list(self.queues),
                "capability": self.capability,
                "pid": self.pid,
                "started_at": self.started_at,
                "seen_at": self.seen_at,
                "active": list(self.active),
                "ready": self.ready,
                "errors": self.errors,
            }
        )

    @classmethod
    def from_json(cls, raw: str, key: str = "") -> WorkerInfo:
        """A worker's record as read back; BadRecord naming `key` for anything the views could not use.

        Any holder of the worker credential can write these records, so every field is checked.
        """
        from ..core.capability import Capability

        try:
            d = json.loads(raw)
        except (ValueError, RecursionError):
            raise BadRecord(key, "not JSON") from None
        if not isinstance(d, dict):
            raise BadRecord(key, "not a JSON object")

        def strings(name: str) -> tuple[str, ...]:
            value = d.get(name, [])
            if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
                raise BadRecord(key, f"{name!r} is not a list of strings")
            return tuple(value)

        def number(name: str) -> float:
            value = d.get(name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise BadRecord(key, f"{name!r} is not a number")
            return float(value)

        name, host_id, pid, errors = d.get("name"), d.get("host_id"), d.get("pid"), d.get("errors", 0)
        if not isinstance(name, str) or not isinstance(host_id, str):
            raise BadRecord(key, "'name' or 'host_id' is not a string")
        if isinstance(pid, bool) or not isinstance(pid, int) or isinstance(errors, bool) or not isinstance(errors, int):
            raise BadRecord(key, "'pid' or 'errors' is not an integer")
        try:
            capability = Capability.from_dict(d.get("capability")).to_dict()
        except (TypeError, ValueError, KeyError, AttributeError):
            raise BadRecord(key, "'capability' is not a host capability") from None
        return cls(
            name=name,
            host_id=host_id,
            tiers=strings("tiers"),
            queues=strings("queues"),
            capability=capability,
            pid=pid,
            started_at=number("started_at"),
            seen_at=number("seen_at"),
            active=strings("active"),
            ready=d.get("ready") is True,
            errors=errors,
        )


class Registry:
    """The registry's client. `patience_s` > 0 (workers) rides out a Redis restart by retrying
    job transitions that long; the CLI keeps 0 and fails at once with one line."""

    def __init__(self, url: str, client: redis.Redis | None = None, patience_s: float = 0.0):
        self.url = url
        self.patience_s = patience_s
        retry = {}
        if patience_s > 0:
            # Every command rides out a restart (connection refused, "loading the dataset") for about patience_s.
            retry = {
                "retry": Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=max(1, int(patience_s))),
                "retry_on_error": [redis.ConnectionError, redis.TimeoutError, redis.exceptions.BusyLoadingError],
            }
        self.r = client or redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=5,
            socket_timeout=30,
            health_check_interval=15,
            **retry,
        )
        # Records that could not be read, as BadRecord, newest last: readers skip them and the CLI reports them.
        self.problems: list[BadRecord] = []
        self._reported: set[str] = set()
        self._loaded = False
        self._raw: redis.Redis | None = None

    def _bytes_client(self) -> redis.Redis:
        """A client without decoding, for scans of raw broker messages."""
        if self._raw is None:
            self._raw = redis.Redis(connection_pool=redis.ConnectionPool(**{**self.r.connection_pool.connection_kwargs, "decode_responses": False}))
        return self._raw

    def load_functions(self) -> None:
        """Load the fleet's Redis functions (operators and the coordinator; once per client)."""
        if not self._loaded:
            with self._guard():
                functions.load(self.r)
            self._loaded = True

    def wait_for_functions(self, stopping: Any, every_s: float = 2.0) -> None:
        """Until the fleet's functions are in Redis: load them if this user may, else wait for the
        coordinator (a worker started before it)."""
        said = False
        while not stopping.is_set():
            with self._guard():
                if functions.loaded(self.r):
                    return
            try:
                self.load_functions()
                return
            except PermissionDenied:
                if not said:
                    log.warning("the fleet's Redis functions are not loaded; waiting for the coordinator (`cis490-train coordinator`) to load them")
                    said = True
            stopping.wait(every_s)

    def _fcall(self, name: str, keys: list[str], args: list[Any], read_only: bool = False) -> Any:
        """Call one of the fleet's functions, loading the library first when Redis has lost it."""
        with self._guard():
            try:
                return functions.call(self.r, name, keys, args, read_only)
            except redis.ResponseError as exc:
                if not functions.missing(exc):
                    raise
        self._loaded = False
        self.load_functions()
        with self._guard():
            return functions.call(self.r, name, keys, args, read_only)

    def _skip(self, problem: BadRecord) -> None:
        """Report a record that cannot be read, once per client until `clear_problems`."""
        if str(problem) not in self._reported:
            self._reported.add(str(problem))
            log.warning("skipping a record that cannot be read: %s", problem)
            self.problems.append(problem)

    def clear_problems(self) -> None:
        self.problems.clear()
        self._reported.clear()

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except redis.AuthenticationError as exc:
            raise BrokerUnavailable(_safe_url(self.url), f"authentication failed ({exc})") from None
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise BrokerUnavailable(_safe_url(self.url), str(exc).rstrip(".") or type(exc).__name__) from None
        except redis.exceptions.NoPermissionError as exc:
            raise self._denied(exc) from None
        except redis.ResponseError as exc:
            if "NOPERM" in str(exc):
                raise self._denied(exc) from None
            raise

    def _denied(self, exc: Exception) -> PermissionDenied:
        from urllib.parse import urlsplit

        user = urlsplit(self.url).username or "default"
        detail = " ".join(str(exc).split())
        detail = detail if len(detail) <= 160 else detail[:157] + "..."
        return PermissionDenied(
            f"NOPERM: Redis user {user!r} may not do this; enqueue, cancel and requeue need the operator user ({detail})"
        )

    def ping(self) -> None:
        with self._guard():
            self.r.ping()

    # --- enqueue -------------------------------------------------------------------

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
        with self._guard():
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
                        [_state_key(spec.job_id), _spec_key(spec.job_id), JOBS, spec.job_id, FALLBACKS, UNSENT],
                        [json.dumps(spec.to_dict(), sort_keys=True), due, now, *_flatten(fields)],
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
            step = plan.on_change(state, now)
            return Transition(ok=True, changes={**fields, **step.changes}, dispatch=step.attempt if step.send else None)

        _, state = self._transition(spec.job_id, decide, extra=lambda pipe, _: pipe.set(_spec_key(spec.job_id), spec_json))
        step = plan.on_change(state, now)
        return ApplyOutcome(spec.job_id, spec.name, step.action, step.attempt, step.send)

    def mark_sent(self, items: Iterable[tuple[str, int]]) -> None:
        """Record that the message of (job, attempt) is on the broker, unless the job moved on."""
        self.load_functions()
        with self._guard():
            pipe = self.r.pipeline(transaction=False)
            for job_id, attempt in items:
                functions.call(pipe, functions.MARK_SENT, [_state_key(job_id), UNSENT], [str(attempt), job_id])
            pipe.execute()

    def unsent_before(self, ts: float) -> list[str]:
        """Jobs whose current attempt was due to be sent before `ts` and is not known to be on the broker."""
        with self._guard():
            return list(self.r.zrangebyscore(UNSENT, "-inf", ts))

    def forget_unsent(self, job_id: str) -> None:
        with self._guard():
            self.r.zrem(UNSENT, job_id)


    # --- transitions -----------------------------------------------------------------

    def _transition(
        self,
        job_id: str,
        decide: Callable[[JobState], Transition],
        extra: Callable[[Any, Transition], Any] | None = None,
        audit: str | None = None,
    ) -> tuple[Transition, JobState]:
        deadline = time.monotonic() + self.patience_s
        while True:
            try:
                return self._transition_once(job_id, decide, extra, audit)
            except BrokerUnavailable:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.5)

    def _transition_once(self, job_id, decide, extra, audit) -> tuple[Transition, JobState]:
        key = _state_key(job_id)
        with self._guard():
            with self.r.pipeline() as pipe:
                while True:
                    try:
                        pipe.watch(key)
                        fields = pipe.hgetall(key)
                        if not fields:
                            pipe.unwatch()
                            raise JobNotFound(job_id)
                        state = JobState.from_fields(fields, key)
                        t = decide(state)
                        if not t.ok:
                            pipe.unwatch()
                            return t, state
                        last = pipe.lindex(_attempts_key(job_id), -1) if t.record else None
                        pipe.multi()
                        if audit:
                            pipe.lpush(AUDIT, json.dumps({"at": time.time(), "action": audit, "job_id": job_id, "attempt": state.attempt}))
                            pipe.ltrim(AUDIT, 0, AUDIT_KEEP - 1)
                        if t.changes:
                            pipe.hset(key, mapping={k: _enc(v) for k, v in t.changes.items()})
                        if t.changes.get("sent") == 0:
                            pipe.zadd(UNSENT, {job_id: time.time()})
                        status = t.changes.get("status", state.status)
                        if status in lifecycle.LEASED:
                            if "heartbeat_at" in t.changes:
                                pipe.zadd(LEASES, {job_id: t.changes["heartbeat_at"]})
                        elif state.status in lifecycle.LEASED:
                            pipe.zrem(LEASES, job_id)
                        if t.record and last:
                            rec = json.loads(last)
                            if "outcome" not in rec:
                                rec.update(t.record)
                                pipe.lset(_attempts_key(job_id), -1, json.dumps(rec))
                        if t.new_record:
                            pipe.rpush(_attempts_key(job_id), json.dumps(t.new_record))
                        if extra:
                            extra(pipe, t)
                        pipe.execute()
                        return t, state
                    except redis.WatchError:
                        continue

    def claim(self, job_id: str, lease: Lease) -> Transition:
        return self._transition(job_id, lambda s: lifecycle.claim(s, lease, time.time()))[0]

    def start(self, job_id: str, lease: Lease) -> Transition:
        return self._transition(job_id, lambda s: lifecycle.start(s, lease, time.time()))[0]

    def beat(self, job_id: str, lease: Lease, progress: dict[str, Any] | None = None) -> Transition:
        blob = json.dumps(progress) if progress else ""
        return self._transition(job_id, lambda s: lifecycle.beat(s, lease, time.time(), blob))[0]

    def complete(self, job_id: str, lease: Lease, artifact_id: str, result: dict[str, Any]) -> Transition:
        blob = json.dumps(result)
        return self._transition(job_id, lambda s: lifecycle.complete(s, lease, time.time(), artifact_id, blob))[0]

    def fail(self, job_id: str, lease: Lease, failure: str, error: str, retry: bool) -> Transition:
        return self._transition(job_id, lambda s: lifecycle.fail(s, lease, time.time(), failure, error, retry))[0]

    def requeue(self, job_id: str) -> Transition:
        """Operator action: recorded in the operator-only audit list, so a worker credential cannot."""
        return self._transition(job_id, lambda s: lifecycle.requeue(s, time.time()), audit="requeue")[0]

    def cancel(self, job_id: str) -> Transition:
        return self._transition(job_id, lambda s: lifecycle.cancel(s, time.time()), audit="cancel")[0]

    def reap(self, job_id: str, stale_after_s: float, watching_since: float = 0.0) -> Transition:
        return self._transition(
            job_id, lambda s: lifecycle.reap(s, time.time(), stale_after_s, watching_since), extra=_count_dispatch(REQUEUED)
        )[0]

    def resend(self, job_id: str, attempt: int) -> Transition:
        """A pending job whose message is gone from the broker gets its next attempt (see `lifecycle.resend`)."""
        return self._transition(job_id, lambda s: lifecycle.resend(s, attempt, time.time()), extra=_count_dispatch(LOST))[0]

    def note_waiting(self, job_id: str, attempt: int, reason: str) -> bool:
        """Say on a pending job why the host that took its message put it back."""

        def decide(state: JobState) -> Transition:
            if state.attempt != attempt or state.status != lifecycle.PENDING:
                return Transition.refuse("job moved on")
            return Transition(ok=True, changes={"waiting": reason, "updated_at": time.time()})

        return self._transition(job_id, decide)[0].ok

    def status_of(self, job_id: str) -> tuple[str, int]:
        """The job's status and attempt: one cheap read a running attempt makes every second."""
        with self._guard():
            status, attempt = self.r.hmget(_state_key(job_id), "status", "attempt")
        return status or "", int(attempt) if attempt and attempt.isascii() and attempt.isdigit() else 0

    def audit(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._guard():
            return [json.loads(x) for x in self.r.lrange(AUDIT, 0, limit - 1)]

    # --- the reaper --------------------------------------------------------------------

    def lead(self, name: str, ttl_s: float) -> bool:
        """Take or keep the reaper lock; False while another live worker holds it."""
        return bool(self._fcall(functions.LEAD, [REAPER], [name, max(1, int(ttl_s * 1000))]))

    def let_go(self, name: str) -> None:
        """Release the reaper lock if `name` holds it."""
        self._fcall(functions.RELEASE, [REAPER], [name])

    def reaper(self) -> str | None:
        with self._guard():
            return self.r.get(REAPER)

    def stale_leases(self, older_than: float) -> list[str]:
        with self._guard():
            return list(self.r.zrangebyscore(LEASES, "-inf", older_than))

    def release_taken_unclaimed(self, older_than: float) -> list[JobRecord]:
        """Messages a worker took from the broker before `older_than` whose job is still pending on
        that attempt: the worker died between taking and claiming. Their broker entries are removed
        here (Celery would restore them only after the visibility timeout); the caller re-sends."""
        with self._guard():
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
                self._skip(exc)
                continue
            if job.status != lifecycle.PENDING or job.attempt != attempt:
                continue
            with self._guard():
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
            if status != lifecycle.PENDING or sent == "0" or not queue or not (attempt or "").isdigit():
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
        raw = self._bytes_client()
        found: set[str] = set()
        with self._guard():
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
        with self._guard():
            return list(self.r.zrangebyscore(FALLBACKS, "-inf", now))

    def fall_back(self, job_id: str) -> JobRecord | None:
        """A prefer_cuda job no CUDA host started in time: also offer its attempt to the CPU tier."""

        def decide(state: JobState) -> Transition:
            if state.status != lifecycle.PENDING:
                return Transition.refuse(f"job is {state.status}")
            return Transition(ok=True, changes={"fallback_active": 1, "updated_at": time.time()})

        def due_done(pipe, _: Transition) -> None:
            pipe.zrem(FALLBACKS, job_id)
            pipe.hincrby(STATS, FALLBACK, 1)

        t, _ = self._transition(job_id, decide, extra=due_done)
        if not t.ok:
            with self._guard():
                self.r.zrem(FALLBACKS, job_id)
            return None
        return self.get(job_id)

    # --- reads -------------------------------------------------------------------------

    def job_ids(self) -> list[str]:
        with self._guard():
            return sorted(self.r.smembers(JOBS))

    def get(self, job_id: str) -> JobRecord:
        with self._guard():
            pipe = self.r.pipeline(transaction=False)
            pipe.hgetall(_state_key(job_id))
            pipe.get(_spec_key(job_id))
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
            self._skip(exc)
            return None

    def jobs(self, ids: Iterable[str] | None = None) -> list[JobRecord]:
        ids = self.job_ids() if ids is None else list(ids)
        with self._guard():
            pipe = self.r.pipeline(transaction=False)
            for job_id in ids:
                pipe.hgetall(_state_key(job_id))
                pipe.get(_spec_key(job_id))
            raw = pipe.execute()
        records = []
        for i, job_id in enumerate(ids):
            fields, spec_json = raw[2 * i], raw[2 * i + 1]
            if fields:
                try:
                    records.append(JobRecord.from_redis(job_id, fields, spec_json))
                except BadRecord as exc:
                    self._skip(exc)
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
        with self._guard():
            pipe = self.r.pipeline(transaction=False)
            for job_id in ids:
                pipe.hmget(_state_key(job_id), *names)
            return pipe.execute()

    def attempts(self, job_id: str) -> list[dict[str, Any]]:
        """The job's attempt records; one that cannot be read is reported and left out."""
        with self._guard():
            raws = self.r.lrange(_attempts_key(job_id), 0, -1)
        records = []
        for i, raw in enumerate(raws):
            try:
                rec = json.loads(raw)
            except (ValueError, RecursionError):
                rec = None
            if isinstance(rec, dict):
                records.append(rec)
            else:
                self._skip(BadRecord(f"{_attempts_key(job_id)}[{i}]", "not a JSON object"))
        return records

    def log_entries(
        self, job_id: str, attempt: int, after: str = "0-0", count: int = 1000, block_ms: int | None = None
    ) -> list[tuple[str, dict[str, str]]]:
        """Up to `count` entries of an attempt's output stream after the entry id `after`; with
        `block_ms`, wait up to that long for one to arrive."""
        key = log_key(job_id, attempt)
        with self._guard():
            if block_ms is None:
                return list(self.r.xrange(key, min=f"({after}", max="+", count=count))
            got = self.r.xread({key: after}, count=count, block=block_ms)
        if isinstance(got, dict):  # RESP3 replies map stream -> [entries]
            return [entry for batches in got.values() for batch in batches for entry in batch]
        return [entry for _, entries in got or () for entry in entries]

    def log_trimmed(self, job_id: str, attempt: int) -> int:
        """How many entries the attempt's capped stream has dropped from its head."""
        key = log_key(job_id, attempt)
        with self._guard():
            if not self.r.exists(key):
                return 0
            info = self.r.xinfo_stream(key)
        return max(0, int(info.get("entries-added") or 0) - int(info.get("length") or 0))

    # --- queue classes and host policies ---------------------------------------------

    def add_queue_classes(self, classes: Iterable[QueueClass]) -> list[str]:
        """Record class queues; returns the names that were new."""
        classes = list({qc.name: qc for qc in classes}.values())
        if not classes:
            return []
        with self._guard():
            pipe = self.r.pipeline(transaction=False)
            for qc in classes:
                pipe.hsetnx(QUEUES, qc.name, json.dumps(qc.to_dict(), sort_keys=True))
            added = pipe.execute()
        return [qc.name for qc, new in zip(classes, added) if new]

    def queue_classes(self) -> list[QueueClass]:
        with self._guard():
            raw = self.r.hgetall(QUEUES)
        classes = []
        for name, value in sorted(raw.items()):
            try:
                classes.append(QueueClass.from_dict(json.loads(value)))
            except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
                self._skip(BadRecord(f"{QUEUES}[{name}]", "not a queue class"))
        return classes

    def set_hosts(self, hosts: Iterable[HostSpec]) -> None:
        mapping = {h.name: json.dumps(h.to_dict(), sort_keys=True) for h in hosts}
        if mapping:
            with self._guard():
                self.r.hset(HOSTS, mapping=mapping)

    def hosts(self) -> dict[str, HostSpec]:
        with self._guard():
            raw = self.r.hgetall(HOSTS)
        found = {k: self._host(k, v) for k, v in raw.items()}
        return {k: h for k, h in found.items() if h is not None}

    def host_policy(self, host_id: str) -> HostSpec | None:
        with self._guard():
            raw = self.r.hget(HOSTS, host_id)
        return self._host(host_id, raw) if raw else None

    def _host(self, name: str, raw: str) -> HostSpec | None:
        try:
            return HostSpec.from_dict(json.loads(raw))
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
            self._skip(BadRecord(f"{HOSTS}[{name}]", "not a host policy"))
            return None

    # --- fleet counters and gauges (metrics) ---------------------------------------

    def count(self, name: str, by: int = 1) -> None:
        """Add to a fleet counter. Best effort: a monitoring counter never fails an attempt or a loop."""
        try:
            with self._guard():
                self.r.hincrby(STATS, name, int(by))
        except Cis490Error as exc:
            log.warning("counter %s not updated: %s", name, exc)

    def stats(self) -> dict[str, int]:
        """The fleet counters; a value that is not an integer is reported and left out."""
        with self._guard():
            raw = self.r.hgetall(STATS)
        stats = {}
        for name, value in raw.items():
            if value.isascii() and value.lstrip("-").isdigit():
                stats[name] = int(value)
            else:
                self._skip(BadRecord(f"{STATS}[{name}]", f"{value[:40]!r} is not an integer"))
        return stats

    def status_counts(self) -> dict[str, int]:
        """Jobs per status (the known ones, 0 where none), counted in one function call."""
        flat = self._fcall(functions.STATUS_COUNTS, [], [JOBS, f"{PREFIX}job:"], read_only=True)
        counts = dict.fromkeys(lifecycle.STATUSES, 0)
        for status, n in zip(flat[::2], flat[1::2]):
            if status in counts:
                counts[status] = int(n)
            else:
                self._skip(BadRecord(f"{PREFIX}job:*", f"{int(n)} record(s) with the unknown status {status[:40]!r}"))
        return counts

    def queue_depths(self, queues: Iterable[str], priority_steps: Iterable[int], sep: str) -> dict[str, int]:
        """Messages waiting in each queue: kombu's Redis transport keeps one list per priority step
        (`queue` for the first, `queue<sep><step>` for the others); their lengths are summed."""
        queues, steps = list(queues), sorted(set(priority_steps))
        with self._guard():
            pipe = self.r.pipeline(transaction=False)
            for queue in queues:
                for step in steps:
                    pipe.llen(f"{queue}{sep}{step}" if step else queue)
            lengths = pipe.execute() if queues else []
        n = len(steps)
        return {queue: sum(lengths[i * n : (i + 1) * n]) for i, queue in enumerate(queues)}

    def lease_summary(self) -> tuple[int, float | None]:
        """How many jobs hold a lease (claimed or running), and the oldest last heartbeat among them."""
        with self._guard():
            pipe = self.r.pipeline(transaction=False)
            pipe.zcard(LEASES)
            pipe.zrange(LEASES, 0, 0, withscores=True)
            count, oldest = pipe.execute()
        return int(count), (float(oldest[0][1]) if oldest else None)

    # --- live workers ----------------------------------------------------------------

    def register_worker(self, info: WorkerInfo, ttl_s: float) -> None:
        with self._guard():
            pipe = self.r.pipeline(transaction=False)
            pipe.set(_worker_key(info.name), info.to_json(), px=max(1, int(ttl_s * 1000)))
            pipe.sadd(WORKERS, info.name)
            pipe.execute()

    def unregister_worker(self, name: str) -> None:
        with self._guard():
            pipe = self.r.pipeline(transaction=False)
            pipe.delete(_worker_key(name))
            pipe.srem(WORKERS, name)
            pipe.execute()

    def workers(self) -> list[WorkerInfo]:
        """Workers whose record has not expired; expired names are dropped from the set."""
        with self._guard():
            names = sorted(self.r.smembers(WORKERS))
            if not names:
                return []
            raws = self.r.mget([_worker_key(n) for n in names])
            gone = [n for n, raw in zip(names, raws) if raw is None]
            if gone:
                self.r.srem(WORKERS, *gone)
        found = []
        for name, raw in zip(names, raws):
            if raw is not None:
                try:
                    found.append(WorkerInfo.from_json(raw, _worker_key(name)))
                except BadRecord as exc:
                    self._skip(exc)
        return found


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
        "status": lifecycle.PENDING,
        "attempt": 1,
        "starts": 0,
        "sent": 0,
        "created_at": now,
        "updated_at": now,
    }


def _task_of(raw: str | None) -> tuple[str, int] | None:
    """(job id, attempt) of a kombu unacked entry holding one of our task messages."""
    try:
        return parse_task_id(json.loads(raw)[0]["headers"]["id"])
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, RecursionError, BadRequest):
        return None


def _task_ids(messages: Iterable[bytes]) -> list[str]:
    return [m.decode() for m in _TASK_IN_MESSAGE.findall(b"\n".join(messages))]


def _priority(raw: str | None) -> int:
    try:
        return int(raw or 0)
    except ValueError:
        return 0


def _count_dispatch(counter: str) -> Callable[[Any, Transition], None]:
    """A transition's extra step: count the recovery when it sent the job on to its next attempt."""

    def count(pipe, t: Transition) -> None:
        if t.dispatch is not None:
            pipe.hincrby(STATS, counter, 1)

    return count


def _enc(value: Any) -> str | int | float:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float, str)):
        return value
    return json.dumps(value)


def _flatten(fields: dict[str, Any]) -> list[Any]:
    out: list[Any] = []
    for k, v in fields.items():
        out += [k, _enc(v)]
    return out


def _safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url
