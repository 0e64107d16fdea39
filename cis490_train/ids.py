"""Job ids, attempt numbers and task ids: the one place that says what a valid one is.

Anything that arrives from outside (a Celery message, a request to the
coordinator, a record in Redis) is checked here before it names a key, a path
or a transition: a crafted message must not be able to name a directory.
"""

from __future__ import annotations

import re

from .errors import BadRequest

JOB_ID = re.compile(r"[0-9a-f]{16}")
HOST = re.compile(r"[A-Za-z0-9._-]{0,253}")
MAX_ATTEMPT = 1_000_000


def check_job_id(value: object) -> str:
    if not isinstance(value, str) or not JOB_ID.fullmatch(value):
        raise BadRequest(f"job id {_show(value)} is not 16 lowercase hex digits")
    return value


def check_attempt(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ATTEMPT:
        raise BadRequest(f"attempt {_show(value)} is not an integer in 1..{MAX_ATTEMPT}")
    return value


def task_id(job_id: str, attempt: int) -> str:
    """Each attempt is its own Celery task: an old task id meets stale results and permanent revokes."""
    return f"{job_id}:{attempt}"


def parse_task_id(value: object) -> tuple[str, int]:
    """(job id, attempt) of one of the fleet's task ids; BadRequest for anything else."""
    if not isinstance(value, str):
        raise BadRequest(f"task id {_show(value)} is not a string")
    job_id, sep, attempt = value.partition(":")
    if not sep or not attempt.isascii() or not attempt.isdigit():
        raise BadRequest(f"task id {_show(value)} is not <job id>:<attempt>")
    return check_job_id(job_id), check_attempt(int(attempt))


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
