"""Apply a manifest to the fleet (`cis490-train enqueue`, `python -m cis490_train.enqueue`).

Idempotent: unchanged jobs keep their status, new jobs are queued, pending
jobs whose queue or priority changed are re-sent (their old message turns
stale), and jobs no longer in the manifest stay until cancelled. What an
apply would do can be previewed without doing it (`manifest diff`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..broker.messages import Messages
from ..core import plan
from ..core.manifest import Manifest
from ..registry import ApplyOutcome, JobRecord, Registry, spec_digest

SEND_BATCH = 1000


@dataclass(frozen=True)
class ApplyReport:
    manifest: str
    inserted: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    not_in_manifest: list[str] = field(default_factory=list)
    new_queues: list[str] = field(default_factory=list)
    sent: int = 0
    steps: list[ApplyOutcome] = field(default_factory=list)

    def summary(self) -> str:
        line = (
            f"manifest {self.manifest!r}: {len(self.inserted)} inserted, {len(self.updated)} updated, "
            f"{len(self.unchanged)} unchanged, {len(self.not_in_manifest)} not in manifest; "
            f"{self.sent} message{'s' if self.sent != 1 else ''} sent"
        )
        if self.new_queues:
            line += f"; new queues: {', '.join(self.new_queues)}"
        return line

    def to_dict(self) -> dict:
        return {
            "manifest": self.manifest,
            "inserted": self.inserted,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "not_in_manifest": self.not_in_manifest,
            "new_queues": self.new_queues,
            "sent": self.sent,
            "jobs": [{"job_id": o.job_id, "name": o.name, "action": o.action, "attempt": o.attempt, "send": o.needs_send} for o in self.steps],
        }


def apply_manifest(manifest: Manifest, registry: Registry, messages: Messages) -> ApplyReport:
    registry.ping()
    plans = plan.routed(manifest)
    registry.set_hosts(manifest.hosts.values())
    new_queues = registry.add_queue_classes(plan.queue_classes(manifest))
    outcomes = registry.apply(plans, manifest.name)

    plan_of = {p.spec.job_id: p for p in plans}
    to_send = sorted((o for o in outcomes if o.needs_send), key=lambda o: -plan_of[o.job_id].spec.priority)
    if to_send:
        # One pipelined round trip per batch instead of one per message; a crash midway leaves the
        # rest marked unsent, and the reaper sends them.
        with messages.batch(SEND_BATCH) as producer:
            for o in to_send:
                p = plan_of[o.job_id]
                messages.send(o.job_id, o.attempt, p.queue, p.broker_priority, producer=producer)
        registry.mark_sent((o.job_id, o.attempt) for o in to_send)

    by = {"inserted": [], "updated": [], "unchanged": []}
    for o in outcomes:
        by[o.outcome].append(o.name)
    return ApplyReport(
        manifest=manifest.name,
        inserted=by["inserted"],
        updated=by["updated"],
        unchanged=by["unchanged"],
        not_in_manifest=sorted(r.name for r in _orphans(manifest, registry)),
        new_queues=new_queues,
        sent=len(to_send),
        steps=outcomes,
    )


def _orphans(manifest: Manifest, registry: Registry) -> list[JobRecord]:
    """Jobs the registry holds under this manifest's name that the manifest no longer has."""
    ids = {spec.job_id for spec in manifest.jobs}
    others = [job_id for job_id, name in registry.manifest_of().items() if name == manifest.name and job_id not in ids]
    return registry.jobs(others)


@dataclass(frozen=True)
class PlannedJob:
    """One job of a preview: what the apply would do and what differs from the registry's record."""

    job_id: str
    name: str
    action: str
    attempt: int
    send: bool
    queue: str
    broker_priority: int
    status: str = ""  # the registry's, '' for a new job
    changes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "name": self.name,
            "action": self.action,
            "attempt": self.attempt,
            "send": self.send,
            "queue": self.queue,
            "broker_priority": self.broker_priority,
            "status": self.status,
            "changes": list(self.changes),
        }


@dataclass(frozen=True)
class ApplyPreview:
    """What `apply_manifest` would do now, computed without writing anything."""

    manifest: str
    jobs: tuple[PlannedJob, ...]
    orphans: tuple[tuple[str, str, str], ...]  # (job id, name, status)
    new_queues: tuple[str, ...]
    hosts: tuple[tuple[str, str], ...]  # (host, "new" | "changed")

    def count(self, action: str) -> int:
        return sum(1 for j in self.jobs if j.action == action)

    @property
    def sends(self) -> int:
        return sum(1 for j in self.jobs if j.send)

    def to_dict(self) -> dict[str, Any]:
        return {
            "manifest": self.manifest,
            "counts": {**{a: self.count(a) for a in plan.ACTIONS}, "orphan": len(self.orphans)},
            "sends": self.sends,
            "jobs": [j.to_dict() for j in self.jobs],
            "orphans": [{"job_id": i, "name": n, "status": s} for i, n, s in self.orphans],
            "new_queues": list(self.new_queues),
            "hosts": [{"host": h, "change": c} for h, c in self.hosts],
        }


def preview_manifest(manifest: Manifest, registry: Registry) -> ApplyPreview:
    """The decisions `apply_manifest` would take against the registry as it is now; reads only."""
    registry.ping()
    plans = plan.routed(manifest)
    digests = [spec_digest(p.spec, p.queue, p.broker_priority) for p in plans]
    current = registry.existing(p.spec.job_id for p in plans)
    steps = [plan.decide(d, e) for d, e in zip(digests, current)]
    changed = [p.spec.job_id for p, s in zip(plans, steps) if s.action in (plan.REROUTE, plan.LEAVE)]
    before = {r.job_id: r for r in registry.jobs(changed)}
    jobs = []
    for p, step, existing in zip(plans, steps, current):
        old = before.get(p.spec.job_id)
        jobs.append(
            PlannedJob(
                job_id=p.spec.job_id,
                name=p.spec.name,
                action=step.action,
                attempt=step.attempt,
                send=step.send,
                queue=p.queue,
                broker_priority=p.broker_priority,
                status=existing.status if existing else "",
                changes=_differences(old, p) if old else (),
            )
        )
    known_queues = {qc.name for qc in registry.queue_classes()}
    stored_hosts = registry.hosts()
    hosts = [(name, "new" if name not in stored_hosts else "changed") for name, h in manifest.hosts.items() if stored_hosts.get(name) != h]
    return ApplyPreview(
        manifest=manifest.name,
        jobs=tuple(jobs),
        orphans=tuple(sorted((r.job_id, r.name, r.status) for r in _orphans(manifest, registry))),
        new_queues=tuple(qc.name for qc in plan.queue_classes(manifest) if qc.name not in known_queues),
        hosts=tuple(hosts),
    )


def _differences(old: JobRecord, new: plan.JobPlan) -> tuple[str, ...]:
    """'key: old -> new' for each spec field, the queue and the broker priority that differ."""
    a, b = old.spec.to_dict(), new.spec.to_dict()
    found = [f"{key}: {_show(a.get(key))} -> {_show(b[key])}" for key in b if a.get(key) != b[key]]
    if old.queue != new.queue:
        found.append(f"queue: {old.queue} -> {new.queue}")
    if old.broker_priority != new.broker_priority:
        found.append(f"broker priority: {old.broker_priority} -> {new.broker_priority}")
    return tuple(found)


def _show(value: Any) -> str:
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else str(value)
