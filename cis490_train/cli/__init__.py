"""The `cis490-train` command: a thin shell that parses, calls, prints and picks exit codes.

User errors print one line (or the list of manifest problems) and exit
non-zero without a traceback; exit codes come from the error class.
"""

from __future__ import annotations

import argparse
import sys

from ..config import Settings
from ..errors import Cis490Error
from . import data, fleet, jobs, manifest
from .common import Commands, error_text, report_problems

# In the order `cis490-train --help` lists them.
_COMMANDS = (
    manifest.add_capability,
    manifest.add_enqueue,
    jobs.add_status,
    jobs.add_show,
    jobs.add_explain,
    jobs.add_logs,
    jobs.add_cancel,
    jobs.add_requeue,
    jobs.add_workers,
    data.add_models,
    data.add_evaluate,
    data.add_results,
    fleet.add_run,
    fleet.add_acl,
    fleet.add_coordinator,
    fleet.add_store,
    data.add_data,
    manifest.add_manifest,
    data.add_export,
    fleet.add_metrics,
    fleet.add_flower,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cis490-train", description="A training fleet on Celery and Redis.")
    commands = Commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    for add in _COMMANDS:
        add(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Option converters raise UsageError while parsing, so parsing is inside the error mapping too."""
    try:
        args = build_parser().parse_args(argv)
        return args.func(args, Settings.from_env())
    except Cis490Error as exc:
        print(error_text(exc), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        report_problems()
