"""Reading an attempt's output stream (`logs`); workers append to it through `functions.LOG_APPEND`."""

from __future__ import annotations

from .connection import Connection
from .keys import log_key


class Logs(Connection):
    def log_entries(
        self, job_id: str, attempt: int, after: str = "0-0", count: int = 1000, block_ms: int | None = None
    ) -> list[tuple[str, dict[str, str]]]:
        """Up to `count` entries of an attempt's output stream after the entry id `after`; with
        `block_ms`, wait up to that long for one to arrive."""
        key = log_key(job_id, attempt)
        with self.guard():
            if block_ms is None:
                return list(self.r.xrange(key, min=f"({after}", max="+", count=count))
            got = self.r.xread({key: after}, count=count, block=block_ms)
        if isinstance(got, dict):  # RESP3 replies map stream -> [entries]
            return [entry for batches in got.values() for batch in batches for entry in batch]
        return [entry for _, entries in got or () for entry in entries]

    def log_trimmed(self, job_id: str, attempt: int) -> int:
        """How many entries the attempt's capped stream has dropped from its head."""
        key = log_key(job_id, attempt)
        with self.guard():
            if not self.r.exists(key):
                return 0
            info = self.r.xinfo_stream(key)
        return max(0, int(info.get("entries-added") or 0) - int(info.get("length") or 0))
