"""The worker's side of the coordinator protocol: ask, wait for the answer, never write a job's record.

Each claim makes a fresh secret that stays in this process; every later request
for that attempt carries it, and the coordinator compares it with the hash it
recorded at the claim. A request whose answer does not come in time says so
(CoordinatorUnavailable) and is not sent twice behind the caller's back.
"""

from __future__ import annotations

import secrets
from typing import Any

import redis

from ..errors import BadRequest, CoordinatorUnavailable
from ..core.lifecycle import Lease
from ..core.protocol import Op, Reply, Request, REQUESTS, reply_key, waiting_key
from ..registry import Registry

ANSWER_TIMEOUT_S = 10.0


class LeaseClient:
    """Requests on behalf of this worker, over the registry's connection pool."""

    def __init__(self, registry: Registry, timeout_s: float = ANSWER_TIMEOUT_S):
        self.registry = registry
        self.timeout_s = timeout_s

    def claim(self, job_id: str, lease: Lease) -> Reply:
        return self.ask(Op.CLAIM, job_id, lease)

    def start(self, job_id: str, lease: Lease) -> Reply:
        return self.ask(Op.START, job_id, lease)

    def beat(self, job_id: str, lease: Lease, progress: dict[str, Any] | None) -> Reply:
        return self.ask(Op.BEAT, job_id, lease, {"progress": progress or {}})

    def complete(self, job_id: str, lease: Lease, artifact_id: str, trainer_s: float) -> Reply:
        return self.ask(Op.COMPLETE, job_id, lease, {"artifact_id": artifact_id, "trainer_s": trainer_s})

    def fail(self, job_id: str, lease: Lease, failure: str, error: str) -> Reply:
        return self.ask(Op.FAIL, job_id, lease, {"failure": failure, "error": error})

    def defer(self, job_id: str, lease: Lease, reason: str) -> Reply:
        return self.ask(Op.DEFER, job_id, lease, {"reason": reason})

    def ask(self, op: Op, job_id: str, lease: Lease, body: dict[str, Any] | None = None) -> Reply:
        nonce = secrets.token_hex(16)
        request = Request(op, job_id, lease.attempt, lease.worker, lease.host, lease.secret, nonce, body or {})
        r = self.registry.r
        with self.registry.guard():
            pipe = r.pipeline(transaction=False)
            pipe.set(waiting_key(nonce), 1, px=int(self.timeout_s * 1000))
            pipe.rpush(REQUESTS, request.encode())
            pipe.execute()
            try:
                got = r.blpop([reply_key(nonce)], timeout=self.timeout_s)
            finally:
                _forget(r, nonce)
        if not got:
            raise CoordinatorUnavailable(f"no answer from the coordinator to {op} of {job_id} attempt {lease.attempt} within {self.timeout_s:g}s; is `cis490-train coordinator` running?")
        try:
            return Reply.decode(got[1])
        except BadRequest as exc:
            raise CoordinatorUnavailable(f"the coordinator's answer to {op} of {job_id} could not be read: {exc}") from None


def _forget(r: redis.Redis, nonce: str) -> None:
    try:
        r.delete(waiting_key(nonce), reply_key(nonce))
    except redis.RedisError:
        pass  # both expire on their own
