"""Every Redis key the fleet keeps, in one place, and who writes it.

`cis490:op:*` is written only by operators (enqueue, cancel, requeue);
`cis490:job:*`, the indexes and the counters only by the coordinator; workers
write their own records, their attempts' log streams and their requests.
`acl.py` turns this into the worker user's permissions.
"""

from __future__ import annotations

PREFIX = "cis490:"
JOBS = PREFIX + "op:jobs"  # every job id
QUEUES = PREFIX + "op:queues"  # class queue -> its constraints (JSON)
HOSTS = PREFIX + "op:hosts"  # host -> its policy (JSON)
AUDIT = PREFIX + "op:audit"  # operators' cancels and requeues, newest first
WORKERS = PREFIX + "workers"  # names of live workers
LEASES = PREFIX + "leases"  # job id -> last heartbeat, for every claimed or running job
UNSENT = PREFIX + "unsent"  # job id -> when its current attempt became due to be sent
FALLBACKS = PREFIX + "fallbacks"  # prefer_cuda job id -> when it may also go to the CPU tier
# Held by the coordinator that runs the reaper (only one acts at a time); written by no worker.
REAPER = PREFIX + "coordinator"
# Fleet counters (a hash): the reaper's recoveries by kind, the bundles committed, and the
# exceptions the coordinator's loops survived (`errors:<loop>`).
STATS = PREFIX + "stats"
# kombu's Redis transport keeps each taken, not yet acknowledged message here (late ack).
KOMBU_UNACKED = "unacked"
KOMBU_UNACKED_INDEX = "unacked_index"
AUDIT_KEEP = 10_000


def state_key(job_id: str) -> str:
    return f"{PREFIX}job:{job_id}"


def attempts_key(job_id: str) -> str:
    return f"{PREFIX}job:{job_id}:attempts"


def spec_key(job_id: str) -> str:
    return f"{PREFIX}op:spec:{job_id}"


def worker_key(name: str) -> str:
    return f"{PREFIX}worker:{name}"


def log_key(job_id: str, attempt: int) -> str:
    """The stream of one attempt's trainer output: the one kind of job data a worker writes itself."""
    return f"{PREFIX}log:{job_id}:{attempt}"
