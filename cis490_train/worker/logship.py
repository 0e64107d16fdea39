"""Shipping an attempt's trainer output to its Redis stream, so `cis490-train logs` reads it from any host.

Each attempt has a capped stream, `cis490:log:<id>:<attempt>`, beside its
`train.log` in the work directory. A `LogShipper` appends to it from a thread of
its own, one function call per batch (`functions.LOG_APPEND`: a lone `line`
field holds many lines joined by newlines, one stream entry each, so the
shipping thread stays off the GIL the trainer's output reader needs) over its
own connection, so neither a chatty trainer nor the heartbeat ever waits on
Redis, and a Redis outage costs log lines (counted, and said so in the
stream), never the attempt.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import redis

from ..core.events import DETAIL, END, LINE, LOST
from ..registry import functions, log_key

log = logging.getLogger("cis490.logship")

FLUSH_S = 0.2  # a line reaches Redis this long after the trainer printed it, at most (when Redis is well)
BATCH_LINES = 1000  # or sooner, once this many wait
RETRY_S = 1.0  # after a failed write, wait this long before the next try
CLOSE_WAIT_S = 5.0  # the attempt waits at most this long for its last lines to be written
PROGRESS_EVERY_S = 10.0  # a progress line that says nothing new is kept once per this long


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
