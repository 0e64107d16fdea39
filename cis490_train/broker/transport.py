"""kombu's Redis transport, with every Lua script it (or redis-py's lock) runs sent as a call of
the fleet's Redis functions instead of `EVALSHA` (on Redis 7+; 6.2 has no functions, and there
`functions.call` runs the script itself).

The worker user may not run scripts (a script can stall Redis for every host);
it may call the functions an operator loaded (`functions`). Celery uses this
transport for `redis://` brokers through `broker_transport` in `celeryconfig`.
"""

from __future__ import annotations

from typing import Any

import redis
from kombu.transport import redis as kombu_redis
from redis.lock import Lock

from ..registry import functions


class FunctionScript:
    """What `register_script` returns, calling the function that carries the script."""

    def __init__(self, registered_client: redis.Redis, script: str):
        self.registered_client = registered_client
        self.function = functions.script_function(script)

    def __call__(self, keys: list[Any] | None = None, args: list[Any] | None = None, client: Any = None) -> Any:
        client = client or self.registered_client
        try:
            return functions.call(client, self.function, list(keys or ()), list(args or ()))
        except redis.ResponseError as exc:
            # Redis lost the library (a restart without persistence, FUNCTION FLUSH): a user allowed
            # to load it does; a worker's error says what to start.
            if not functions.missing(exc) or isinstance(client, redis.client.Pipeline):
                raise
            functions.load(self.registered_client)
            return functions.call(client, self.function, list(keys or ()), list(args or ()))


class FunctionLock(Lock):
    """redis-py's lock, with its scripts registered per class here (not shared with plain clients)."""

    lua_release = None
    lua_extend = None
    lua_reacquire = None


class FleetRedis(redis.Redis):
    def register_script(self, script: str) -> FunctionScript:  # type: ignore[override]
        return FunctionScript(self, script)

    def lock(self, name: str, *args: Any, **kwargs: Any) -> Lock:  # type: ignore[override]
        kwargs["lock_class"] = FunctionLock
        return super().lock(name, *args, **kwargs)


class Channel(kombu_redis.Channel):
    def _get_client(self):
        base = super()._get_client()
        return FleetRedis if base is redis.Redis else base


class Transport(kombu_redis.Transport):
    Channel = Channel
