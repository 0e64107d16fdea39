"""Redis ACL users for a deployed fleet: `operator` may do everything the fleet does; `worker` may
run jobs but only read what operators write (job specs, queue classes, host policies, the audit list).

Redis has no deny patterns, so the operator-only keys live under their own prefix, `cis490:op:`,
which the worker user may read (`%R~`) but not write: enqueue, cancel and requeue with a worker
credential answer NOPERM.
"""

from __future__ import annotations

import secrets
from urllib.parse import quote

OPERATOR = "operator"
WORKER = "worker"

# What a Celery worker touches on a Redis broker, plus the fleet's worker-writable state.
WORKER_KEYS = (
    "~cpu*",  # class queues (and their priority sub-lists)
    "~cuda*",
    "~celery*",  # result backend (PROGRESS states)
    "~_kombu.*",  # exchange bindings
    "~unacked*",  # late-ack bookkeeping
    "~*pidbox*",  # control commands and their replies
    "~cis490:job:*",  # job state and attempt records
    "~cis490:worker:*",
    "~cis490:workers",
    "~cis490:leases",
    "~cis490:fallbacks",
    "~cis490:unsent",
    "~cis490:reaper",
    "~cis490:stats",  # counters: the reaper's recoveries, uploaded bytes
    "%R~cis490:op:*",  # specs, queue classes, host policies, audit: read only
)


def render_acl(operator_password: str, worker_password: str) -> str:
    """An ACL file (`aclfile` in redis.conf): the default user off, the two roles on."""
    for name, password in ((OPERATOR, operator_password), (WORKER, worker_password)):
        if len(password) < 16 or any(c.isspace() for c in password):
            raise ValueError(f"the {name} password must be at least 16 characters without spaces")
    return "\n".join(
        [
            "user default off",
            f"user {OPERATOR} on >{operator_password} ~* &* +@all -@dangerous +info",
            f"user {WORKER} on >{worker_password} resetkeys {' '.join(WORKER_KEYS)} &* +@all -@dangerous +info",
            "",
        ]
    )


def broker_url(user: str, password: str, host: str = "127.0.0.1", port: int = 6379, db: int = 0) -> str:
    return f"redis://{quote(user)}:{quote(password, safe='')}@{host}:{port}/{db}"


def new_password() -> str:
    return secrets.token_urlsafe(24)
