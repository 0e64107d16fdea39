"""Reading an attempt's trainer output back from Redis: `cis490-train logs [-f]`, from any host.

The worker writes the stream (`worker.logship`). Entries are `{"line": text}`
for an output line, `{"lost": n}` where lines could not be kept, and a last
`{"end": outcome, "detail": why}` written when the attempt is over, which is
how `logs -f` knows to stop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from ..core.events import DETAIL, END, LINE, LOST, parse_event
from ..core.lifecycle import LEASED, Status
from ..core.text import progress_summary
from ..registry import Registry
from .views import plain

PAGE = 1000
END_GRACE_S = 5.0  # `logs -f`: after the attempt is over, wait this long for its end entry

Entry = tuple[str, dict[str, str]]


def render(fields: dict[str, str], *, progress: bool = False, raw: bool = False) -> str | None:
    """The text `logs` prints for an output entry: other output as it is, the trainer's protocol
    lines in words, progress lines only when asked for; None for what is not shown. Whatever the
    trainer wrote reaches the terminal through `plain` (tabs kept): `raw` skips the parsing of the
    protocol, not the escaping of control characters."""
    line = fields.get(LINE)
    if line is None:
        return None
    text = _words(line, progress=progress, raw=raw)
    return None if text is None else plain(text, keep="\t")


def _words(line: str, *, progress: bool, raw: bool) -> str | None:
    event = None if raw else parse_event(line)
    if event is None:
        return line
    kind = event.get("event")
    if kind == "progress":
        return f"progress: {progress_summary(event)}" if progress else None
    if kind == "start":
        threads = event.get("threads")
        return (
            f"start: {event.get('model')} / {event.get('mode')} / split {event.get('split_recipe')}, seed {event.get('seed')}, "
            f"{threads} thread{'s' if threads != 1 else ''}, pid {event.get('pid')}"
        )
    if kind == "done":
        return f"done: wrote {event.get('report')}"
    if kind == "error":
        return f"error: {event.get('error')} (exit code {event.get('exit_code')})"
    rest = ", ".join(f"{k} {v}" for k, v in event.items() if k != "event")
    return f"{kind}: {rest}" if rest else str(kind)


def note(fields: dict[str, str], attempt: int) -> str | None:
    """What `logs` says about the stream itself (lines lost, the attempt's end), or None."""
    if LOST in fields:
        raw = fields[LOST]
        if not (raw.isascii() and raw.isdigit()):
            return plain(f"[a note of lost lines that is not a count: {raw[:40]!r}]")  # the stream is worker-written
        n = int(raw)
        return f"[{n} line{'s' if n != 1 else ''} not kept here: Redis could not be written or the log was full]"
    if END in fields:
        detail = (fields.get(DETAIL) or "").splitlines()
        return plain(f"[attempt {attempt} ended: {fields[END]}{': ' + detail[0] if detail else ''}]")
    return None


def trimmed_note(trimmed: int, attempt: int) -> str:
    return f"[the first {trimmed} entries of attempt {attempt} were dropped: the log keeps the last CIS490_LOG_LINES]"


def empty_note(name: str, job_id: str, attempt: int, status: str, current: int) -> str:
    """What `logs` says of an attempt that printed nothing, and why."""
    return plain(f"no output recorded for attempt {attempt} of {name} ({job_id}): {why_empty(status, current, attempt)}")


def why_empty(status: str, current: int, attempt: int) -> str:
    """Why an attempt's stream holds nothing, from the job's status and current attempt."""
    if current == attempt and status == Status.PENDING:
        return "it has not started yet"
    if current == attempt and status in LEASED:
        return "the trainer has printed nothing yet"
    return "its log expired (CIS490_LOG_KEEP_S), was turned off (CIS490_LOG_LINES=0) or it never started"


def attempt_live(registry: Registry, job_id: str, attempt: int) -> bool:
    """Whether the job is still on this attempt, waiting for or holding a worker."""
    status, current = registry.status_of(job_id)
    return current == attempt and (status == Status.PENDING or status in LEASED)


def read(
    registry: Registry,
    job_id: str,
    attempt: int,
    *,
    follow: bool = False,
    block_ms: int = 1000,
    grace_s: float = END_GRACE_S,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[Entry]:
    """The attempt's entries in order. With `follow` and while the attempt is live, wait for more
    until its end entry, or for `grace_s` after the registry says it is over (a worker that died
    writes no end entry)."""
    last = "0-0"
    live = follow and attempt_live(registry, job_id, attempt)
    over_since: float | None = None
    while True:
        batch = registry.log_entries(job_id, attempt, after=last, count=PAGE, block_ms=block_ms if live else None)
        for entry_id, fields in batch:
            last = entry_id
            yield entry_id, fields
            if END in fields:
                return
        if batch:
            continue
        if not live:
            return
        if over_since is None:
            if not attempt_live(registry, job_id, attempt):
                over_since = clock()
        elif clock() - over_since >= grace_s:
            return
