"""The fleet's server-side code: Lua scripts, loaded into Redis as one function library.

Each script is a plain Lua file under `lua/` (KEYS and ARGV, as `EVAL` takes
them); the library text wraps every one in a `redis.register_function`. On
Redis 7+ operators and the coordinator load the library (`FUNCTION LOAD
REPLACE`) and the worker user may only call it (`FCALL`): `EVAL`, `SCRIPT` and
`FUNCTION` are denied to workers, so a worker credential cannot run code of its
own inside Redis. A function runs with the caller's key permissions, so calling
one grants nothing the caller could not do command by command.

Redis 6.2 has no functions (nor the ACL users that need them): there the same
scripts run with `EVALSHA`, found out once per connection pool.

The library also carries, as functions, the few Lua scripts kombu's Redis
transport and redis-py's lock would send with `EVALSHA` (`broker` routes them
here), taken from the installed packages and named by their sha1: a worker
then needs no scripting at all.

The library name carries a version: change what a function does and bump it,
so a fleet mixing old and new hosts never calls code it does not expect.
"""

from __future__ import annotations

import hashlib
import weakref
from importlib import resources
from typing import Any

import redis
from kombu.transport import redis as kombu_redis
from redis.commands.core import Script
from redis.lock import Lock

from ..errors import Cis490Error, PermissionDenied

LIBRARY = "cis490_1"


def _read(stem: str) -> str:
    return resources.files(__package__).joinpath("lua", f"{stem}.lua").read_text(encoding="utf-8")


# The fleet's scripts by function name; what each does is said at the top of its file.
_STEMS = ("ping", "lead", "release", "create", "mark_sent", "status_counts", "log_append")
SCRIPTS = {f"{LIBRARY}_{stem}": _read(stem) for stem in _STEMS}
PING, LEAD, RELEASE, CREATE, MARK_SENT, STATUS_COUNTS, LOG_APPEND = SCRIPTS
# Functions that only read: callable with FCALL_RO, and by users that may not write.
READ_ONLY = frozenset({PING, STATUS_COUNTS})

# The scripts of the libraries under Celery that a worker runs: the mutex around kombu's restore of
# unacknowledged messages (redis-py's lock) and kombu's binding expiry for expiring queues (pidbox).
LIBRARY_SCRIPTS = (
    Lock.LUA_RELEASE_SCRIPT,
    Lock.LUA_EXTEND_SCRIPT,
    Lock.LUA_REACQUIRE_SCRIPT,
    kombu_redis.REFRESH_BINDING,
    kombu_redis.SWEEP_BINDINGS,
)


def script_function(script: str) -> str:
    """The function that runs `script`; Cis490Error for a script the library does not carry."""
    name = f"{LIBRARY}_lua_{hashlib.sha1(script.encode()).hexdigest()[:16]}"
    if script not in LIBRARY_SCRIPTS:
        raise Cis490Error(
            f"a library under Celery asked Redis to run a script the fleet's functions do not carry ({name}); "
            "the coordinator and this host must have the same kombu and redis-py versions"
        )
    return name


SCRIPTS.update({script_function(body): body for body in LIBRARY_SCRIPTS})


def _register(name: str, body: str) -> str:
    flags = "{'no-writes'}" if name in READ_ONLY else "{}"
    return f"redis.register_function{{\n  function_name = '{name}',\n  flags = {flags},\n  callback = function(KEYS, ARGV)\n{body}\nend\n}}\n"


SOURCE = f"#!lua name={LIBRARY}\n\n" + "\n".join(_register(name, body) for name, body in SCRIPTS.items())

# The same scripts for EVALSHA (bytes: no client's encoder needed); a pipeline loads them before it runs.
_EVAL = {name: Script(None, body.encode()) for name, body in SCRIPTS.items()}
_has_functions: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def has_functions(client: Any) -> bool:
    """Whether the client's Redis has functions (7.0+), asked once per connection pool."""
    pool = client.connection_pool
    if pool not in _has_functions:
        try:
            redis.Redis(connection_pool=pool).fcall_ro(PING, 0)
            _has_functions[pool] = True
        except redis.ResponseError as exc:
            _has_functions[pool] = "unknown command" not in str(exc).lower()
    return _has_functions[pool]


def load(client: redis.Redis) -> None:
    """Load (or replace) the library; needs a user allowed `FUNCTION LOAD` (operator). Without
    functions there is nothing to load: each script goes to Redis on its first `EVALSHA`."""
    if not has_functions(client):
        return
    try:
        client.function_load(SOURCE, replace=True)
    except redis.exceptions.NoPermissionError as exc:
        raise PermissionDenied(f"NOPERM: this Redis user may not load the fleet's functions; start the coordinator or enqueue once with the operator user ({exc})") from None


def loaded(client: redis.Redis) -> bool:
    if not has_functions(client):
        return True
    try:
        client.fcall_ro(PING, 0)
    except redis.ResponseError as exc:
        if missing(exc):
            return False
        raise
    return True


def missing(exc: Exception) -> bool:
    """Whether a Redis error says the library is not loaded (a fresh or flushed Redis)."""
    return isinstance(exc, redis.ResponseError) and "function not found" in str(exc).lower()


def call(client: Any, name: str, keys: list[str], args: list[Any], read_only: bool = False) -> Any:
    """FCALL (or FCALL_RO) on a client or a pipeline; EVALSHA where Redis has no functions."""
    if not has_functions(client):
        return _EVAL[name](keys, args, client)
    if read_only:
        return client.fcall_ro(name, len(keys), *keys, *args)
    return client.fcall(name, len(keys), *keys, *args)
