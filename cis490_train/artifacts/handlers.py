"""The artifact store's routes (tornado handlers): streaming uploads in, bundles out.

    PUT  /v1/artifacts/<sha256>        upload a bundle (worker token required)
    GET  /v1/artifacts/<sha256>        download a bundle
    GET  /v1/artifacts/<sha256>/meta   its index row and summary
    GET  /v1/artifacts[?model=&mode=]  the index rows
    GET  /v1/health                    liveness and artifact count
    GET  /results                      the results page (HTML, read-only; `/` redirects here)

Uploads are checked (token, names, size) in `prepare()`, before a byte of the
body is read, then streamed to a temp file and hashed chunk by chunk in a
worker thread while the next chunk arrives, so a multi-GiB bundle never sits
in memory and the event loop stays free for other requests. No answer names
the store's root.
"""

from __future__ import annotations

import asyncio
import errno
import hmac
import json
import logging
import os
import re
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import tornado.web
from tornado.iostream import StreamClosedError

from ..errors import ArtifactNotFound, DigestMismatch, StoreError
from .records import NAME, ArtifactMeta, ArtifactRecord, check_artifact_id
from .results import build_page, render
from .store import ArtifactStore, Upload

log = logging.getLogger("cis490_train.store")

CHUNK = 1 << 20
READ_BUFFER = 8 * CHUNK
SMALL_BODY = 64 << 10
UPLOAD_IDLE_TIMEOUT_S = 300.0
MIN_UPLOAD_RATE = 1 << 20  # bytes/s an accepted upload must average; 64 GiB get 18 h
DIGITS = re.compile(r"[0-9]+")  # str.isdigit() and int() also take other scripts' digits
# The page carries no script and loads nothing: were an escape ever missed, nothing could run.
RESULTS_CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"


@dataclass(frozen=True)
class StoreContext:
    """What every handler needs; one per application."""

    store: ArtifactStore
    token: str
    max_bytes: int
    executor: ThreadPoolExecutor
    idle_timeout_s: float = UPLOAD_IDLE_TIMEOUT_S


def upload_body_timeout_s(length: int) -> float:
    """How long a body of `length` bytes may take to arrive: MIN_UPLOAD_RATE, plus the idle allowance."""
    return UPLOAD_IDLE_TIMEOUT_S + length / MIN_UPLOAD_RATE


class _JsonHandler(tornado.web.RequestHandler):
    def initialize(self, ctx: StoreContext) -> None:
        self.ctx = ctx

    def set_default_headers(self) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")

    def write_json(self, payload: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(payload))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = kwargs.get("message") or (
            exc.log_message if isinstance(exc, tornado.web.HTTPError) and exc.log_message else self._reason
        )
        if status_code == 401:
            self.set_header("WWW-Authenticate", 'Bearer realm="cis490-store"')
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": message, "status": status_code}))


def _lookup(store: ArtifactStore, artifact_id: str) -> ArtifactRecord:
    try:
        return store.lookup(artifact_id)
    except ArtifactNotFound as exc:
        raise tornado.web.HTTPError(404, str(exc)) from None
    except StoreError as exc:
        raise tornado.web.HTTPError(400, str(exc)) from None


class NotFoundHandler(_JsonHandler):
    def prepare(self) -> None:
        raise tornado.web.HTTPError(404, "no such endpoint")


class RootHandler(_JsonHandler):
    def get(self) -> None:
        self.redirect("/results", permanent=True)


class HealthHandler(_JsonHandler):
    def get(self) -> None:
        self.write_json({"ok": True, "artifacts": self.ctx.store.count()})


class MetaHandler(_JsonHandler):
    """What the coordinator needs to commit a result from a verified bundle, without downloading it."""

    async def get(self, artifact_id: str) -> None:
        record = _lookup(self.ctx.store, artifact_id)
        summary = await asyncio.wrap_future(self.ctx.executor.submit(self.ctx.store.summary, record))
        self.write_json({"record": record.to_json(), "summary": summary.to_json() if summary is not None else None})


class ListHandler(_JsonHandler):
    def get(self) -> None:
        filters: dict[str, str] = {}
        for key in ("model", "mode"):
            value = self.get_query_argument(key, None)
            if value is not None:
                if not NAME.fullmatch(value):
                    raise tornado.web.HTTPError(400, f"{key} {value!r} is not 1-64 of a-z, 0-9, _")
                filters[key] = value
        self.write_json([r.to_json() for r in self.ctx.store.list(**filters)])


class ResultsHandler(_JsonHandler):
    async def get(self) -> None:
        body = await asyncio.wrap_future(self.ctx.executor.submit(results_page, self.ctx.store))
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Content-Security-Policy", RESULTS_CSP)
        self.set_header("Referrer-Policy", "no-referrer")
        self.set_header("Cache-Control", "no-store")
        self.finish(body)


def results_page(store: ArtifactStore) -> bytes:
    return render(build_page([(record, store.summary(record)) for record in store.list()]))


@tornado.web.stream_request_body
class ArtifactHandler(_JsonHandler):
    """PUT streams a bundle in; GET streams one out."""

    def initialize(self, ctx: StoreContext) -> None:
        super().initialize(ctx)
        self._upload: Upload | None = None
        self._pending: Future[None] | None = None
        self._committing = False
        self._last_data = time.monotonic()
        self._idle_timer: asyncio.TimerHandle | None = None

    def prepare(self) -> None:
        if self.request.method != "PUT":
            return
        # Lift the small default body cap first: a rejected upload's body is then
        # discarded until the connection closes, not reported as malformed.
        self.request.connection.set_max_body_size(self.ctx.max_bytes)
        self._check_token()
        artifact_id = self.path_args[0]
        meta = self._meta(artifact_id)
        length = self.request.headers.get("Content-Length")
        if length is None:
            raise tornado.web.HTTPError(411, "an upload needs a Content-Length")
        if not DIGITS.fullmatch(length):
            raise tornado.web.HTTPError(400, f"Content-Length {length!r} is not a byte count (ASCII digits)")
        if int(length) > self.ctx.max_bytes:
            raise tornado.web.HTTPError(413, f"{length} bytes exceed the store's limit of {self.ctx.max_bytes}")
        self.request.connection.set_body_timeout(upload_body_timeout_s(int(length)))
        self._upload = self.ctx.store.begin_upload(artifact_id, meta)
        self._arm_idle_timer()

    def _check_token(self) -> None:
        scheme, _, given = self.request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.ctx.token.encode()):
            raise tornado.web.HTTPError(401, "missing or wrong worker token")

    def _meta(self, artifact_id: str) -> ArtifactMeta:
        headers = self.request.headers
        try:
            check_artifact_id(artifact_id)
            attempt_raw = headers.get("X-Cis490-Attempt", "0")
            if not DIGITS.fullmatch(attempt_raw):
                raise StoreError(f"X-Cis490-Attempt {attempt_raw!r} is not a non-negative integer (ASCII digits)")
            return ArtifactMeta(
                model=headers.get("X-Cis490-Model", ""),
                mode=headers.get("X-Cis490-Mode", ""),
                job_id=headers.get("X-Cis490-Job", ""),
                attempt=int(attempt_raw),
                host=headers.get("X-Cis490-Host", ""),
            )
        except StoreError as exc:
            raise tornado.web.HTTPError(400, str(exc)) from None

    async def data_received(self, chunk: bytes) -> None:
        if self._upload is None:
            return
        self._last_data = time.monotonic()
        if self._pending is not None:
            try:
                await asyncio.wrap_future(self._pending)
            except OSError as exc:
                self._fail_storage(exc)
                return
        self._pending = self.ctx.executor.submit(self._upload.write, chunk)

    async def put(self, artifact_id: str) -> None:
        assert self._upload is not None
        upload = self._upload
        self._committing = True
        self._disarm_idle_timer()
        try:
            if self._pending is not None:
                await asyncio.wrap_future(self._pending)
            result = await asyncio.wrap_future(self.ctx.executor.submit(upload.commit))
        except DigestMismatch as exc:
            raise tornado.web.HTTPError(422, str(exc)) from None
        except OSError as exc:
            upload.abort()
            self._fail_storage(exc)
            return
        body = {
            "artifact_id": result.record.artifact_id,
            "size": result.record.size,
            "path": result.record.path,
            "deduplicated": result.deduplicated,
        }
        self.write_json(body, status=200 if result.deduplicated else 201)

    def _fail_storage(self, exc: OSError) -> None:
        log.error("storing an upload failed: %s", exc)
        self._discard()
        status = 507 if exc.errno in (errno.ENOSPC, errno.EDQUOT) else 500
        self.send_error(status, message=f"the store cannot write the upload: {exc.strerror}")

    def on_connection_close(self) -> None:
        super().on_connection_close()
        self._disarm_idle_timer()
        self._discard()

    def on_finish(self) -> None:
        self._disarm_idle_timer()
        self._discard()

    def _discard(self) -> None:
        """Drop an upload that will not be committed, once its last chunk write has returned."""
        upload = self._upload
        if upload is None or self._committing:
            return
        if self._pending is None:
            upload.abort()
        else:
            self._pending.add_done_callback(lambda _: upload.abort())

    def _arm_idle_timer(self) -> None:
        loop = asyncio.get_running_loop()
        self._idle_timer = loop.call_later(self.ctx.idle_timeout_s, self._check_idle)

    def _disarm_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        self._idle_timer = None

    def _check_idle(self) -> None:
        """A client that stops sending mid-body would hold a temp file for ever: drop it."""
        idle = time.monotonic() - self._last_data
        if idle < self.ctx.idle_timeout_s:
            loop = asyncio.get_running_loop()
            self._idle_timer = loop.call_later(self.ctx.idle_timeout_s - idle, self._check_idle)
            return
        log.warning("dropping upload of %s: no data for %.0f s", self.path_args[0], idle)
        self._idle_timer = None
        self.request.connection.close()

    async def get(self, artifact_id: str) -> None:
        record = _lookup(self.ctx.store, artifact_id)
        try:
            f = self.ctx.store.bundle_path(record).open("rb")
        except FileNotFoundError:
            raise tornado.web.HTTPError(404, f"artifact {artifact_id} is indexed but its file is missing") from None
        with f:
            self.set_header("Content-Type", "application/zstd")
            self.set_header("Content-Length", str(os.fstat(f.fileno()).st_size))
            self.set_header("Content-Disposition", f'attachment; filename="{record.artifact_id}.tar.zst"')
            self.set_header("X-Cis490-Sha256", record.artifact_id)
            try:
                while chunk := await asyncio.wrap_future(self.ctx.executor.submit(f.read, CHUNK)):
                    self.write(chunk)
                    await self.flush()
            except StreamClosedError:
                return
        self.finish()


def make_app(ctx: StoreContext) -> tornado.web.Application:
    handlers = [
        (r"/", RootHandler, {"ctx": ctx}),
        (r"/results", ResultsHandler, {"ctx": ctx}),
        (r"/v1/health", HealthHandler, {"ctx": ctx}),
        (r"/v1/artifacts", ListHandler, {"ctx": ctx}),
        (r"/v1/artifacts/([^/]+)/meta", MetaHandler, {"ctx": ctx}),
        (r"/v1/artifacts/([^/]+)", ArtifactHandler, {"ctx": ctx}),
    ]
    return tornado.web.Application(
        handlers, default_handler_class=NotFoundHandler, default_handler_args={"ctx": ctx}
    )
