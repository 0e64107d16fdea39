"""The job registry in Redis, in the parts of what it owns.

`keys` names every key; `records` parses what is read back; `connection` holds
the client, its one retry policy and the transition machinery; `jobs` (apply,
transitions, reads), `recovery` (what the reaper repairs), `fleet` (class
queues, host policies, workers), `stats` (counters and gauges) and `logs`
(attempts' output) add what each owns; `functions` is the server-side code.
"""

from __future__ import annotations

from .fleet import Fleet
from .keys import REAPER, log_key
from .logs import Logs
from .records import ApplyOutcome, JobRecord, WorkerInfo, clean_result, spec_digest
from .recovery import Recovery
from .stats import LOOP_ERRORS, RECOVERIES, RESENT, UPLOAD_BYTES, UPLOADS, Stats

__all__ = [
    "LOOP_ERRORS",
    "REAPER",
    "RECOVERIES",
    "RESENT",
    "UPLOADS",
    "UPLOAD_BYTES",
    "ApplyOutcome",
    "JobRecord",
    "Registry",
    "WorkerInfo",
    "clean_result",
    "log_key",
    "spec_digest",
]


class Registry(Recovery, Fleet, Stats, Logs):
    """The registry's client: jobs, recovery, fleet, counters and logs over one connection."""
