"""Views of one thing at a time, a line per fact: a job, a host, a manifest, a dataset, the models.

Each returns the lines (or rich renderables) the CLI prints; every string that comes from a
manifest, the registry, a store or a trainer goes through `plain`, as in `views`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import RenderableType
from rich.text import Text

from ..core.plan import INSERT, LEAVE, REROUTE
from ..core.provenance import DataIdentity, label_of
from .views import action_line, attempt_line, metric_cell, plain, progress_text

if TYPE_CHECKING:
    from ..core.capability import Capability
    from ..core.lifecycle import Transition
    from ..registry import JobRecord
    from ..trainer.data import DatasetSummary
    from .enqueue import ApplyPreview, ApplyReport, PlannedJob


def capability_lines(cap: Capability) -> list[str]:
    lines = [f"host        {cap.host_id}", f"cores       {cap.cpu_cores}"]
    lines.append(f"RAM         {cap.ram_total_gib:g} GiB total, {cap.ram_available_gib:g} GiB available")
    if cap.cuda_devices:
        lines += [f"cuda:{g.index}      {g.name}, {g.vram_total_gib:g} GiB VRAM ({g.vram_free_gib:g} GiB free)" for g in cap.cuda_devices]
    else:
        lines.append("CUDA        none (this host serves the cpu tier)")
    lines.append(f"torch       {cap.torch_version or 'not installed'}")
    lines.append(f"xgboost     {cap.xgboost_version or 'not installed'}")
    lines.append(f"code        {cap.git_commit or 'unknown commit'}")
    return [plain(line) for line in lines]


def job_detail(
    record: JobRecord, attempts: list[dict[str, Any]], waiting: list[str], actions: Sequence[dict[str, Any]] = ()
) -> list[RenderableType]:
    """`show`: the job's spec and state, why it waits, one line per attempt, then operators' actions."""
    spec = record.spec
    lines = [
        f"status      {record.status} (attempt {record.attempt}, {record.starts} of {record.max_attempts} tries used)",
        f"model       {spec.model} / {spec.mode} / split {spec.split_recipe} / seed {spec.seed}",
        f"hyper       {json.dumps(spec.hyper, sort_keys=True)}",
        f"queue       {record.queue} (manifest priority {spec.priority}, broker priority {record.broker_priority})",
    ]
    if record.host:
        lines.append(f"host        {record.host} ({record.worker})")
    if progress_text(record):
        lines.append(f"progress    {progress_text(record)}")
    if record.artifact_id:
        lines.append(f"artifact    {record.artifact_id}")
    lines += _data_lines(record.result.get("dataset"))
    lines += [f"{key:<12}{metric_cell(m)}" for key, m in record.result.get("metrics", {}).items()]
    if record.error:
        first, *rest = record.error.splitlines() or [""]
        lines += [f"error       [{record.failure}] {first}", *rest]
    lines += [f"waiting     {line}" for line in waiting]
    heading = Text.assemble((plain(record.name), "bold"), plain(f"  {record.job_id}  ({record.manifest})"))
    return [heading, *map(plain, lines), *map(attempt_line, attempts), *map(action_line, actions)]


def _data_lines(raw: Any) -> list[str]:
    """What the job was trained on, the fingerprint and schema in full; nothing for an older result."""
    identity = DataIdentity.from_json(raw)
    if identity is None:
        return []
    pairs = (("data", identity.name), ("fingerprint", identity.fingerprint), ("schema", identity.schema_hash))
    return [f"{key:<12}{value}" for key, value in pairs if value]


def explanation(record: JobRecord, waiting: list[str]) -> list[str]:
    """Why the job waits, or, for one that does not, where it is instead."""
    if waiting:
        return waiting
    where = f" on {record.host} ({record.worker})" if record.host else ""
    return [f"{record.name} is {record.status}{where}; only pending jobs wait for a worker"]


def explain_lines(record: JobRecord, lines: list[str]) -> list[str]:
    heading = f"{record.name} ({record.job_id}) is {record.status}; queue {', '.join(record.queues)}"
    return [plain(heading), *(plain(f"  {line}") for line in lines)]


def cancel_line(record: JobRecord, t: Transition) -> str:
    if t.ok:
        return plain(f"cancelled {record.name} ({record.job_id}), was {record.status}")
    return plain(f"not cancelled {record.name} ({record.job_id}): {t.reason}")


def requeue_line(record: JobRecord, attempt: int) -> str:
    return plain(f"requeued {record.name} ({record.job_id}), was {record.status}: attempt {attempt}")


def enqueue_lines(report: ApplyReport) -> list[str]:
    lines = [report.summary()]
    if report.not_in_manifest:
        lines.append(f"not in manifest (kept until cancelled): {', '.join(report.not_in_manifest)}")
    return [plain(line) for line in lines]


def check_lines(file: str, summary: dict[str, Any]) -> list[str]:
    """`manifest check` of one valid file: its jobs per tier and queue, at which broker priorities."""
    hosts = f", host policies for {', '.join(summary['hosts'])}" if summary["hosts"] else ""
    lines = [f"{file}: valid; manifest {summary['name']!r}, {summary['jobs']} jobs{hosts}"]
    width = max((len(q["queue"]) for q in summary["queues"]), default=0) + 2
    for tier, n in summary["tiers"].items():
        lines.append(f"  tier {tier}: {n} job{'s' if n != 1 else ''}")
        for q in summary["queues"]:
            if q["tier"] == tier:
                levels = ", ".join(map(str, q["broker_priorities"]))
                lines.append(f"    {q['queue']:<{width}}{q['jobs']:>4} job{'s' if q['jobs'] != 1 else ' '}  broker priority {levels}")
    if summary["fallback_queues"]:
        lines.append(f"  prefer_cuda fallbacks: {', '.join(summary['fallback_queues'])}")
    return [plain(line) for line in lines]


def diff_lines(preview: ApplyPreview) -> list[str]:
    """`manifest diff`: the counts, then each job an enqueue would touch, the orphans, new queues and host policies."""
    counts = preview.to_dict()["counts"]
    lines = [
        f"manifest {preview.manifest!r}: {counts['insert']} to insert, {counts['reroute']} to re-route, "
        f"{counts['leave']} to leave, {counts['unchanged']} unchanged, {counts['orphan']} not in the file; "
        f"{preview.sends} message{'s' if preview.sends != 1 else ''} would be sent (nothing was changed)"
    ]
    lines += [line for line in map(_diff_line, preview.jobs) if line]
    lines += [f"  orphan     {name} ({job_id}), {status}: not in the file; kept until cancelled" for job_id, name, status in preview.orphans]
    lines += [f"  new queue  {queue}" for queue in preview.new_queues]
    lines += [f"  host       {host}: {change} policy" for host, change in preview.hosts]
    return [plain(line) for line in lines]


def _diff_line(job: PlannedJob) -> str:
    where = f"{job.queue} at broker priority {job.broker_priority}"
    changes = "; ".join(job.changes)
    if job.action == INSERT:
        return f"  insert     {job.name} ({job.job_id}) -> {where}"
    if job.action == REROUTE:
        return f"  re-route   {job.name} ({job.job_id}), pending: attempt {job.attempt} -> {where}; {changes}"
    if job.action == LEAVE:
        return f"  leave      {job.name} ({job.job_id}), {job.status}: {changes} (recorded for its next attempt; nothing sent)"
    if job.send:
        return f"  resend     {job.name} ({job.job_id}), pending: attempt {job.attempt} never reached the broker -> {where}"
    return ""


def dataset_lines(summary: DatasetSummary) -> list[str]:
    hosts = f"{len(summary.hosts)} hosts: {', '.join(summary.hosts)}"
    lines = [
        f"{summary.path}: follows the data contract",
        f"windows     {summary.windows} ({summary.labelled} labelled) on {hosts}",
        f"classes     {', '.join(summary.classes)}",
        f"features    {len(summary.realistic)} realistic, {len(summary.oracle)} oracle",
        f"sequences   {summary.seq_len} steps x {len(summary.channels)} channels",
        f"schema      {summary.schema_hash}",
    ]
    return [plain(line) for line in lines]


def models_view(rows: list[dict[str, Any]]) -> list[RenderableType]:
    """`models`: each model in bold, then a line per hyperparameter with its type, default and range."""
    out: list[RenderableType] = []
    for row in rows:
        out.append(Text.assemble((row["model"], "bold"), "" if row["implemented"] else "  (not implemented)"))
        for p in row["hyper"]:
            bounds = f" [{'|'.join(p['choices'])}]" if p["choices"] else (f" [{p['low']:g}..{p['high']:g}]" if p["low"] is not None else "")
            out.append(f"  {p['name']:<22}{p['type']:<6}{p['default']!s:<10}{bounds}  {p['help']}")
    return out


def evaluate_lines(result: dict[str, Any]) -> list[str]:
    """`evaluate`: the bundle's scores on the data again, beside the scores its job recorded."""
    same = "the data it was trained on" if result["same_data"] else "different data (same schema)"
    lines = [f"{result['model']} / {result['mode']} / split {result['split_recipe']}: {result['n_test']} test windows of {same}"]
    if not result["same_data"]:
        lines.append(f"{'trained on':<18}{label_of(result['trained_on']) or 'data the checkpoint does not name'}")
        lines.append(f"{'given':<18}{label_of(result['dataset'])}")
    lines += [f"{key:<18}{metric_cell(m)}   recorded {metric_cell(result['recorded'].get(key))}" for key, m in result["metrics"].items()]
    lines.append(f"{'baseline acc.':<18}{metric_cell(result['baseline'].get('accuracy'))}")
    return [plain(line) for line in lines]
