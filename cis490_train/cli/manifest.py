"""Manifests and the host they run on: capability, enqueue, manifest init/check/diff."""

from __future__ import annotations

import sys
from pathlib import Path

from ..config import Settings
from ..errors import ManifestError, UsageError
from ..operator import details
from .common import Commands, emit, error_text, open_messages, open_registry, out, print_json, show


def _capability(args, settings: Settings) -> int:
    from ..core.capability import Capability

    cap = Capability.load(settings.capability_file, settings.host_id)
    return emit(args, cap.to_dict(), *details.capability_lines(cap))


def _enqueue(args, settings: Settings) -> int:
    from ..core.manifest import Manifest
    from ..operator.enqueue import apply_manifest

    manifest = Manifest.load(args.manifest)
    report = apply_manifest(manifest, open_registry(settings), open_messages(settings))
    return emit(args, report.to_dict(), *details.enqueue_lines(report))


def _init(args, settings: Settings) -> int:
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
    out.print(f"wrote {path}: edit it, then `cis490-train manifest check {path}`")
    return 0


def _check(args, settings: Settings) -> int:
    """Every file is checked, the bad ones each with their list of problems on stderr: exit 2 if any was bad."""
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
                print(error_text(exc), file=sys.stderr)
            continue
        reports.append({"file": file, "ok": True, **summary})
        if not args.json:
            show(details.check_lines(file, summary))
    if args.json:
        print_json(reports)
    return 2 if bad else 0


def _diff(args, settings: Settings) -> int:
    from ..core.manifest import Manifest
    from ..operator.enqueue import preview_manifest

    preview = preview_manifest(Manifest.load(args.file), open_registry(settings))
    return emit(args, preview.to_dict(), *details.diff_lines(preview))


def add_capability(commands: Commands) -> None:
    commands.add("capability", _capability, "what this host can do (cores, RAM, CUDA, versions)")


def add_enqueue(commands: Commands) -> None:
    p = commands.add("enqueue", _enqueue, "apply a manifest: queue new jobs, keep existing ones (idempotent)")
    p.add_argument("manifest")


def add_manifest(commands: Commands) -> None:
    manifest = commands.group("manifest", "write, check and preview manifests")
    init = manifest.add_parser("init", help="write a commented starter manifest that passes validation")
    init.add_argument("file", nargs="?", default="manifest.toml", help="where to write it (default manifest.toml; - for stdout)")
    init.add_argument("--name", default="my-fleet", help="the manifest's name (default my-fleet)")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.set_defaults(func=_init)
    check = manifest.add_parser("check", help="validate manifests and show where their jobs would go; no Redis needed")
    check.add_argument("files", nargs="+", metavar="FILE")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.set_defaults(func=_check)
    diff = manifest.add_parser("diff", help="what an enqueue of FILE would do to the live registry, without doing it")
    diff.add_argument("file", metavar="FILE")
    diff.add_argument("--json", action="store_true", help="machine-readable output")
    diff.set_defaults(func=_diff)
