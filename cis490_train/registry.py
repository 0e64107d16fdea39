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
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from . import lifecycle, plan
from .errors import BrokerUnavailable, Cis490Error, JobNotFound, PermissionDenied
from .lifecycle import JobState, Lease, Transition
from .manifest import HostSpec, JobSpec
from .plan import Existing, JobPlan
from .routing import QueueClass, fallback_queue

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
REAPER = PREFIX + "reaper"
# Fleet counters (a hash): the reaper's recoveries by kind, and the bundles workers uploaded.
STATS = PREFIX + "stats"
REQUEUED, RELEASED, RESENT, FALLBACK = "requeued", "released", "resent", "fallback"
RECOVERIES = (REQUEUED, RELEASED, RESENT, FALLBACK)
UPLOADS, UPLOAD_BYTES = "uploads", "upload_bytes"
# kombu's Redis transport keeps each taken, not yet acknowledged message here (late ack).
KOMBU_UNACKED = "unacked"
KOMBU_UNACKED_INDEX = "unacked_index"
AUDIT_KEEP = 10_000

# Hold or take the reaper lock: one reaper acts at a time; it lapses if its worker dies.
_LEAD = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

# Create a job only if it does not exist: concurrent enqueues of one manifest insert it once.
_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('SET', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[3], KEYS[4])
if ARGV[2] ~= '' then redis.call('ZADD', KEYS[5], ARGV[2], KEYS[4]) end
redis.call('ZADD', KEYS[6], ARGV[3], KEYS[4])
return 1
"""

# Jobs per status, counted inside Redis: one round trip and ~1 µs a job (a pipelined HGET per job
# costs the client ~10 µs a job). Its keys come as arguments, not KEYS: a key in KEYS must be writable
# by the caller, and the worker user may only read cis490:op:*. Fine on the one Redis of a fleet,
# not on a cluster.
_STATUS_COUNTS = """
local counts = {}
for _, id in ipairs(redis.call('SMEMBERS', ARGV[1])) do
  local status = redis.call('HGET', ARGV[2] .. id, 'status')
  if status then counts[status] = (counts[status] or 0) + 1 end
end
local out = {}
for status, n in pairs(counts) do
  out[#out + 1] = status
  out[#out + 1] = n
end
return out
"""

_MARK_SENT = """
if redis.call('HGET', KEYS[1], 'attempt') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'sent', 1)
  redis.call('ZREM', KEYS[2], ARGV[2])
end
"""


def _state_key(job_id: str) -> str:
    return f"{PREFIX}job:{job_id}"


def _attempts_key(job_id: str) -> str:
    return f"{PREFIX}job:{job_id}:attempts"


def log_key(job_id: str, attempt: int) -> str:
    """The stream of one attempt's trainer output (worker-writable, like the rest of the job's state)."""
    return f"{PREFIX}job:{job_id}:log:{attempt}"


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
        return JobState(self.status, self.attempt, self.starts, self.max_attempts, self.worker, self.heartbeat_at or 0.0)

    @classmethod
    def from_redis(cls, job_id: str, f: dict[str, str], spec_json: str | None) -> JobRecord:
        def num(key: str) -> float | None:
            raw = f.get(key)
            return float(raw) if raw else None

        return cls(
            job_id=job_id,
            spec=JobSpec.from_dict(json.loads(spec_json)) if spec_json else JobSpec(name=f.get("name", job_id), model=f.get("model", "?")),
            status=f.get("status", "?"),
            attempt=int(f.get("attempt") or 0),
            starts=int(f.get("starts") or 0),
            max_attempts=int(f.get("max_attempts") or 3),
            queue=f.get("queue", ""),
            broker_priority=int(f.get("bprio") or 0),
            manifest=f.get("manifest", ""),
            worker=f.get("worker", ""),
            host=f.get("host", ""),
            created_at=num("created_at"),
            updated_at=num("updated_at"),
            claimed_at=num("claimed_at"),
            started_at=num("started_at"),
            heartbeat_at=num("heartbeat_at"),
            finished_at=num("finished_at"),
            progress=json.loads(f["progress"]) if f.get("progress") else {},
            error=f.get("error", ""),
            failure=f.get("failure", ""),
            artifact_id=f.get("artifact_id", ""),
            result=json.loads(f["result"]) if f.get("result") else {},
            sent=f.get("sent", "1") == "1",
            fallback_queue=f.get("fallback_queue", ""),
            fallback_active=f.get("fallback_active", "0") == "1",
            waiting=f.get("waiting", ""),
        )


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
            }
        )

    @classmethod
    def from_json(cls, raw: str) -> WorkerInfo:
        d = json.loads(raw)
        return cls(
            name=d["name"],
            host_id=d["host_id"],
            tiers=tuple(d["tiers"]),
            queues=tuple(d["queues"]),
            capability=d["capability"],
            pid=d["pid"],
            started_at=d["started_at"],
            seen_at=d["seen_at"],
            active=tuple(d.get("active", ())),
            ready=bool(d.get("ready", False)),
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
        self._create = self.r.register_script(_CREATE)
        self._lead = self.r.register_script(_LEAD)
        self._mark_sent = self.r.register_script(_MARK_SENT)
        self._status_counts = self.r.register_script(_STATUS_COUNTS)

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
        with self._guard():
            creates = self.r.pipeline(transaction=False)
            created_idx = []
            for i, ((spec, queue, bprio), existing) in enumerate(zip(plans, current)):
                new_digest = spec_digest(spec, queue, bprio)
                step = plan.decide(new_digest, existing)
                if step.action == plan.INSERT:
                    fields = _initial_fields(spec, queue, bprio, manifest, new_digest, now)
                    due = now + spec.prefer_cuda_grace_s if fields["fallback_queue"] else ""
                    self._create(
                        keys=[_state_key(spec.job_id), _spec_key(spec.job_id), JOBS, spec.job_id, FALLBACKS, UNSENT],
                        args=[json.dumps(spec.to_dict(), sort_keys=True), due, now, *_flatten(fields)],
                        client=creates,
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
        with self._guard():
            pipe = self.r.pipeline(transaction=False)
            for job_id, attempt in items:
                self._mark_sent(keys=[_state_key(job_id), UNSENT], args=[str(attempt), job_id], client=pipe)
            pipe.execute()

    def unsent_before(self, ts: float) -> list[str]:
        """Jobs whose current attempt was due to be sent before `ts` and is not known to be on the broker."""
        with self._guard():
            return list(self.r.zrangebyscore(UNSENT, "-inf", ts))

    def forget_unsent(self, job_id: str) -> None:
        with self._guard():
            self.r.zrem(UNSENT, job_id)

    def count_resent(self) -> None:
        """The reaper sent an attempt whose first send never reached the broker."""
        with self._guard():
            self.r.hincrby(STATS, RESENT, 1)

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
                        state = JobState.from_fields(fields)
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

    def reap(self, job_id: str, stale_after_s: float) -> Transition:
        def count(pipe, t: Transition) -> None:
            if t.dispatch is not None:
                pipe.hincrby(STATS, REQUEUED, 1)

        return self._transition(job_id, lambda s: lifecycle.reap(s, time.time(), stale_after_s), extra=count)[0]

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
        return status or "", int(attempt or 0)

    def audit(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._guard():
            return [json.loads(x) for x in self.r.lrange(AUDIT, 0, limit - 1)]

    # --- the reaper --------------------------------------------------------------------

    def lead(self, name: str, ttl_s: float) -> bool:
        """Take or keep the reaper lock; False while another live worker holds it."""
        with self._guard():
            return bool(self._lead(keys=[REAPER], args=[name, max(1, int(ttl_s * 1000))]))

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
            if job.status != lifecycle.PENDING or job.attempt != attempt:
                continue
            with self._guard():
                if not self.r.hdel(KOMBU_UNACKED, tag):
                    continue  # acknowledged meanwhile: it was not in limbo
                self.r.zrem(KOMBU_UNACKED_INDEX, tag)
                self.r.hincrby(STATS, RELEASED, 1)
            released.append(job)
        return released

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
                records.append(JobRecord.from_redis(job_id, fields, spec_json))
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
        rows.sort(key=lambda row: order(row[1], int(row[2] or 0), row[3] or ""))
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
        with self._guard():
            return [json.loads(x) for x in self.r.lrange(_attempts_key(job_id), 0, -1)]

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
        return [QueueClass.from_dict(json.loads(v)) for _, v in sorted(raw.items())]

    def set_hosts(self, hosts: Iterable[HostSpec]) -> None:
        mapping = {h.name: json.dumps(h.to_dict(), sort_keys=True) for h in hosts}
        if mapping:
            with self._guard():
                self.r.hset(HOSTS, mapping=mapping)

    def hosts(self) -> dict[str, HostSpec]:
        with self._guard():
            raw = self.r.hgetall(HOSTS)
        return {k: HostSpec.from_dict(json.loads(v)) for k, v in raw.items()}

    def host_policy(self, host_id: str) -> HostSpec | None:
        with self._guard():
            raw = self.r.hget(HOSTS, host_id)
        return HostSpec.from_dict(json.loads(raw)) if raw else None

    # --- fleet counters and gauges (metrics) ---------------------------------------

    def record_upload(self, nbytes: int) -> None:
        """Count a bundle a worker uploaded. Best effort: a monitoring counter never fails an attempt."""
        try:
            with self._guard():
                pipe = self.r.pipeline(transaction=False)
                pipe.hincrby(STATS, UPLOADS, 1)
                pipe.hincrby(STATS, UPLOAD_BYTES, int(nbytes))
                pipe.execute()
        except Cis490Error as exc:
            log.warning("upload counter not updated: %s", exc)

    def stats(self) -> dict[str, int]:
        with self._guard():
            return {k: int(v) for k, v in self.r.hgetall(STATS).items()}

    def status_counts(self) -> dict[str, int]:
        """Jobs per status (every status, 0 where none), counted in one script call."""
        with self._guard():
            flat = self._status_counts(args=[JOBS, f"{PREFIX}job:"])
        counts = dict.fromkeys(lifecycle.STATUSES, 0)
        counts.update({status: int(n) for status, n in zip(flat[::2], flat[1::2])})
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
        return [WorkerInfo.from_json(raw) for raw in raws if raw is not None]


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
        job_id, _, attempt = json.loads(raw)[0]["headers"]["id"].partition(":")
        return job_id, int(attempt)
    except (TypeError, ValueError, KeyError, IndexError):
        return None


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
