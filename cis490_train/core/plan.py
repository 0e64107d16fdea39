"""What applying a manifest does to each job, decided from what the registry holds. Pure.

`Registry.apply` acts on these decisions and `cis490-train manifest diff`
prints them without acting, so a preview and the real apply cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from . import lifecycle
from .lifecycle import JobState
from .manifest import Manifest
from .specs import JobSpec
from .routing import CPU, QueueClass, broker_priorities, fallback_queue, job_tier

INSERT = "insert"  # new job: created pending, attempt 1 sent
UNCHANGED = "unchanged"  # same spec, queue and priority: nothing changes (an unsent attempt is sent)
REROUTE = "reroute"  # pending job whose spec, queue or priority changed: a new attempt on its new queue
LEAVE = "leave"  # claimed, running or finished job whose spec changed: recorded for its next attempt, nothing sent
ACTIONS = (INSERT, UNCHANGED, REROUTE, LEAVE)
# The words ApplyReport has always used.
OUTCOMES = {INSERT: "inserted", UNCHANGED: "unchanged", REROUTE: "updated", LEAVE: "updated"}


class JobPlan(NamedTuple):
    """One manifest job routed: its class queue and broker priority."""

    spec: JobSpec
    queue: str
    broker_priority: int


@dataclass(frozen=True)
class Existing:
    """The registry's record of a job, as far as an apply looks at it."""

    status: str
    digest: str
    attempt: int
    sent: bool


@dataclass(frozen=True)
class Step:
    """What an apply does to one job: the action, the attempt it leaves current, whether it sends it,
    and the state changes a re-route makes."""

    action: str
    attempt: int
    send: bool
    changes: dict[str, Any] = field(default_factory=dict)


def routed(manifest: Manifest) -> list[JobPlan]:
    """Every job of the manifest with its class queue and broker priority (manifest order)."""
    levels = broker_priorities(spec.priority for spec in manifest.jobs)
    return [JobPlan(spec, QueueClass.for_job(spec).name, levels[spec.priority]) for spec in manifest.jobs]


def queue_classes(manifest: Manifest) -> list[QueueClass]:
    """The class queues an apply records: each job's, and the CPU fallback of prefer_cuda jobs."""
    classes = [QueueClass.for_job(spec) for spec in manifest.jobs]
    classes += [QueueClass.for_job(spec, tier=CPU) for spec in manifest.jobs if fallback_queue(spec)]
    return list({qc.name: qc for qc in classes}.values())


def decide(new_digest: str, existing: Existing | None) -> Step:
    if existing is None:
        return Step(INSERT, 1, True)
    if existing.digest == new_digest:
        return Step(UNCHANGED, existing.attempt, existing.status == lifecycle.Status.PENDING and not existing.sent)
    return on_change(JobState(existing.status, existing.attempt))


def on_change(state: JobState, now: float = 0.0) -> Step:
    """A job whose spec, queue or priority changed: only a pending one gets a new attempt."""
    moved = lifecycle.reroute(state, now)
    if moved.ok:
        return Step(REROUTE, moved.dispatch, True, moved.changes)
    return Step(LEAVE, state.attempt, False)


def routing_summary(manifest: Manifest) -> dict[str, Any]:
    """Where a manifest's jobs would go: jobs per tier and per class queue, with broker priorities."""
    queues: dict[str, dict[str, Any]] = {}
    for p in routed(manifest):
        q = queues.setdefault(p.queue, {"queue": p.queue, "tier": job_tier(p.spec), "jobs": 0, "broker_priorities": set()})
        q["jobs"] += 1
        q["broker_priorities"].add(p.broker_priority)
    tiers: dict[str, int] = {}
    for q in queues.values():
        tiers[q["tier"]] = tiers.get(q["tier"], 0) + q["jobs"]
    return {
        "name": manifest.name,
        "jobs": len(manifest.jobs),
        "hosts": sorted(manifest.hosts),
        "tiers": dict(sorted(tiers.items())),
        "queues": [{**q, "broker_priorities": sorted(q["broker_priorities"])} for _, q in sorted(queues.items())],
        "fallback_queues": sorted({fallback_queue(spec) for spec in manifest.jobs} - {""}),
    }
