"""Apply a manifest to the fleet: `python -m cis490_train.enqueue manifest.toml`.

Idempotent: unchanged jobs keep their status, new jobs are queued, pending
jobs whose queue or priority changed are re-sent (their old message turns
stale), and jobs no longer in the manifest stay until cancelled.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from .manifest import Manifest
from .registry import Registry, fallback_queue
from .routing import CPU, QueueClass, broker_priorities

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
        }


def apply_manifest(manifest: Manifest, registry: Registry) -> ApplyReport:
    from .celery import app
    from .tasks import send_attempt

    registry.ping()
    levels = broker_priorities(spec.priority for spec in manifest.jobs)
    classes = {spec.job_id: QueueClass.for_job(spec) for spec in manifest.jobs}
    plans = [(spec, classes[spec.job_id].name, levels[spec.priority]) for spec in manifest.jobs]

    fallbacks = [QueueClass.for_job(spec, tier=CPU) for spec in manifest.jobs if fallback_queue(spec)]
    registry.set_hosts(manifest.hosts.values())
    new_queues = registry.add_queue_classes([*classes.values(), *fallbacks])
    outcomes = registry.apply(plans, manifest.name)

    plan_of = {spec.job_id: (queue, level, spec.priority) for spec, queue, level in plans}
    to_send = sorted((o for o in outcomes if o.needs_send), key=lambda o: -plan_of[o.job_id][2])
    if to_send:
        # One pipelined round trip per batch instead of one per message; a crash midway leaves the
        # rest marked unsent, and the reaper sends them.
        with app.producer_or_acquire() as producer, producer.batch(max_size=SEND_BATCH):
            for o in to_send:
                queue, level, _ = plan_of[o.job_id]
                send_attempt(o.job_id, o.attempt, queue, level, producer=producer)
        registry.mark_sent((o.job_id, o.attempt) for o in to_send)

    ids = {spec.job_id for spec in manifest.jobs}
    others = [job_id for job_id, name in registry.manifest_of().items() if name == manifest.name and job_id not in ids]
    orphans = [r.name for r in registry.jobs(others)]
    by = {"inserted": [], "updated": [], "unchanged": []}
    for o in outcomes:
        by[o.outcome].append(o.name)
    return ApplyReport(
        manifest=manifest.name,
        inserted=by["inserted"],
        updated=by["updated"],
        unchanged=by["unchanged"],
        not_in_manifest=sorted(orphans),
        new_queues=new_queues,
        sent=len(to_send),
    )


def main(argv: list[str] | None = None) -> int:
    from .cli import main as cli_main

    return cli_main(["enqueue", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
