"""What workers ask the coordinator, and what it answers: the one codec of that wire format.

A worker never writes a job's record itself. It pushes a request onto
`cis490:requests`, a list the worker user may write but not read (so no host
sees another's claim secret), and waits on a reply list of its own. Every
field is checked here before anything acts on it; a request that is not
well-formed is refused as a whole.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from . import lifecycle
from ..errors import BadRequest
from ..ids import HOST, check_attempt, check_job_id

REQUESTS = "cis490:requests"
REPLY_PREFIX = "cis490:reply:"
SECRET = re.compile(r"[0-9a-f]{64}")
NONCE = re.compile(r"[0-9a-f]{32}")
ARTIFACT = re.compile(r"[0-9a-f]{64}")
MAX_WORKER = 255
MAX_ERROR = 8000
MAX_REASON = 500
MAX_REQUEST = 64 << 10
# Failures a worker may report for the attempt it holds; `cancelled` is an operator's word only.
WORKER_FAILURES = frozenset(lifecycle.Failure) - {lifecycle.Failure.CANCELLED}


class Op(StrEnum):
    CLAIM = "claim"
    START = "start"
    BEAT = "beat"
    COMPLETE = "complete"
    FAIL = "fail"
    DEFER = "defer"


def reply_key(nonce: str) -> str:
    return f"{REPLY_PREFIX}{nonce}"


def waiting_key(nonce: str) -> str:
    """Exists while the worker still waits: the coordinator skips requests whose asker gave up."""
    return f"{REPLY_PREFIX}{nonce}:waiting"


@dataclass(frozen=True)
class Request:
    op: Op
    job_id: str
    attempt: int
    worker: str
    host: str
    secret: str
    nonce: str
    body: dict[str, Any] = field(default_factory=dict)

    @property
    def lease(self) -> lifecycle.Lease:
        return lifecycle.Lease(attempt=self.attempt, worker=self.worker, host=self.host, secret=self.secret)

    def encode(self) -> str:
        return json.dumps(
            {
                "op": str(self.op),
                "job_id": self.job_id,
                "attempt": self.attempt,
                "worker": self.worker,
                "host": self.host,
                "secret": self.secret,
                "nonce": self.nonce,
                "body": self.body,
            }
        )

    @classmethod
    def decode(cls, raw: str | bytes) -> Request:
        if len(raw) > MAX_REQUEST:
            raise BadRequest(f"request of {len(raw)} bytes is over the {MAX_REQUEST}-byte limit")
        try:
            d = json.loads(raw)
        except (ValueError, RecursionError):
            raise BadRequest("request is not JSON") from None
        if not isinstance(d, dict):
            raise BadRequest("request is not a JSON object")
        try:
            op = Op(d.get("op"))
        except ValueError:
            raise BadRequest(f"op {str(d.get('op'))[:40]!r} is not one of {', '.join(Op)}") from None
        body = d.get("body", {})
        if not isinstance(body, dict):
            raise BadRequest("body is not an object")
        return cls(
            op=op,
            job_id=check_job_id(d.get("job_id")),
            attempt=check_attempt(d.get("attempt")),
            worker=_text(d.get("worker"), "worker", MAX_WORKER, required=True),
            host=_match(HOST, d.get("host"), "host"),
            secret=_match(SECRET, d.get("secret"), "secret"),
            nonce=_match(NONCE, d.get("nonce"), "nonce"),
            body=_BODIES[op](body),
        )


@dataclass(frozen=True)
class Reply:
    """`requeued`: the failure became the job's next attempt. `retry`: nothing was decided (the
    store could not be asked, say); the same request may be sent again."""

    ok: bool
    reason: str = ""
    requeued: bool = False
    retry: bool = False

    def encode(self) -> str:
        return json.dumps({"ok": self.ok, "reason": self.reason, "requeued": self.requeued, "retry": self.retry})

    @classmethod
    def decode(cls, raw: str | bytes) -> Reply:
        try:
            d = json.loads(raw)
            return cls(ok=d["ok"] is True, reason=str(d.get("reason", ""))[:MAX_ERROR], requeued=d.get("requeued") is True, retry=d.get("retry") is True)
        except (ValueError, TypeError, KeyError):
            raise BadRequest("reply is not a coordinator reply") from None


def clean_progress(raw: Any) -> dict[str, Any]:
    """A trainer progress object with only the fields the views read, each of the right type.

    Used on the way in (a heartbeat) and on the way out (a record read back), so neither a
    worker nor a damaged record can hand a view a value it cannot format.
    """
    if not isinstance(raw, dict):
        return {}
    out: dict[str, Any] = {}
    for key in ("phase", "metric_name"):
        value = raw.get(key)
        if isinstance(value, str) and value:
            out[key] = value[:64]
    for key in ("epoch", "epochs", "step", "steps"):
        value = raw.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**53:
            out[key] = value
    for key in ("loss", "metric", "eta_s", "elapsed_s"):
        value = raw.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            if key in ("eta_s", "elapsed_s") and value < 0:
                continue
            out[key] = float(value)
    return out


def _beat_body(body: dict[str, Any]) -> dict[str, Any]:
    return {"progress": clean_progress(body.get("progress"))}


def _fail_body(body: dict[str, Any]) -> dict[str, Any]:
    failure = body.get("failure")
    if failure not in WORKER_FAILURES:
        raise BadRequest(f"failure {str(failure)[:40]!r} is not one of {', '.join(sorted(WORKER_FAILURES))}")
    return {"failure": failure, "error": _text(body.get("error", ""), "error", MAX_ERROR)}


def _complete_body(body: dict[str, Any]) -> dict[str, Any]:
    trainer_s = body.get("trainer_s", 0.0)
    if isinstance(trainer_s, bool) or not isinstance(trainer_s, (int, float)) or not math.isfinite(trainer_s) or trainer_s < 0:
        raise BadRequest("trainer_s is not a non-negative number")
    return {"artifact_id": _match(ARTIFACT, body.get("artifact_id"), "artifact_id"), "trainer_s": float(trainer_s)}


def _defer_body(body: dict[str, Any]) -> dict[str, Any]:
    return {"reason": _text(body.get("reason", ""), "reason", MAX_REASON)}


_BODIES = {
    Op.CLAIM: lambda body: {},
    Op.START: lambda body: {},
    Op.BEAT: _beat_body,
    Op.COMPLETE: _complete_body,
    Op.FAIL: _fail_body,
    Op.DEFER: _defer_body,
}


def _match(pattern: re.Pattern[str], value: Any, what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise BadRequest(f"{what} is missing or not well-formed")
    return value


def _text(value: Any, what: str, limit: int, required: bool = False) -> str:
    if not isinstance(value, str) or (required and not value):
        raise BadRequest(f"{what} is missing or not a string")
    return value[:limit]
