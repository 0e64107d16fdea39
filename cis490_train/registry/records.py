"""The registry's records as read back: jobs, workers and apply outcomes, each parsed field by field.

A record that cannot be used raises BadRecord naming its key; readers report it
and skip it, so nothing a damaged or forged record holds reaches a view it could
crash.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from ..core import plan
from ..core.lifecycle import JobState, float_field, int_field
from ..core.specs import JobSpec
from ..core.protocol import clean_progress
from ..core.provenance import DataIdentity
from ..errors import BadRecord
from .keys import spec_key, state_key


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

    def to_dict(self) -> dict[str, Any]:
        """What `status --json` and `show --json` print of a job: the fields an operator reads, not its lease."""
        return {
            "job_id": self.job_id,
            "name": self.name,
            "manifest": self.manifest,
            "status": self.status,
            "attempt": self.attempt,
            "starts": self.starts,
            "max_attempts": self.max_attempts,
            "queue": self.queue,
            "broker_priority": self.broker_priority,
            "worker": self.worker,
            "host": self.host,
            "created_at": self.created_at,
            "claimed_at": self.claimed_at,
            "started_at": self.started_at,
            "heartbeat_at": self.heartbeat_at,
            "finished_at": self.finished_at,
            "progress": self.progress,
            "error": self.error,
            "failure": self.failure,
            "artifact_id": self.artifact_id,
            "result": self.result,
            "spec": self.spec.to_dict(),
        }

    @classmethod
    def from_redis(cls, job_id: str, f: dict[str, str], spec_json: str | None) -> JobRecord:
        """A job's record as read back; BadRecord naming its key when a field cannot be used.

        Every field is parsed here, once, so a damaged or forged record is reported and skipped
        by the caller instead of crashing whatever shows it.
        """
        key = state_key(job_id)
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
    if dataset := DataIdentity.from_json(raw.get("dataset")):
        out["dataset"] = dataset.to_json()
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
    key = spec_key(job_id)
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
