"""The registry's connection: one client, one retry policy, one way to apply a transition.

Retrying is redis-py's alone: a client made with `patience_s` > 0 (workers,
the coordinator) retries every command through a Redis restart for about that
long, and `Redis.transaction` re-runs a transition whose key changed under it
(or whose connection dropped while it watched). The CLI keeps `patience_s` 0
and fails at once with one line.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Callable
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from ..core.lifecycle import Index, JobState, Transition
from ..errors import BadRecord, BrokerUnavailable, JobNotFound, PermissionDenied
from . import functions
from .keys import AUDIT, AUDIT_KEEP, LEASES, UNSENT, attempts_key, state_key

log = logging.getLogger("cis490.registry")

Decide = Callable[[JobState], Transition]
Extra = Callable[[Any, Transition], Any]


class Connection:
    """A client of the registry; the registry's parts (`Registry`) add what they own to it."""

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

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Redis's errors as the project's: unreachable (exit 3) or not permitted (exit 4)."""
        try:
            yield
        except redis.AuthenticationError as exc:
            raise BrokerUnavailable(safe_url(self.url), f"authentication failed ({exc})") from None
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise BrokerUnavailable(safe_url(self.url), str(exc).rstrip(".") or type(exc).__name__) from None
        except redis.exceptions.NoPermissionError as exc:
            raise self._denied(exc) from None
        except redis.ResponseError as exc:
            if "NOPERM" in str(exc):
                raise self._denied(exc) from None
            raise

    def _denied(self, exc: Exception) -> PermissionDenied:
        user = urlsplit(self.url).username or "default"
        detail = " ".join(str(exc).split())
        detail = detail if len(detail) <= 160 else detail[:157] + "..."
        return PermissionDenied(
            f"NOPERM: Redis user {user!r} may not do this; enqueue, cancel and requeue need the operator user ({detail})"
        )

    def ping(self) -> None:
        with self.guard():
            self.r.ping()

    def bytes_client(self) -> redis.Redis:
        """A client without decoding, for scans of raw broker messages."""
        if self._raw is None:
            self._raw = redis.Redis(connection_pool=redis.ConnectionPool(**{**self.r.connection_pool.connection_kwargs, "decode_responses": False}))
        return self._raw

    # --- what could not be read ------------------------------------------------------

    def report(self, problem: BadRecord) -> None:
        """Report a record that cannot be read, once per client until `clear_problems`."""
        if str(problem) not in self._reported:
            self._reported.add(str(problem))
            log.warning("skipping a record that cannot be read: %s", problem)
            self.problems.append(problem)

    def clear_problems(self) -> None:
        self.problems.clear()
        self._reported.clear()

    # --- the fleet's functions -------------------------------------------------------

    def load_functions(self) -> None:
        """Load the fleet's Redis functions (operators and the coordinator; once per client)."""
        if not self._loaded:
            with self.guard():
                functions.load(self.r)
            self._loaded = True

    def wait_for_functions(self, stopping: Any, every_s: float = 2.0) -> None:
        """Until the fleet's functions are in Redis: load them if this user may, else wait for the
        coordinator (a worker started before it)."""
        said = False
        while not stopping.is_set():
            with self.guard():
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

    def fcall(self, name: str, keys: list[str], args: list[Any], read_only: bool = False) -> Any:
        """Call one of the fleet's functions, loading the library first when Redis has lost it."""
        with self.guard():
            try:
                return functions.call(self.r, name, keys, args, read_only)
            except redis.ResponseError as exc:
                if not functions.missing(exc):
                    raise
        self._loaded = False
        self.load_functions()
        with self.guard():
            return functions.call(self.r, name, keys, args, read_only)

    # --- transitions -----------------------------------------------------------------

    def transition(self, job_id: str, decide: Decide, extra: Extra | None = None, audit: str | None = None) -> tuple[Transition, JobState]:
        """Read the job's state, ask `decide`, and write what it says in one MULTI under WATCH.

        The writes are the transition's own: its field changes, its attempt records, the index
        effects it names (`Transition.indexes`), an audit entry for operator actions, and `extra`.
        """
        key = state_key(job_id)
        seen: dict[str, Any] = {}

        def attempt(pipe: Any) -> None:
            fields = pipe.hgetall(key)
            if not fields:
                raise JobNotFound(job_id)
            state = JobState.from_fields(fields, key)
            t = decide(state)
            seen.update(t=t, state=state)
            if not t.ok:
                return
            last = pipe.lindex(attempts_key(job_id), -1) if t.record else None
            pipe.multi()
            if audit:
                pipe.lpush(AUDIT, json.dumps({"at": time.time(), "action": audit, "job_id": job_id, "attempt": state.attempt}))
                pipe.ltrim(AUDIT, 0, AUDIT_KEEP - 1)
            if t.changes:
                pipe.hset(key, mapping={k: encode(v) for k, v in t.changes.items()})
            _index(pipe, job_id, t)
            if t.record and last:
                rec = json.loads(last)
                if "outcome" not in rec:
                    rec.update(t.record)
                    pipe.lset(attempts_key(job_id), -1, json.dumps(rec))
            if t.new_record:
                pipe.rpush(attempts_key(job_id), json.dumps(t.new_record))
            if extra:
                extra(pipe, t)

        with self.guard():
            self.r.transaction(attempt, key)
        return seen["t"], seen["state"]


def _index(pipe: Any, job_id: str, t: Transition) -> None:
    if Index.LEASE in t.indexes:
        pipe.zadd(LEASES, {job_id: t.changes["heartbeat_at"]})
    if Index.UNLEASE in t.indexes:
        pipe.zrem(LEASES, job_id)
    if Index.UNSENT in t.indexes:
        pipe.zadd(UNSENT, {job_id: time.time()})


def encode(value: Any) -> str | int | float:
    """A field value as a Redis hash holds it: booleans as 0/1, containers as JSON."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float, str)):
        return value
    return json.dumps(value)


def flatten(fields: dict[str, Any]) -> list[Any]:
    out: list[Any] = []
    for k, v in fields.items():
        out += [k, encode(v)]
    return out


def safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password:
        netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url
