"""Paths built from names that came from outside: always resolved, always checked inside their base."""

from __future__ import annotations

from pathlib import Path

from .errors import BadRequest


def inside(base: Path, name: str) -> Path:
    """`base / name`, refused unless it stays strictly inside `base` once links and `..` are resolved.

    An absolute or dotted name would otherwise replace or climb out of the base, and a clean-up
    of that path would delete someone else's files.
    """
    root = Path(base).resolve()
    path = (root / name).resolve()
    if path == root or not path.is_relative_to(root):
        raise BadRequest(f"{name!r} does not name a place inside {root}")
    return path
