"""What the command modules share, written once: the console, the registry and message factories,
JSON output, the option converters and the `--manifest` filter."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable
from typing import Any

from rich.console import Console, RenderableType

from ..config import Settings
from ..errors import Cis490Error, UsageError
from ..operator.views import plain

# Piped output (CI logs, `| less`) gets a width that fits the results table instead of 80 columns.
# No markup or emoji codes: text from the registry is printed as it is, never interpreted.
out = Console(highlight=False, markup=False, emoji=False, width=None if sys.stdout.isatty() else 160)

_opened: list = []


def open_registry(settings: Settings):
    """The registry, pinged: a command that needs Redis says at once when it cannot reach it."""
    from ..registry import Registry

    opened = Registry(settings.broker_url)
    opened.ping()
    _opened.append(opened)
    return opened


def report_problems() -> None:
    """Each record a command could not read and left out, once, on stderr: the output stays whole."""
    seen = set()
    for opened in _opened:
        for problem in opened.problems:
            if str(problem) not in seen:
                seen.add(str(problem))
                print(f"warning: skipped {problem}", file=sys.stderr)


def open_messages(settings: Settings):
    from ..broker.messages import Messages

    return Messages.from_settings(settings)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


def show(lines: Iterable[RenderableType]) -> None:
    for line in lines:
        out.print(line)


def emit(args: argparse.Namespace, data: Any, *view: RenderableType) -> int:
    """What a command answers: `data` as JSON with `--json`, else the view for people."""
    if args.json:
        print_json(data)
    else:
        show(view)
    return 0


def error_text(exc: Cis490Error) -> str:
    """`error: ...` with each line of the message through `plain`: messages quote names and values."""
    return "\n".join(plain(line) for line in f"error: {exc}".split("\n"))


def above_zero(kind: type[int] | type[float], option: str, unit: str, hint: str) -> Callable[[str], int | float]:
    """An option's converter that refuses zero and below as a UsageError, in the command's own words."""

    def convert(text: str) -> int | float:
        value = kind(text)
        if not value > 0:
            raise UsageError(f"{option} {value:g}: give a number of {unit} above 0 ({hint})")
        return value

    convert.__name__ = kind.__name__  # argparse names it in "invalid int value"
    return convert


def add_manifest_filter(p: argparse.ArgumentParser) -> None:
    p.add_argument("--manifest", help="only the jobs of this manifest name")


class Commands:
    """The top-level subcommands, which each command module adds its own to."""

    def __init__(self, sub: argparse._SubParsersAction):
        self.sub = sub

    def add(self, name: str, func: Callable, help_: str, json_flag: bool = True) -> argparse.ArgumentParser:
        p = self.sub.add_parser(name, help=help_, description=help_)
        if json_flag:
            p.add_argument("--json", action="store_true", help="machine-readable output")
        p.set_defaults(func=func)
        return p

    def group(self, name: str, help_: str) -> argparse._SubParsersAction:
        """A command with subcommands of its own (`data synth`, `store serve`)."""
        return self.sub.add_parser(name, help=help_).add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND")
