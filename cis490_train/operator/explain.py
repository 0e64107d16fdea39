"""Why a job is not running: each live worker's reason, from the same rules that route it."""

from __future__ import annotations

from ..core.capability import Capability
from ..core.lifecycle import Status
from ..core.specs import HostSpec
from ..registry import JobRecord, WorkerInfo
from ..core.routing import QueueClass, ineligibility


def worker_verdict(job: JobRecord, qc: QueueClass, w: WorkerInfo, hosts: dict[str, HostSpec]) -> tuple[bool, str]:
    """(could take it now, why) for one live worker."""
    cap = Capability.from_dict(w.capability)
    reason = ineligibility(qc, cap, hosts.get(w.host_id), w.tiers)
    if reason is not None:
        return False, reason
    subscribed = [q for q in job.queues if q in w.queues]
    if not subscribed:
        return False, f"eligible, but not subscribed to {' or '.join(job.queues)} yet"
    need = job.spec.min_vram_gib
    if need and not qc.tier.startswith("cpu") and cap.max_vram_free_gib < need:
        return False, f"eligible, but only {cap.max_vram_free_gib:g} of {cap.max_vram_total_gib:g} GiB VRAM free (needs {need:g})"
    if w.active:
        return False, f"eligible, busy with {', '.join(a.split(':')[0] for a in w.active)}"
    return True, "eligible and idle: it takes the job with its next message"


def why_waiting(job: JobRecord, classes: dict[str, QueueClass], workers: list[WorkerInfo], hosts: dict[str, HostSpec]) -> list[str]:
    """Lines that explain a pending job; empty for a job that is not pending."""
    if job.status != Status.PENDING:
        return []
    lines = []
    if job.waiting:
        lines.append(f"put back: {job.waiting}")
    if not workers:
        return lines + [f"no live worker; start one that serves {' or '.join(job.queues)}"]
    verdicts = []
    for w in workers:
        best = (False, "")
        for queue in job.queues:
            qc = classes.get(queue) or QueueClass.for_job(job.spec)
            verdict = worker_verdict(job, qc, w, hosts)
            if verdict[0] or not best[1]:
                best = verdict
            if verdict[0]:
                break
        verdicts.append((w.name, *best))
    if not any(ok or "busy" in why for _, ok, why in verdicts):
        lines.append(f"no live worker may run it now (queue {', '.join(job.queues)})")
    lines += [f"{name}: {why}" for name, _, why in verdicts]
    return lines


def explain_job(registry, job: JobRecord) -> list[str]:
    """`why_waiting` with the live workers, queue classes and host policies read from the registry."""
    classes = {qc.name: qc for qc in registry.queue_classes()}
    return why_waiting(job, classes, registry.workers(), registry.hosts())
