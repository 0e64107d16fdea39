"""The fleet's server-side code, as one Redis function library.

Operators and the coordinator load it (`FUNCTION LOAD REPLACE`); the worker
user may only call it (`FCALL`): `EVAL`, `SCRIPT` and `FUNCTION` are denied to
workers, so a worker credential cannot run code of its own inside Redis. A
function runs with the caller's key permissions, so calling one grants nothing
the caller could not do command by command.

The library also carries, as functions, the few Lua scripts kombu's Redis
transport and redis-py's lock would send with `EVALSHA` (`broker` routes them
here), taken from the installed packages and named by their sha1: a worker
then needs no scripting at all.

The library name carries a version: change what a function does and bump it,
so a fleet mixing old and new hosts never calls code it does not expect.
"""

from __future__ import annotations

import hashlib
from typing import Any

import redis
from kombu.transport import redis as kombu_redis
from redis.lock import Lock

from ..errors import Cis490Error, PermissionDenied

LIBRARY = "cis490_1"

# Answers the library's name: whether it is loaded, for users who may not list functions.
PING = f"{LIBRARY}_ping"
# Hold or take a lock (the reaper's): it lapses if its holder dies. A lock without an expiry was
# not set by this code and is taken over.
LEAD = f"{LIBRARY}_lead"
# Let go of that lock, if this holder has it: a coordinator that stops hands over at once.
RELEASE = f"{LIBRARY}_release"
# Create a job only if it does not exist: concurrent enqueues of one manifest insert it once.
CREATE = f"{LIBRARY}_create"
# Mark an attempt's message as on the broker, unless the job moved on meanwhile.
MARK_SENT = f"{LIBRARY}_mark_sent"
# Jobs per status, counted inside Redis: one round trip and ~1 µs a job (a pipelined HGET per job
# costs the client ~10 µs a job). Its keys come as arguments: a key in KEYS must be writable by the
# caller, and the worker and metrics users may only read them. Fine on the one Redis of a fleet,
# not on a cluster.
STATUS_COUNTS = f"{LIBRARY}_status_counts"
# Append a batch of log entries in one call: ARGV = cap, ttl, then entries as (field count, field,
# value, ...); a lone `line` field holds many lines joined by newlines, one stream entry each.
LOG_APPEND = f"{LIBRARY}_log_append"

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


_WRAPPED = "".join(
    f"\nredis.register_function('{script_function(body)}', function(KEYS, ARGV)\n{body}\nend)\n" for body in LIBRARY_SCRIPTS
)

SOURCE = f"""#!lua name={LIBRARY}

redis.register_function{{
  function_name = '{PING}',
  flags = {{'no-writes'}},
  callback = function(keys, args) return '{LIBRARY}' end
}}

redis.register_function('{LEAD}', function(keys, args)
  local holder = redis.call('GET', keys[1])
  if not holder or holder == args[1] or redis.call('PTTL', keys[1]) < 0 then
    redis.call('SET', keys[1], args[1], 'PX', args[2])
    return 1
  end
  return 0
end)

redis.register_function('{RELEASE}', function(keys, args)
  if redis.call('GET', keys[1]) == args[1] then return redis.call('DEL', keys[1]) end
  return 0
end)

redis.register_function('{CREATE}', function(keys, args)
  if redis.call('EXISTS', keys[1]) == 1 then return 0 end
  redis.call('HSET', keys[1], unpack(args, 4))
  redis.call('SET', keys[2], args[1])
  redis.call('SADD', keys[3], keys[4])
  if args[2] ~= '' then redis.call('ZADD', keys[5], args[2], keys[4]) end
  redis.call('ZADD', keys[6], args[3], keys[4])
  return 1
end)

redis.register_function('{MARK_SENT}', function(keys, args)
  if redis.call('HGET', keys[1], 'attempt') == args[1] then
    redis.call('HSET', keys[1], 'sent', 1)
    redis.call('ZREM', keys[2], args[2])
  end
  return 0
end)

redis.register_function{{
  function_name = '{STATUS_COUNTS}',
  flags = {{'no-writes'}},
  callback = function(keys, args)
    local counts = {{}}
    for _, id in ipairs(redis.call('SMEMBERS', args[1])) do
      local status = redis.call('HGET', args[2] .. id, 'status')
      if status then counts[status] = (counts[status] or 0) + 1 end
    end
    local out = {{}}
    for status, n in pairs(counts) do
      out[#out + 1] = status
      out[#out + 1] = n
    end
    return out
  end
}}

redis.register_function('{LOG_APPEND}', function(keys, args)
  local i = 3
  while i <= #args do
    local n = tonumber(args[i])
    if n == 1 and args[i + 1] == 'line' then
      local text, from = args[i + 2], 1
      while true do
        local nl = string.find(text, '\\n', from, true)
        redis.call('XADD', keys[1], 'MAXLEN', '~', args[1], '*', 'line', string.sub(text, from, (nl or 0) - 1))
        if not nl then break end
        from = nl + 1
      end
    else
      redis.call('XADD', keys[1], 'MAXLEN', '~', args[1], '*', unpack(args, i + 1, i + 2 * n))
    end
    i = i + 1 + 2 * n
  end
  redis.call('EXPIRE', keys[1], args[2])
  return 0
end)
{_WRAPPED}"""


def load(client: redis.Redis) -> None:
    """Load (or replace) the library; needs a user allowed `FUNCTION LOAD` (operator)."""
    try:
        client.function_load(SOURCE, replace=True)
    except redis.exceptions.NoPermissionError as exc:
        raise PermissionDenied(f"NOPERM: this Redis user may not load the fleet's functions; start the coordinator or enqueue once with the operator user ({exc})") from None
    except redis.ResponseError as exc:
        if "unknown command" in str(exc).lower():
            raise Cis490Error(f"this Redis has no functions ({exc}); the fleet needs Redis 7.0 or newer") from None
        raise


def loaded(client: redis.Redis) -> bool:
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
    """FCALL (or FCALL_RO) on a client or a pipeline."""
    if read_only:
        return client.fcall_ro(name, len(keys), *keys, *args)
    return client.fcall(name, len(keys), *keys, *args)
