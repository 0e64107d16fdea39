"""The artifact store's HTTP server process: the listener, its connection limits and `serve()`.

Connections are bounded in number and in time: beyond `max_connections` open
ones a new connection is closed at once, and one that sends no complete request
headers (or no small body) for `idle_timeout_s` is closed; only an accepted
upload gets time in proportion to its length (see `handlers`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import tornado.web
from tornado.httpserver import HTTPServer
from tornado.iostream import IOStream
from tornado.netutil import bind_sockets

from ..errors import StoreError
from .handlers import CHUNK, READ_BUFFER, SMALL_BODY, StoreContext, make_app
from .store import ArtifactStore

log = logging.getLogger("cis490_train.store")

IDLE_TIMEOUT_S = 60.0
MAX_CONNECTIONS = 256
IO_THREADS = 16

class _LimitedServer(HTTPServer):
    """Closes a new connection at once while `max_connections` are open: idle or slow clients
    cannot use up the store's file descriptors and memory, and open ones keep being served."""

    def initialize(self, *args: Any, max_connections: int = MAX_CONNECTIONS, **kwargs: Any) -> None:
        super().initialize(*args, **kwargs)
        self.max_connections = max_connections
        self._open = 0
        self._refusing = False

    def handle_stream(self, stream: IOStream, address: tuple) -> None:
        if self._open >= self.max_connections:
            if not self._refusing:
                log.warning("%d connections open: closing new ones until some close", self._open)
                self._refusing = True
            stream.close()
            return
        self._refusing = False
        self._open += 1
        super().handle_stream(stream, address)

    def on_close(self, server_conn: object) -> None:
        self._open -= 1
        super().on_close(server_conn)


def make_server(
    app: tornado.web.Application, *, idle_timeout_s: float = IDLE_TIMEOUT_S, max_connections: int = MAX_CONNECTIONS
) -> HTTPServer:
    """A small body cap and a short body timeout for every route; the upload route lifts both per request.

    A server-wide cap of `max_bytes` would let any unauthenticated GET make
    tornado buffer up to that many bytes in memory, and a server-wide body
    timeout long enough for 64 GiB would let it dribble a small body for hours:
    only accepted uploads may send large bodies, for as long as their length needs.
    tornado uses the idle timeout also as the time allowed for a request's headers.
    """
    return _LimitedServer(
        app,
        max_body_size=SMALL_BODY,
        max_buffer_size=READ_BUFFER,
        chunk_size=CHUNK,
        idle_connection_timeout=idle_timeout_s,
        body_timeout=idle_timeout_s,
        max_connections=max_connections,
    )


async def _run(
    root: Path, host: str, port: int, token: str, max_bytes: int, idle_timeout_s: float, max_connections: int
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with ArtifactStore(root) as store, ThreadPoolExecutor(IO_THREADS, thread_name_prefix="store-io") as executor:
        try:
            sockets = bind_sockets(port, address=host)
        except OSError as exc:
            raise StoreError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        ctx = StoreContext(store=store, token=token, max_bytes=max_bytes, executor=executor)
        server = make_server(make_app(ctx), idle_timeout_s=idle_timeout_s, max_connections=max_connections)
        server.add_sockets(sockets)
        bound = sockets[0].getsockname()
        shown_host = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        log.info("artifact store listening on http://%s:%d (root %s)", shown_host, bound[1], root)
        await stop.wait()
        log.info("artifact store stopping")
        server.stop()
        await server.close_all_connections()


def serve(
    root: Path,
    host: str,
    port: int,
    token: str,
    max_bytes: int,
    *,
    idle_timeout_s: float = IDLE_TIMEOUT_S,
    max_connections: int = MAX_CONNECTIONS,
) -> None:
    """Run the store until SIGTERM or SIGINT, then close connections and return."""
    if not token:
        raise StoreError("the artifact store needs a worker token (CIS490_WORKER_TOKEN)")
    if max_bytes < 1:
        raise StoreError(f"max upload size {max_bytes} must be at least 1 byte")
    if not (math.isfinite(idle_timeout_s) and idle_timeout_s > 0):
        raise StoreError(f"idle timeout {idle_timeout_s} must be a positive number of seconds")
    if max_connections < 1:
        raise StoreError(f"max connections {max_connections} must be at least 1")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(_run(Path(root), host, port, token, max_bytes, idle_timeout_s, max_connections))
