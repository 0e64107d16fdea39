"""Redis ACL users for a deployed fleet, and what each may do.

`operator` may do everything the fleet does (enqueue, cancel, requeue, Flower,
`celery inspect`/`control`, the coordinator). `worker` is the credential of one
host: it may take messages from the class queues, report progress to Flower,
ask the coordinator to change the jobs it holds and append their logs, and read
the registry. It may not write a job's record, the operator-only keys under
`cis490:op:`, the reaper's lock or the counters; it may not read the requests
other hosts send (they carry claim secrets); it may not run code in Redis
(`EVAL`, `SCRIPT`, `FUNCTION` are denied; only the fleet's functions may be
called); and it may not send Celery remote-control commands, which travel on the
`celery.pidbox` channel: a selector lets it publish only Celery's event
channels.

Redis has no deny patterns, so what a worker may read is listed key by key.
The ACL file keeps only the passwords' sha256, never the passwords. The users
need Redis 7.0 or newer (functions, ACL selectors); a private Redis older than
that refuses the file (`embedded.RedisServer`).
"""

from __future__ import annotations

import hashlib
import secrets
from urllib.parse import quote

OPERATOR = "operator"
WORKER = "worker"

# What a Celery worker touches on a Redis broker, plus what the fleet lets a worker write itself.
WORKER_WRITES = (
    "~cpu*",  # class queues (and their priority sub-lists)
    "~cuda*",
    "~celery*",  # result backend (PROGRESS states)
    "~_kombu.*",  # exchange bindings
    "~unacked*",  # late-ack bookkeeping
    "~*pidbox*",  # its control queue and the replies to an operator's `inspect`
    "~cis490:worker:*",  # its own record
    "~cis490:workers",
    "~cis490:log:*",  # the output of the attempts it runs
    "~cis490:reply:*",  # the coordinator's answers
    "%W~cis490:requests",  # what it asks the coordinator: write only, they carry claim secrets
)
WORKER_READS = (
    "%R~cis490:job:*",  # job state and attempt records: written by the coordinator
    "%R~cis490:op:*",  # specs, queue classes, host policies, audit: written by operators
    "%R~cis490:leases",
    "%R~cis490:stats",
)
# Celery's events (`celeryev`: heartbeats, task progress) are the one channel a worker publishes on.
WORKER_COMMANDS = "+@all -@dangerous -@scripting +fcall +fcall_ro +info -publish -spublish (+publish resetchannels &/*.celeryev/*)"


def password_hash(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


def render_acl(operator_password: str, worker_password: str) -> str:
    """An ACL file (`aclfile` in redis.conf): the default user off, the two roles on."""
    for name, password in ((OPERATOR, operator_password), (WORKER, worker_password)):
        if len(password) < 16 or any(c.isspace() for c in password):
            raise ValueError(f"the {name} password must be at least 16 characters without spaces")
    keys = " ".join(WORKER_WRITES + WORKER_READS)
    return "\n".join(
        [
            "user default off",
            f"user {OPERATOR} on #{password_hash(operator_password)} ~* &* +@all -@dangerous +info",
            f"user {WORKER} on #{password_hash(worker_password)} resetkeys {keys} resetchannels &* {WORKER_COMMANDS}",
            "",
        ]
    )


def broker_url(user: str, password: str, host: str = "127.0.0.1", port: int = 6379, db: int = 0) -> str:
    return f"redis://{quote(user)}:{quote(password, safe='')}@{host}:{port}/{db}"


def new_password() -> str:
    return secrets.token_urlsafe(24)
