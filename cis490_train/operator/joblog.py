"""An attempt's trainer output in Redis, so `cis490-train logs` can read it from any host.

Each attempt has a capped stream, `cis490:log:<id>:<attempt>`, beside its
`train.log` in the work directory. A `LogShipper` appends to it from a thread of
its own, one function call per batch (`functions.LOG_APPEND`: a lone `line`
field holds many lines joined by newlines, one stream entry each, so the
shipping thread stays off the GIL the trainer's output reader needs) over its
own connection, so neither a chatty trainer nor the heartbeat ever waits on
Redis, and a Redis outage costs log lines (counted, and said so in the
stream), never the attempt.

Entries are `{"line": text}` for an output line, `{"lost": n}` where lines could
not be kept, and a last `{"end": outcome, "detail": why}` written when the
attempt is over, which is how `logs -f` knows to stop.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import redis

from ..registry import functions
from ..core.lifecycle import LEASED, Status
from ..registry import Registry, log_key
from ..core.text import progress_summary
from .views import plain

log = logging.getLogger("cis490.joblog")

LINE, LOST, END, DETAIL = "line", "lost", "end", "detail"
FLUSH_S = 0.2  # a line reaches Redis this long after the trainer printed it, at most (when Redis is well)
BATCH_LINES = 1000  # or sooner, once this many wait
RETRY_S = 1.0  # after a failed write, wait this long before the next try
CLOSE_WAIT_S = 5.0  # the attempt waits at most this long for its last lines to be written
PROGRESS_EVERY_S = 10.0  # a progress line that says nothing new is kept once per this long
PAGE = 1000
END_GRACE_S = 5.0  # `logs -f`: after the attempt is over, wait this long for its end entry

Entry = tuple[str, dict[str, str]]


def parse_event(line: str) -> dict[str, Any] | None:
    """The trainer's JSON protocol object on this line, or None for any other output."""
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) and "event" in event else None


class LogShipper:
    """Appends one attempt's output lines to its Redis stream, capped at `max_lines` (approximately)
    and expiring `keep_s` after its last line.

    `add` only appends to a deque (thread-safe on its own); the shipping thread alone takes from it,
    trims it to the cap and counts what it dropped. Progress lines are thinned: one is kept when the
    phase, the epoch or the validation score changes, and otherwise once per PROGRESS_EVERY_S (the
    trainer repeats its state every second).
    """

    def __init__(
        self,
        url: str,
        job_id: str,
        attempt: int,
        *,
        max_lines: int,
        keep_s: float,
        flush_s: float = FLUSH_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.key = log_key(job_id, attempt)
        self.max_lines = max(1, max_lines)
        self.keep_s = max(1, int(keep_s))
        self.flush_s = flush_s
        self.clock = clock
        self.client = redis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=2, socket_timeout=5)
        self._pending: deque[str | dict[str, str]] = deque()  # a line, or the end entry
        self._lost = 0
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._failing = False
        self._progress_key: tuple | None = None
        self._progress_at = float("-inf")
        self._thread = threading.Thread(target=self._run, name="cis490-log-shipper", daemon=True)

    def start(self) -> LogShipper:
        self._thread.start()
        return self

    @property
    def failing(self) -> bool:
        """Whether the last write to Redis failed (its lines wait for the next try)."""
        return self._failing

    def add(self, line: str, event: dict[str, Any] | None = None) -> None:
        """Queue one output line (`event`: its parsed protocol object, if any). Never blocks on Redis."""
        if event is not None and event.get("event") == "progress" and not self._keep_progress(event):
            return
        self._pending.append(line)
        if len(self._pending) >= BATCH_LINES and not self._wake.is_set():
            self._wake.set()

    def close(self, outcome: str, detail: str = "") -> None:
        """Write what is queued and the end entry; give up after CLOSE_WAIT_S."""
        self._pending.append({END: outcome, DETAIL: detail})
        self._closing.set()
        self._wake.set()
        self._thread.join(timeout=CLOSE_WAIT_S)
        if self._thread.is_alive():
            log.warning("log %s: the last lines were not written within %.0fs", self.key, CLOSE_WAIT_S)
        self.client.close()

    def _keep_progress(self, event: dict[str, Any]) -> bool:
        key = (event.get("phase"), event.get("epoch"), event.get("metric"))
        now = self.clock()
        if key == self._progress_key and now - self._progress_at < PROGRESS_EVERY_S:
            return False
        self._progress_key, self._progress_at = key, now
        return True

    def _run(self) -> None:
        while True:
            closing = self._closing.is_set()
            if not closing:
                self._wake.wait(self.flush_s)
                self._wake.clear()
            ok = self._flush()
            if closing or (self._closing.is_set() and not ok):
                return
            if not ok:
                self._closing.wait(RETRY_S)

    def _take(self) -> list[str | dict[str, str]]:
        """Everything queued, oldest first, less what is over the cap (counted as lost)."""
        batch = [self._pending.popleft() for _ in range(len(self._pending))]
        over = len(batch) - self.max_lines
        if over > 0:
            self._lost += over
            batch = batch[over:]
        return batch

    def _flush(self) -> bool:
        batch = self._take()
        if not batch and not self._lost:
            return True
        args: list[str | int] = [self.max_lines, self.keep_s]
        if self._lost:
            args += [1, LOST, self._lost]
        lines: list[str] = []
        for item in batch + [{}]:
            if isinstance(item, str):
                lines.append(item)
                continue
            if lines:
                args += [1, LINE, "\n".join(lines)]
                lines = []
            if item:
                args.append(len(item))
                for pair in item.items():
                    args.extend(pair)
        try:
            functions.call(self.client, functions.LOG_APPEND, [self.key], args)
        except redis.RedisError as exc:
            self._pending.extendleft(reversed(batch))
            if not self._failing:
                log.warning("log %s: cannot write to Redis (%s); lines wait, the attempt carries on", self.key, exc)
                self._failing = True
            return False
        self._lost = 0
        if self._failing:
            log.info("log %s: writing to Redis again", self.key)
            self._failing = False
        return True


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
