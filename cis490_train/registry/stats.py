"""Fleet counters and gauges: what the metrics report besides the jobs themselves."""

from __future__ import annotations

from collections.abc import Iterable

from ..core import lifecycle
from ..errors import BadRecord, Cis490Error
from . import functions
from .connection import Connection, log
from .keys import JOBS, LEASES, PREFIX, STATS

# The reaper's recoveries by kind, the bundles committed, the exceptions a loop survived (`errors:<loop>`).
REQUEUED, RELEASED, RESENT, FALLBACK, LOST = "requeued", "released", "resent", "fallback", "lost"
RECOVERIES = (REQUEUED, RELEASED, RESENT, FALLBACK, LOST)
UPLOADS, UPLOAD_BYTES = "uploads", "upload_bytes"
LOOP_ERRORS = "errors:"


class Stats(Connection):
    def count(self, name: str, by: int = 1) -> None:
        """Add to a fleet counter. Best effort: a monitoring counter never fails an attempt or a loop."""
        try:
            with self.guard():
                self.r.hincrby(STATS, name, int(by))
        except Cis490Error as exc:
            log.warning("counter %s not updated: %s", name, exc)

    def stats(self) -> dict[str, int]:
        """The fleet counters; a value that is not an integer is reported and left out."""
        with self.guard():
            raw = self.r.hgetall(STATS)
        stats = {}
        for name, value in raw.items():
            if value.isascii() and value.lstrip("-").isdigit():
                stats[name] = int(value)
            else:
                self.report(BadRecord(f"{STATS}[{name}]", f"{value[:40]!r} is not an integer"))
        return stats

    def status_counts(self) -> dict[str, int]:
        """Jobs per status (the known ones, 0 where none), counted in one function call."""
        flat = self.fcall(functions.STATUS_COUNTS, [], [JOBS, f"{PREFIX}job:"], read_only=True)
        counts = dict.fromkeys(lifecycle.Status, 0)
        for status, n in zip(flat[::2], flat[1::2]):
            if status in counts:
                counts[status] = int(n)
            else:
                self.report(BadRecord(f"{PREFIX}job:*", f"{int(n)} record(s) with the unknown status {status[:40]!r}"))
        return counts

    def queue_depths(self, queues: Iterable[str], priority_steps: Iterable[int], sep: str) -> dict[str, int]:
        """Messages waiting in each queue: kombu's Redis transport keeps one list per priority step
        (`queue` for the first, `queue<sep><step>` for the others); their lengths are summed."""
        queues, steps = list(queues), sorted(set(priority_steps))
        with self.guard():
            pipe = self.r.pipeline(transaction=False)
            for queue in queues:
                for step in steps:
                    pipe.llen(f"{queue}{sep}{step}" if step else queue)
            lengths = pipe.execute() if queues else []
        n = len(steps)
        return {queue: sum(lengths[i * n : (i + 1) * n]) for i, queue in enumerate(queues)}

    def lease_summary(self) -> tuple[int, float | None]:
        """How many jobs hold a lease (claimed or running), and the oldest last heartbeat among them."""
        with self.guard():
            pipe = self.r.pipeline(transaction=False)
            pipe.zcard(LEASES)
            pipe.zrange(LEASES, 0, 0, withscores=True)
            count, oldest = pipe.execute()
        return int(count), (float(oldest[0][1]) if oldest else None)
