"""The `cis490-train` command: a thin shell that parses, calls, prints and picks exit codes.

User errors print one line (or the list of manifest problems) and exit
non-zero without a traceback; exit codes come from the error class.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import NoReturn

from rich.console import Console
from rich.text import Text

from ..config import Settings
from ..core.lifecycle import TERMINAL, Status
from ..errors import Cis490Error, UsageError
from ..operator.views import plain

# Piped output (CI logs, `| less`) gets a width that fits the results table instead of 80 columns.
# No markup or emoji codes: text from the registry is printed as it is, never interpreted.
out = Console(highlight=False, markup=False, emoji=False, width=None if sys.stdout.isatty() else 160)


_opened: list = []


def _registry(settings: Settings):
    from ..registry import Registry

    registry = Registry(settings.broker_url)
    registry.ping()
    _opened.append(registry)
    return registry


def _report_problems() -> None:
    """Each record a command could not read and left out, once, on stderr: the output stays whole."""
    seen = set()
    for registry in _opened:
        for problem in registry.problems:
            if str(problem) not in seen:
                seen.add(str(problem))
                print(f"warning: skipped {problem}", file=sys.stderr)


def _messages(settings: Settings):
    from ..broker.messages import Messages

    return Messages.from_settings(settings)


def _print_json(data) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


def _cmd_capability(args, settings: Settings) -> int:
    from ..core.capability import Capability

    cap = Capability.load(settings.capability_file, settings.host_id)
    if args.json:
        _print_json(cap.to_dict())
        return 0
    out.print(plain(f"host        {cap.host_id}"))
    out.print(f"cores       {cap.cpu_cores}")
    out.print(f"RAM         {cap.ram_total_gib:g} GiB total, {cap.ram_available_gib:g} GiB available")
    if cap.cuda_devices:
        for g in cap.cuda_devices:
            out.print(plain(f"cuda:{g.index}      {g.name}, {g.vram_total_gib:g} GiB VRAM ({g.vram_free_gib:g} GiB free)"))
    else:
        out.print("CUDA        none (this host serves the cpu tier)")
    out.print(f"torch       {cap.torch_version or 'not installed'}")
    out.print(f"xgboost     {cap.xgboost_version or 'not installed'}")
    out.print(f"code        {cap.git_commit or 'unknown commit'}")
    return 0


def _cmd_enqueue(args, settings: Settings) -> int:
    from ..operator.enqueue import apply_manifest
    from ..core.manifest import Manifest

    manifest = Manifest.load(args.manifest)
    report = apply_manifest(manifest, _registry(settings), _messages(settings))
    if args.json:
        _print_json(report.to_dict())
    else:
        out.print(plain(report.summary()))
        if report.not_in_manifest:
            out.print(plain(f"not in manifest (kept until cancelled): {', '.join(report.not_in_manifest)}"))
    return 0


def _cmd_status(args, settings: Settings) -> int:
    from ..operator.views import counts_line, counts_of, display_order, jobs_table

    if args.watch:
        return _watch_status(args, settings)
    if args.interval is not None or args.until_done:
        raise UsageError("--interval and --until-done go with --watch")
    if args.limit < 1:
        raise UsageError(f"--limit {args.limit}: give a number of rows above 0 (--all shows every job)")
    registry = _registry(settings)
    if args.json or args.all:
        records = registry.jobs()
        if args.manifest:
            records = [r for r in records if r.manifest == args.manifest]
        if args.json:
            _print_json({"counts": counts_line(records), "jobs": [_record_dict(r) for r in records]})
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
    if not interval > 0:
        raise UsageError(f"--interval {args.interval:g}: give a number of seconds above 0 (default 2)")
    keep = (lambda r: r.manifest == args.manifest) if args.manifest else None
    done = (lambda records: all(r.status in TERMINAL for r in records)) if args.until_done else None
    try:
        records = watch(_registry(settings), out, interval=interval, limit=None if args.all else args.limit, keep=keep, done=done)
    except KeyboardInterrupt:
        return 0
    return 1 if any(r.status == Status.FAILED for r in records) else 0


def _record_dict(r) -> dict:
    return {
        "job_id": r.job_id,
        "name": r.name,
        "manifest": r.manifest,
        "status": r.status,
        "attempt": r.attempt,
        "starts": r.starts,
        "max_attempts": r.max_attempts,
        "queue": r.queue,
        "broker_priority": r.broker_priority,
        "worker": r.worker,
        "host": r.host,
        "created_at": r.created_at,
        "claimed_at": r.claimed_at,
        "started_at": r.started_at,
        "heartbeat_at": r.heartbeat_at,
        "finished_at": r.finished_at,
        "progress": r.progress,
        "error": r.error,
        "failure": r.failure,
        "artifact_id": r.artifact_id,
        "result": r.result,
        "spec": r.spec.to_dict(),
    }


def _cmd_show(args, settings: Settings) -> int:
    from ..operator.explain import explain_job
    from ..operator.views import attempt_line, progress_text

    registry = _registry(settings)
    record = registry.find(args.job)
    attempts = registry.attempts(record.job_id)
    waiting = explain_job(registry, record)
    if args.json:
        _print_json({**_record_dict(record), "attempts": attempts, "waiting": waiting})
        return 0
    spec = record.spec
    out.print(Text.assemble((plain(record.name), "bold"), plain(f"  {record.job_id}  ({record.manifest})")))
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
    if record.result.get("metrics"):
        from ..operator.views import metric_cell

        lines += [f"{key:<12}{metric_cell(m)}" for key, m in record.result["metrics"].items()]
    if record.error:
        first, *rest = record.error.splitlines() or [""]
        lines += [f"error       [{record.failure}] {first}", *rest]
    lines += [f"waiting     {line}" for line in waiting]
    for line in lines:
        out.print(plain(line))
    for a in attempts:
        out.print(attempt_line(a))
    return 0


def _cmd_explain(args, settings: Settings) -> int:
    from ..operator.explain import explain_job

    registry = _registry(settings)
    record = registry.find(args.job)
    lines = explain_job(registry, record)
    if not lines:
        where = f" on {record.host} ({record.worker})" if record.host else ""
        lines = [f"{record.name} is {record.status}{where}; only pending jobs wait for a worker"]
    if args.json:
        _print_json({"job_id": record.job_id, "name": record.name, "status": record.status, "queues": list(record.queues), "lines": lines})
        return 0
    out.print(plain(f"{record.name} ({record.job_id}) is {record.status}; queue {', '.join(record.queues)}"))
    for line in lines:
        out.print(plain(f"  {line}"))
    return 0


def _cmd_logs(args, settings: Settings) -> int:
    """The trainer's output of one attempt, read from Redis; stdout carries the output lines only."""
    from ..operator import joblog

    registry = _registry(settings)
    record = registry.find(args.job)
    attempt = record.attempt if args.attempt is None else args.attempt
    if not 1 <= attempt <= record.attempt:
        raise UsageError(f"--attempt {attempt}: {record.name} ({record.job_id}) has attempts 1 to {record.attempt}")
    trimmed = registry.log_trimmed(record.job_id, attempt)
    if trimmed:
        print(f"[the first {trimmed} entries of attempt {attempt} were dropped: the log keeps the last CIS490_LOG_LINES]", file=sys.stderr)
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
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    if not shown:
        status, current = registry.status_of(record.job_id)
        why = joblog.why_empty(status, current, attempt)
        print(plain(f"no output recorded for attempt {attempt} of {record.name} ({record.job_id}): {why}"), file=sys.stderr)
    return 0


def _select(registry, args) -> list:
    """The jobs an operator command names: ids/names, or every job matching the filters."""
    if args.jobs and (args.model or getattr(args, "all_failed", False)):
        raise UsageError("name jobs or use filters (--model, --all-failed), not both")
    if args.jobs:
        return [registry.find(key) for key in args.jobs]
    if not (args.model or getattr(args, "all_failed", False)):
        raise UsageError("name at least one job, or use --model M" + (" / --all-failed" if hasattr(args, "all_failed") else ""))
    records = registry.jobs()
    if args.model:
        records = [r for r in records if r.spec.model == args.model]
    if getattr(args, "all_failed", False):
        records = [r for r in records if r.status == Status.FAILED]
    return records


def _cmd_cancel(args, settings: Settings) -> int:
    registry = _registry(settings)
    records = _select(registry, args)
    if args.model:
        records = [r for r in records if r.status not in TERMINAL]
    refused = 0
    for r in records:
        t = registry.cancel(r.job_id)
        if t.ok:
            out.print(plain(f"cancelled {r.name} ({r.job_id}), was {r.status}"))
        else:
            refused += 1
            out.print(plain(f"not cancelled {r.name} ({r.job_id}): {t.reason}"))
    out.print(f"{len(records) - refused} cancelled, {refused} refused")
    return 1 if refused else 0


def _cmd_requeue(args, settings: Settings) -> int:
    registry = _registry(settings)
    messages = _messages(settings)
    records = _select(registry, args)
    for r in records:
        registry.requeue(r.job_id)
        again = registry.get(r.job_id)
        messages.dispatch(registry, again)
        out.print(plain(f"requeued {r.name} ({r.job_id}), was {r.status}: attempt {again.attempt}"))
    out.print(f"{len(records)} requeued")
    return 0


def _cmd_workers(args, settings: Settings) -> int:
    from ..operator.views import workers_table

    workers = _registry(settings).workers()
    if args.json:
        _print_json([json.loads(w.to_json()) for w in workers])
        return 0
    out.print(workers_table(workers))
    return 0


def _cmd_results(args, settings: Settings) -> int:
    from ..operator.views import leaderboard_rows, results_table

    records = _registry(settings).jobs()
    if args.manifest:
        records = [r for r in records if r.manifest == args.manifest]
    rows = leaderboard_rows(records)
    if args.json:
        _print_json(rows)
        return 0
    out.print(results_table(rows))
    return 0


def _cmd_run(args, settings: Settings) -> int:
    from ..operator.run import run_manifest

    return run_manifest(Path(args.manifest), settings, workers=args.workers, console=out, keep_dir=args.keep)


def _cmd_acl(args, settings: Settings) -> int:
    from ..operator.acl import OPERATOR, WORKER, broker_url, new_password, render_acl

    operator = settings.operator_password or new_password()
    worker = settings.worker_password or new_password()
    try:
        text = render_acl(operator, worker)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    # The file (hashed passwords only) goes to --output, 0600, or stdout; the URLs to give out go to stderr.
    if args.output:
        from ..atomic import write_private

        try:
            write_private(Path(args.output), text.encode())
        except OSError as exc:
            raise UsageError(f"cannot write {args.output}: {exc.strerror}") from None
    print(f"operators: CIS490_BROKER_URL={broker_url(OPERATOR, operator, args.host, args.port)}", file=sys.stderr)
    print(f"workers:   CIS490_BROKER_URL={broker_url(WORKER, worker, args.host, args.port)}", file=sys.stderr)
    if not args.output:
        print(text, end="")
    return 0


def _cmd_coordinator(args, settings: Settings) -> int:
    from ..coordinator.service import run

    run(settings)
    return 0


def _cmd_store_serve(args, settings: Settings) -> int:
    from ..artifacts.server import serve

    root = Path(args.root) if args.root else settings.store_root
    limits = {k: v for k, v in (("idle_timeout_s", args.idle_timeout), ("max_connections", args.max_connections)) if v is not None}
    serve(root=root, host=args.host, port=args.port, token=settings.store_token(root), max_bytes=settings.max_upload_bytes, **limits)
    return 0


def _cmd_data_synth(args, settings: Settings) -> int:
    from ..trainer.data import synthesize

    target = Path(args.out) if args.out else settings.data_dir
    hosts = [h.strip() for h in args.hosts.split(",") if h.strip()] if args.hosts else None
    synthesize(
        target,
        small=args.small,
        seed=args.seed,
        hosts=hosts,
        windows_per_host=args.windows,
        n_features=args.features,
        n_oracle=args.oracle_features,
        seq_len=args.seq_len,
        n_channels=args.channels,
    )
    out.print(f"wrote synthetic dataset to {target}")
    return 0


def _cmd_data_check(args, settings: Settings) -> int:
    from ..trainer.data import check_dataset, load_dataset

    target = Path(args.dir) if args.dir else settings.data_dir
    schema = check_dataset(target)
    data = load_dataset(target)
    labelled = int((data.label >= 0).sum())
    summary = {
        "path": str(target),
        "windows": int(data.n),
        "labelled": labelled,
        "hosts": sorted({str(h) for h in data.host}),
        "classes": list(schema.classes),
        "features": {kind: [f.name for f in schema.features if f.kind == kind] for kind in ("realistic", "oracle")},
        "sequence": {"seq_len": schema.seq_len, "channels": list(schema.channels)},
        "schema_hash": schema.schema_hash,
    }
    if args.json:
        _print_json(summary)
        return 0
    out.print(f"{target}: follows the data contract", markup=False)
    out.print(f"windows     {summary['windows']} ({labelled} labelled) on {len(summary['hosts'])} hosts: {', '.join(summary['hosts'])}", markup=False)
    out.print(f"classes     {', '.join(summary['classes'])}", markup=False)
    out.print(f"features    {len(summary['features']['realistic'])} realistic, {len(summary['features']['oracle'])} oracle", markup=False)
    out.print(f"sequences   {schema.seq_len} steps x {len(schema.channels)} channels", markup=False)
    out.print(f"schema      {schema.schema_hash}", markup=False)
    return 0


def _cmd_models(args, settings: Settings) -> int:
    from ..core.hyper import MODELS, schema
    from ..trainer.models import IMPLEMENTATIONS

    rows = [{"model": m, "implemented": bool(IMPLEMENTATIONS.get(m)), "hyper": [p.describe() for p in schema(m)]} for m in MODELS]
    if args.json:
        _print_json(rows)
        return 0
    for row in rows:
        out.print(Text.assemble((row["model"], "bold"), "" if row["implemented"] else "  (not implemented)"))
        for p in row["hyper"]:
            bounds = f" [{'|'.join(p['choices'])}]" if p["choices"] else (f" [{p['low']:g}..{p['high']:g}]" if p["low"] is not None else "")
            out.print(f"  {p['name']:<22}{p['type']:<6}{p['default']!s:<10}{bounds}  {p['help']}", markup=False)
    return 0


def _cmd_evaluate(args, settings: Settings) -> int:
    import tempfile

    from ..artifacts.bundle import extract_bundle
    from ..artifacts.client import StoreClient
    from ..trainer.rescore import rescore
    from ..operator.views import metric_cell

    data = Path(args.data) if args.data else settings.data_dir
    with tempfile.TemporaryDirectory(prefix="cis490-evaluate-") as tmp:
        bundle = Path(args.artifact)
        if not bundle.is_file():
            with StoreClient(settings.store_url, settings.worker_token) as client:
                artifact_id = _artifact_id(client, args.artifact)
                bundle = client.download(artifact_id, Path(tmp) / "bundle.tar.zst").path
        checkpoint = extract_bundle(bundle, Path(tmp) / "checkpoint")
        result = rescore(checkpoint, data, n_resamples=args.n_resamples)
    if args.json:
        _print_json(result)
        return 0
    same = "the data it was trained on" if result["same_data"] else "different data (same schema)"
    out.print(f"{result['model']} / {result['mode']} / split {result['split_recipe']}: {result['n_test']} test windows of {same}", markup=False)
    for key, m in result["metrics"].items():
        recorded = result["recorded"].get(key)
        out.print(f"{key:<18}{metric_cell(m)}   recorded {metric_cell(recorded)}", markup=False)
    out.print(f"{'baseline acc.':<18}{metric_cell(result['baseline'].get('accuracy'))}", markup=False)
    return 0


def _artifact_id(client, key: str) -> str:
    """A full artifact id, or the one artifact in the store whose id starts with `key`."""
    from ..errors import ArtifactNotFound

    if len(key) == 64:
        return key
    found = [r.artifact_id for r in client.list() if r.artifact_id.startswith(key.lower())] if len(key) >= 6 else []
    if len(found) != 1:
        raise ArtifactNotFound(
            f"{key!r} names {'no' if not found else 'more than one'} artifact in the store; give a bundle path, a full id or a unique prefix of 6+ characters"
        )
    return found[0]


def _cmd_manifest_init(args, settings: Settings) -> int:
    from ..atomic import write_bytes
    from ..core.manifest import Manifest
    from ..core.starter import render, starter_document

    text = render(starter_document(args.name))
    Manifest.from_toml(text, source="the starter manifest")  # never hand out one that does not load
    if args.file == "-":
        sys.stdout.write(text)
        return 0
    path = Path(args.file)
    if path.is_dir():
        raise UsageError(f"{path} is a directory; name a file, e.g. {path / 'manifest.toml'}")
    if path.exists() and not args.force:
        raise UsageError(f"{path} already exists; pass --force to overwrite it, or name another file")
    try:
        write_bytes(path, text.encode())
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    out.print(f"wrote {path}: edit it, then `cis490-train manifest check {path}`", markup=False)
    return 0


def _cmd_manifest_check(args, settings: Settings) -> int:
    from ..errors import ManifestError
    from ..core.manifest import Manifest
    from ..core.plan import routing_summary

    reports, bad = [], 0
    for file in args.files:
        try:
            summary = routing_summary(Manifest.load(file))
        except ManifestError as exc:
            bad += 1
            reports.append({"file": file, "ok": False, "problems": exc.problems})
            if not args.json:
                print(_error_text(exc), file=sys.stderr)
            continue
        reports.append({"file": file, "ok": True, **summary})
        if not args.json:
            _print_check(file, summary)
    if args.json:
        _print_json(reports)
    return 2 if bad else 0


def _print_check(file: str, summary: dict) -> None:
    hosts = f", host policies for {', '.join(summary['hosts'])}" if summary["hosts"] else ""
    out.print(plain(f"{file}: valid; manifest {summary['name']!r}, {summary['jobs']} jobs{hosts}"))
    width = max((len(q["queue"]) for q in summary["queues"]), default=0) + 2
    for tier, n in summary["tiers"].items():
        out.print(plain(f"  tier {tier}: {n} job{'s' if n != 1 else ''}"))
        for q in summary["queues"]:
            if q["tier"] == tier:
                levels = ", ".join(map(str, q["broker_priorities"]))
                out.print(plain(f"    {q['queue']:<{width}}{q['jobs']:>4} job{'s' if q['jobs'] != 1 else ' '}  broker priority {levels}"))
    if summary["fallback_queues"]:
        out.print(plain(f"  prefer_cuda fallbacks: {', '.join(summary['fallback_queues'])}"))


def _cmd_manifest_diff(args, settings: Settings) -> int:
    from ..operator.enqueue import preview_manifest
    from ..core.manifest import Manifest

    preview = preview_manifest(Manifest.load(args.file), _registry(settings))
    if args.json:
        _print_json(preview.to_dict())
        return 0
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
    for line in lines:
        out.print(plain(line))
    return 0


def _diff_line(job) -> str:
    from ..core.plan import INSERT, LEAVE, REROUTE

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


def _cmd_export(args, settings: Settings) -> int:
    from ..operator.export import DEFAULT_NAMES, write
    from ..operator.views import leaderboard_rows

    records = _registry(settings).jobs()
    if args.manifest:
        records = [r for r in records if r.manifest == args.manifest]
    path = Path(args.output or DEFAULT_NAMES[args.format])
    if path.is_dir():
        raise UsageError(f"{path} is a directory; give -o a file name, e.g. {path / DEFAULT_NAMES[args.format]}")
    try:
        n = write(leaderboard_rows(records), path, args.format)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    out.print(f"wrote {n} row{'s' if n != 1 else ''} to {path}", markup=False)
    return 0


def _cmd_metrics_serve(args, settings: Settings) -> int:
    from ..operator.metrics import serve
    from ..registry import Registry

    def ready(url: str) -> None:
        print(f"serving fleet metrics on {url}", flush=True)

    try:
        serve(Registry(settings.broker_url), args.host, args.port, ready=ready)
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    return 0


def _cmd_flower(args, settings: Settings) -> NoReturn:
    """Flower, which can revoke tasks and shut workers down: on loopback unless told otherwise and
    never without basic auth. The credentials stay in FLOWER_BASIC_AUTH, which Flower reads
    itself, so they never reach a command line that ps shows."""
    import os

    users = [u for u in os.environ.get("FLOWER_BASIC_AUTH", "").split(",") if u.strip()]
    if not users:
        raise UsageError("FLOWER_BASIC_AUTH is not set: export FLOWER_BASIC_AUTH=user:password (several: user1:pw1,user2:pw2); Flower never runs without a password")
    if not all(user.partition(":")[0] and user.partition(":")[2] for user in users):
        raise UsageError("FLOWER_BASIC_AUTH must be user:password, several comma-separated (user1:pw1,user2:pw2)")
    for arg in args.flower_args:
        option = arg.split("=", 1)[0].replace("_", "-")
        if option == "--basic-auth":
            raise UsageError("--basic-auth would put the password on the command line, where ps shows it; set FLOWER_BASIC_AUTH instead")
        if option in ("--address", "--port"):
            raise UsageError(f"{option} goes before --: cis490-train flower {option} ...")
    address = args.address or os.environ.get("FLOWER_ADDRESS") or "127.0.0.1"
    port = args.port or os.environ.get("FLOWER_PORT") or "5555"
    if not (str(port).isdigit() and 0 < int(port) < 65536):
        raise UsageError(f"port {port!r} (--port or FLOWER_PORT): give a port from 1 to 65535")
    argv = [sys.executable, "-m", "celery", "-A", "cis490_train", "flower", f"--address={address}", f"--port={port}", *args.flower_args]
    print(plain(f"starting Flower on {address}:{port} (basic auth from FLOWER_BASIC_AUTH)"), flush=True)
    os.execv(argv[0], argv)  # this process becomes Flower: signals reach it directly


def _error_text(exc: Cis490Error) -> str:
    """`error: ...` with each line of the message through `plain`: messages quote names and values."""
    return "\n".join(plain(line) for line in f"error: {exc}".split("\n"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cis490-train", description="A training fleet on Celery and Redis.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func, help_: str, json_flag: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        if json_flag:
            p.add_argument("--json", action="store_true", help="machine-readable output")
        p.set_defaults(func=func)
        return p

    add("capability", _cmd_capability, "what this host can do (cores, RAM, CUDA, versions)")
    p = add("enqueue", _cmd_enqueue, "apply a manifest: queue new jobs, keep existing ones (idempotent)")
    p.add_argument("manifest")
    p = add("status", _cmd_status, "job counts and a table of jobs (running and failed first)")
    p.add_argument("--manifest", help="only the jobs of this manifest name")
    p.add_argument("--limit", type=int, default=50, help="rows to show (default 50)")
    p.add_argument("--all", action="store_true", help="show every job")
    p.add_argument("--watch", action="store_true", help="redraw the table with progress bars and ETAs until Ctrl-C")
    p.add_argument("--interval", type=float, metavar="S", help="with --watch: seconds between redraws (default 2)")
    p.add_argument("--until-done", action="store_true", help="with --watch: stop once no job is pending or running (exit 1 if one failed)")
    p = add("show", _cmd_show, "one job: spec, status, attempts, host, progress, error, artifact")
    p.add_argument("job", help="job id, unique id prefix or job name")
    p = add("explain", _cmd_explain, "why a pending job is not running: each live worker's reason")
    p.add_argument("job", help="job id, unique id prefix or job name")
    p = add("logs", _cmd_logs, "the trainer's output of a job's current or any past attempt, from any host", json_flag=False)
    p.add_argument("job", help="job id, unique id prefix or job name")
    p.add_argument("--attempt", type=int, metavar="N", help="this attempt (default: the current one)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until the attempt ends")
    p.add_argument("--progress", action="store_true", help="also show the progress lines, in words")
    p.add_argument("--raw", action="store_true", help="print the lines as the trainer wrote them, JSON included (control characters still escaped)")
    p = add("cancel", _cmd_cancel, "cancel pending or running jobs (a running trainer is stopped); operator credential", json_flag=False)
    p.add_argument("jobs", nargs="*", metavar="JOB")
    p.add_argument("--model", help="every unfinished job of this model")
    p = add("requeue", _cmd_requeue, "start jobs again from any state as a new attempt; operator credential", json_flag=False)
    p.add_argument("jobs", nargs="*", metavar="JOB")
    p.add_argument("--model", help="every job of this model (with --all-failed: the failed ones)")
    p.add_argument("--all-failed", action="store_true", help="every failed job")
    add("workers", _cmd_workers, "live workers with host, capability and subscribed queues")
    add("models", _cmd_models, "the nine models and their hyperparameters (name, type, default, range, help)")
    p = add("evaluate", _cmd_evaluate, "download a bundle, load it and score it again on a dataset (same split)")
    p.add_argument("artifact", help="artifact id (or a unique prefix), or a bundle.tar.zst path")
    p.add_argument("--data", help="dataset directory (default: CIS490_DATA_DIR)")
    p.add_argument("--n-resamples", type=int, default=1000)
    p = add("results", _cmd_results, "the leaderboard of completed jobs")
    p.add_argument("--manifest", help="only the jobs of this manifest name")
    p = add("run", _cmd_run, "everything on this machine: private Redis, store and worker; train a manifest end to end", json_flag=False)
    p.add_argument("manifest")
    p.add_argument("--workers", type=int, default=1, help="worker processes to start (default 1)")
    p.add_argument("--keep", action="store_true", help="keep the run's temporary directory (logs, Redis data)")

    p = add("acl", _cmd_acl, "write a Redis ACL file (hashed passwords) with the operator and worker users; their broker URLs go to stderr", json_flag=False)
    p.add_argument("-o", "--output", metavar="FILE", help="write the ACL file here, mode 0600 (default: stdout)")
    p.add_argument("--host", default="127.0.0.1", help="the Redis host the printed URLs name")
    p.add_argument("--port", type=int, default=6379)
    add("coordinator", _cmd_coordinator, "apply workers' requests to the registry and run the reaper (operator credential)", json_flag=False)

    store = sub.add_parser("store", help="the artifact store").add_subparsers(dest="store_command", required=True, metavar="COMMAND")
    serve = store.add_parser("serve", help="run the artifact store's HTTP service")
    serve.add_argument("--root", help="storage directory (default: CIS490_STORE_ROOT)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8490)
    serve.add_argument("--idle-timeout", type=float, metavar="S",
                       help="close a connection that sends no complete request headers for S seconds (default 60)")
    serve.add_argument("--max-connections", type=int, metavar="N",
                       help="close new connections while N are open (default 256)")
    serve.set_defaults(func=_cmd_store_serve)

    data = sub.add_parser("data", help="datasets").add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    synth = data.add_parser("synth", help="write the deterministic synthetic dataset")
    synth.add_argument("--out", help="directory (default: CIS490_DATA_DIR)")
    synth.add_argument("--small", action="store_true", help="the small preset used by the tests")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--hosts", help="comma-separated host names (the first is the default train host)")
    synth.add_argument("--windows", type=int, help="windows per host")
    synth.add_argument("--features", type=int, help="realistic summary features")
    synth.add_argument("--oracle-features", type=int, help="oracle-only summary features")
    synth.add_argument("--seq-len", type=int, help="time steps per window tensor")
    synth.add_argument("--channels", type=int, help="channels per time step")
    synth.set_defaults(func=_cmd_data_synth)
    check = data.add_parser("check", help="validate a dataset against the data contract")
    check.add_argument("dir", nargs="?", help="dataset directory (default: CIS490_DATA_DIR)")
    check.add_argument("--json", action="store_true")
    check.set_defaults(func=_cmd_data_check)

    manifest = sub.add_parser("manifest", help="write, check and preview manifests").add_subparsers(dest="manifest_command", required=True, metavar="COMMAND")
    init = manifest.add_parser("init", help="write a commented starter manifest that passes validation")
    init.add_argument("file", nargs="?", default="manifest.toml", help="where to write it (default manifest.toml; - for stdout)")
    init.add_argument("--name", default="my-fleet", help="the manifest's name (default my-fleet)")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.set_defaults(func=_cmd_manifest_init)
    mcheck = manifest.add_parser("check", help="validate manifests and show where their jobs would go; no Redis needed")
    mcheck.add_argument("files", nargs="+", metavar="FILE")
    mcheck.add_argument("--json", action="store_true", help="machine-readable output")
    mcheck.set_defaults(func=_cmd_manifest_check)
    diff = manifest.add_parser("diff", help="what an enqueue of FILE would do to the live registry, without doing it")
    diff.add_argument("file", metavar="FILE")
    diff.add_argument("--json", action="store_true", help="machine-readable output")
    diff.set_defaults(func=_cmd_manifest_diff)

    p = add("export", _cmd_export, "write the results table (completed jobs) as a Parquet or CSV file", json_flag=False)
    p.add_argument("--format", choices=("parquet", "csv"), default="parquet", help="file format (default parquet)")
    p.add_argument("-o", "--output", metavar="FILE", help="file to write (default results.parquet / results.csv)")
    p.add_argument("--manifest", help="only the jobs of this manifest name")

    metrics = sub.add_parser("metrics", help="Prometheus metrics of the fleet").add_subparsers(dest="metrics_command", required=True, metavar="COMMAND")
    mserve = metrics.add_parser("serve", help="serve the fleet's Prometheus metrics, read from Redis on each scrape")
    mserve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    mserve.add_argument("--port", type=int, default=9490, help="port (default 9490)")
    mserve.set_defaults(func=_cmd_metrics_serve)

    p = add("flower", _cmd_flower, "the Flower dashboard on loopback, behind the basic auth of FLOWER_BASIC_AUTH", json_flag=False)
    p.add_argument("--address", help="address to bind (default FLOWER_ADDRESS, else 127.0.0.1)")
    p.add_argument("--port", help="port (default FLOWER_PORT, else 5555)")
    p.add_argument("flower_args", nargs="*", metavar="-- FLOWER_ARGS", help="more Flower options, after --")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args, Settings.from_env())
    except Cis490Error as exc:
        print(_error_text(exc), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        _report_problems()
