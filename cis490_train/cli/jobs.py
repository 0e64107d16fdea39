"""The jobs in the registry: status, show, explain, logs, cancel, requeue, and the live workers."""

from __future__ import annotations

import json
import os
import sys

from ..config import Settings
from ..core.lifecycle import TERMINAL, UNFINISHED, Status
from ..errors import UsageError
from ..operator import details
from .common import Commands, above_zero, add_manifest_filter, emit, open_messages, open_registry, out, print_json


def _status(args, settings: Settings) -> int:
    from ..operator.views import counts_line, counts_of, display_order, jobs_table

    if args.watch:
        return _watch_status(args, settings)
    if args.interval is not None or args.until_done:
        raise UsageError("--interval and --until-done go with --watch")
    registry = open_registry(settings)
    if args.json or args.all:
        records = registry.jobs(manifest=args.manifest)
        if args.json:
            print_json({"counts": counts_line(records), "jobs": [r.to_dict() for r in records]})
        else:
            out.print(jobs_table(records))
        return 0
    shown, statuses = registry.first_jobs(display_order, args.limit, args.manifest)
    out.print(jobs_table(shown, title=counts_of(statuses), hidden=len(statuses) - len(shown)))
    return 0


def _watch_status(args, settings: Settings) -> int:
    """Redraw the jobs until Ctrl-C (exit 0) or, with --until-done, until none is pending or running
    (exit 1 if one of them failed)."""
    from ..operator.watch import watch

    if args.json:
        raise UsageError("--json prints one snapshot; use it without --watch")
    interval = 2.0 if args.interval is None else args.interval
    keep = (lambda r: r.manifest == args.manifest) if args.manifest else None
    done = (lambda records: all(r.status in TERMINAL for r in records)) if args.until_done else None
    try:
        records = watch(open_registry(settings), out, interval=interval, limit=None if args.all else args.limit, keep=keep, done=done)
    except KeyboardInterrupt:
        return 0
    return 1 if any(r.status == Status.FAILED for r in records) else 0


def _show(args, settings: Settings) -> int:
    from ..operator.explain import explain_job

    registry = open_registry(settings)
    record = registry.find(args.job)
    attempts = registry.attempts(record.job_id)
    waiting = explain_job(registry, record)
    actions = registry.audit(job_id=record.job_id)
    data = {**record.to_dict(), "attempts": attempts, "waiting": waiting, "operator_actions": actions}
    return emit(args, data, *details.job_detail(record, attempts, waiting, actions))


def _explain(args, settings: Settings) -> int:
    from ..operator.explain import explain_job

    registry = open_registry(settings)
    record = registry.find(args.job)
    lines = details.explanation(record, explain_job(registry, record))
    return emit(args, {"job_id": record.job_id, "name": record.name, "status": record.status, "queues": list(record.queues), "lines": lines}, *details.explain_lines(record, lines))


def _logs(args, settings: Settings) -> int:
    """The trainer's output of one attempt, read from Redis; stdout carries the output lines only."""
    from ..operator import joblog

    registry = open_registry(settings)
    record = registry.find(args.job)
    attempt = record.attempt if args.attempt is None else args.attempt
    if not 1 <= attempt <= record.attempt:
        raise UsageError(f"--attempt {attempt}: {record.name} ({record.job_id}) has attempts 1 to {record.attempt}")
    trimmed = registry.log_trimmed(record.job_id, attempt)
    if trimmed:
        print(joblog.trimmed_note(trimmed, attempt), file=sys.stderr)
    shown = 0
    try:
        for _, fields in joblog.read(registry, record.job_id, attempt, follow=args.follow):
            shown += 1
            text = joblog.render(fields, progress=args.progress, raw=args.raw)
            if text is not None:
                sys.stdout.write(text + "\n")
            remark = joblog.note(fields, attempt)
            if remark:
                sys.stdout.flush()
                print(remark, file=sys.stderr)
            if args.follow:
                sys.stdout.flush()
        sys.stdout.flush()
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # `logs JOB | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    if not shown:
        status, current = registry.status_of(record.job_id)
        print(joblog.empty_note(record.name, record.job_id, attempt, status, current), file=sys.stderr)
    return 0


def _select(registry, args, status: Status | frozenset[str] | None = None) -> list:
    """The jobs an operator command names: ids/names, or every job (in `status`) the filters match."""
    all_failed = getattr(args, "all_failed", False)
    if args.jobs and (args.model or all_failed):
        raise UsageError("name jobs or use filters (--model, --all-failed), not both")
    if args.jobs:
        return [registry.find(key) for key in args.jobs]
    if not (args.model or all_failed):
        raise UsageError("name at least one job, or use --model M" + (" / --all-failed" if hasattr(args, "all_failed") else ""))
    return registry.jobs(model=args.model, status=status)


def _cancel(args, settings: Settings) -> int:
    registry = open_registry(settings)
    records = _select(registry, args, UNFINISHED)
    refused = 0
    for r in records:
        t = registry.cancel(r.job_id)
        if not t.ok:
            refused += 1
        out.print(details.cancel_line(r, t))
    out.print(f"{len(records) - refused} cancelled, {refused} refused")
    return 1 if refused else 0


def _requeue(args, settings: Settings) -> int:
    registry = open_registry(settings)
    messages = open_messages(settings)
    records = _select(registry, args, Status.FAILED if args.all_failed else None)
    for r in records:
        registry.requeue(r.job_id)
        again = registry.get(r.job_id)
        messages.dispatch(registry, again)
        out.print(details.requeue_line(r, again.attempt))
    out.print(f"{len(records)} requeued")
    return 0


def _workers(args, settings: Settings) -> int:
    from ..operator.views import workers_table

    workers = open_registry(settings).workers()
    return emit(args, [json.loads(w.to_json()) for w in workers], workers_table(workers))


def add_status(commands: Commands) -> None:
    p = commands.add("status", _status, "job counts and a table of jobs (running and failed first)")
    add_manifest_filter(p)
    p.add_argument("--limit", type=above_zero(int, "--limit", "rows", "--all shows every job"), default=50, help="rows to show (default 50)")
    p.add_argument("--all", action="store_true", help="show every job")
    p.add_argument("--watch", action="store_true", help="redraw the table with progress bars and ETAs until Ctrl-C")
    p.add_argument(
        "--interval", type=above_zero(float, "--interval", "seconds", "default 2"), metavar="S", help="with --watch: seconds between redraws (default 2)"
    )
    p.add_argument("--until-done", action="store_true", help="with --watch: stop once no job is pending or running (exit 1 if one failed)")


def add_show(commands: Commands) -> None:
    p = commands.add("show", _show, "one job: spec, status, attempts, host, progress, error, artifact")
    p.add_argument("job", help="job id, unique id prefix or job name")


def add_explain(commands: Commands) -> None:
    p = commands.add("explain", _explain, "why a pending job is not running: each live worker's reason")
    p.add_argument("job", help="job id, unique id prefix or job name")


def add_logs(commands: Commands) -> None:
    p = commands.add("logs", _logs, "the trainer's output of a job's current or any past attempt, from any host", json_flag=False)
    p.add_argument("job", help="job id, unique id prefix or job name")
    p.add_argument("--attempt", type=int, metavar="N", help="this attempt (default: the current one)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until the attempt ends")
    p.add_argument("--progress", action="store_true", help="also show the progress lines, in words")
    p.add_argument("--raw", action="store_true", help="print the lines as the trainer wrote them, JSON included (control characters still escaped)")


def add_cancel(commands: Commands) -> None:
    p = commands.add("cancel", _cancel, "cancel pending or running jobs (a running trainer is stopped); operator credential", json_flag=False)
    p.add_argument("jobs", nargs="*", metavar="JOB")
    p.add_argument("--model", help="every unfinished job of this model")


def add_requeue(commands: Commands) -> None:
    p = commands.add("requeue", _requeue, "start jobs again from any state as a new attempt; operator credential", json_flag=False)
    p.add_argument("jobs", nargs="*", metavar="JOB")
    p.add_argument("--model", help="every job of this model (with --all-failed: the failed ones)")
    p.add_argument("--all-failed", action="store_true", help="every failed job")


def add_workers(commands: Commands) -> None:
    commands.add("workers", _workers, "live workers with host, capability and subscribed queues")
