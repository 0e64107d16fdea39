"""The trainer's stdout protocol as the worker reads it, and the entries of an attempt's log stream.

One codec for each: the worker writes both (`worker.logship`), `logs` reads
them back (`operator.joblog`).
"""

from __future__ import annotations

import json
from typing import Any

# Fields of a log stream entry: an output line, a count of lines not kept, and the attempt's end.
LINE, LOST, END, DETAIL = "line", "lost", "end", "detail"


def parse_event(line: str) -> dict[str, Any] | None:
    """The trainer's JSON protocol object on this line, or None for any other output."""
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return event if isinstance(event, dict) and "event" in event else None
