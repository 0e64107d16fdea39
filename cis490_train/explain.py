"""Why a job is not running: each live worker's reason, from the same rules that route it."""

from __future__ import annotations

from .capability import Capability
from .manifest import HostSpec
from .registry import JobRecord, WorkerInfo
from .routing import QueueClass, ineligibility


def why_waiting(job: JobRecord, qc: QueueClass | None, workers: list[WorkerInfo], hosts: dict[str, HostSpec]) -> list[str]:
    if job.status != "pending":
        return []
    if qc is None:
        qc = QueueClass.for_job(job.spec)
    if not workers:
        return [f"no live worker; start one that can serve queue {job.queue} (tier {qc.tier})"]
    lines = []
    for w in workers:
        cap = Capability.from_dict(w.capability)
        reason = ineligibility(qc, cap, hosts.get(w.host_id), w.tiers)
        if reason is not None:
            lines.append(f"{w.name}: {reason}")
        elif job.queue not in w.queues:
            lines.append(f"{w.name}: eligible, subscribing to {job.queue}")
        elif w.active:
            lines.append(f"{w.name}: eligible, busy with {', '.join(a.split(':')[0] for a in w.active)}")
        else:
            lines.append(f"{w.name}: eligible and idle; the job should start within seconds")
    if not any(": eligible" in line for line in lines):
        lines.insert(0, f"no live worker may run it (queue {job.queue})")
    return lines
