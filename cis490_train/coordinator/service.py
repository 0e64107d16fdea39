"""The coordinator: the one writer of job state, and the fleet's reaper.

A worker credential is the credential of one host, so no worker writes a job's
record. Workers send requests (`protocol`); this process, running with the
operator credential on the coordinator host, checks each against the job's
lease (attempt and claim secret) and applies it through the registry. A
completion is accepted only for a bundle the store holds under that job, and
the result it records is read from that bundle's verified report, never from
the request.

It also runs the reaper (`reaper`). Several coordinators may run; a lock lets
one reap at a time, and any of them serves requests.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from ..core import lifecycle
from ..artifacts.client import StoreClient
from ..broker.messages import Messages
from ..artifacts.records import ArtifactRecord
from ..artifacts.summary import Summary
from ..config import Settings
from ..errors import ArtifactNotFound, BadRecord, BadRequest, JobNotFound, StoreError
from ..core.lifecycle import Transition
from ..core.specs import JobSpec
from ..core.protocol import Op, Reply, Request, REQUESTS, reply_key, waiting_key
from ..registry import LOOP_ERRORS, UPLOAD_BYTES, UPLOADS, JobRecord, Registry
from .reaper import Reaper

log = logging.getLogger("cis490.coordinator")

# How long transitions retry through a Redis restart before a request gives up.
REDIS_PATIENCE_S = 60.0
REPLY_KEEP_S = 60
POLL_S = 1.0


class Coordinator:
    def __init__(self, settings: Settings, name: str | None = None, messages: Messages | None = None):
        self.settings = settings
        self.name = name or f"coordinator-{os.getpid()}@{socket.gethostname()}"
        self.registry = Registry(settings.broker_url, patience_s=REDIS_PATIENCE_S)
        self.store = StoreClient(settings.store_url, token=None, timeout=30.0)
        self.messages = messages or Messages.from_settings(settings)
        self.stopping = threading.Event()
        self.started_at = time.time()
        self.reaper = Reaper(self.registry, self.messages, settings, self.started_at, self._survive)

    # --- the service ---------------------------------------------------------------

    def serve(self) -> None:
        """Serve requests and reap until `stop()` (or SIGTERM/SIGINT when run as `cis490-train coordinator`)."""
        self.registry.load_functions()
        self.started_at = self.reaper.watching_since = time.time()
        reaper = threading.Thread(target=self._reap_loop, name="cis490-reaper", daemon=True)
        reaper.start()
        log.info("coordinator %s serving %s", self.name, REQUESTS)
        try:
            while not self.stopping.is_set():
                self._survive("requests", self.serve_one)
        finally:
            self.stopping.set()
            reaper.join(timeout=10)
            self.store.close()
            self._survive("requests", lambda: self.registry.let_go(self.name))

    def stop(self, *_: Any) -> None:
        self.stopping.set()

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.stop)

    def serve_one(self, timeout: float = POLL_S) -> bool:
        """Take one request (waiting up to `timeout`), act on it and reply; False when none came."""
        with self.registry.guard():
            got = self.registry.r.blpop([REQUESTS], timeout=timeout)
        if not got:
            return False
        _, raw = got
        try:
            request = Request.decode(raw)
        except BadRequest as exc:
            log.warning("refused a malformed request: %s", exc)
            self.registry.count("bad_requests")
            return True
        with self.registry.guard():
            if not self.registry.r.exists(waiting_key(request.nonce)):
                log.info("skipped %s of %s attempt %s: its worker stopped waiting", request.op, request.job_id, request.attempt)
                return True
        reply = self.handle(request)
        with self.registry.guard():
            pipe = self.registry.r.pipeline(transaction=False)
            pipe.rpush(reply_key(request.nonce), reply.encode())
            pipe.expire(reply_key(request.nonce), REPLY_KEEP_S)
            pipe.execute()
        return True

    def _survive(self, loop: str, step: Callable[[], Any]) -> None:
        """Run one step of a loop; whatever it raises is logged and counted, and the loop goes on."""
        try:
            step()
        except Exception:
            log.exception("the %s loop survived an error", loop)
            self.registry.count(LOOP_ERRORS + loop)
            self.stopping.wait(POLL_S)

    # --- requests ------------------------------------------------------------------

    def handle(self, request: Request) -> Reply:
        try:
            return self._HANDLERS[request.op](self, request)
        except JobNotFound:
            return Reply(False, f"no job {request.job_id} in the registry")
        except BadRecord as exc:
            self.registry.report(exc)
            return Reply(False, f"the job's record cannot be read: {exc.problem}")

    def _claim(self, request: Request) -> Reply:
        return _reply(self.registry.claim(request.job_id, request.lease))

    def _start(self, request: Request) -> Reply:
        return _reply(self.registry.start(request.job_id, request.lease))

    def _beat(self, request: Request) -> Reply:
        return _reply(self.registry.beat(request.job_id, request.lease, request.body["progress"]))

    def _fail(self, request: Request) -> Reply:
        job = self.registry.get(request.job_id)
        failure = request.body["failure"]
        retry = lifecycle.should_retry(failure, job.spec.retry_on_error)
        t = self.registry.fail(request.job_id, request.lease, failure, request.body["error"], retry)
        if t.ok and t.dispatch is not None:
            self.messages.dispatch(self.registry, self.registry.get(request.job_id))
            return Reply(True, requeued=True)
        return _reply(t)

    def _defer(self, request: Request) -> Reply:
        """A host took a CUDA job's message but cannot start it now: say why on the job and send it again."""
        if not self.registry.note_waiting(request.job_id, request.attempt, request.body["reason"]):
            return Reply(False, "job moved on")
        self.messages.dispatch(self.registry, self.registry.get(request.job_id))
        return Reply(True, requeued=True)

    def _complete(self, request: Request) -> Reply:
        """Commit a bundle the store verified and holds under this job; its result comes from that bundle."""
        job = self.registry.get(request.job_id)
        refused = lifecycle.complete(job.state, request.lease, 0.0, "", "")
        if not refused.ok:
            return _reply(refused)
        artifact_id = request.body["artifact_id"]
        try:
            record, summary = self.store.meta(artifact_id)
        except ArtifactNotFound:
            return Reply(False, f"artifact {artifact_id} is not in the store")
        except StoreError as exc:
            return Reply(False, f"the store cannot be asked about artifact {artifact_id}: {exc}", retry=True)
        problem = _mismatch(record, summary, job)
        if problem:
            log.warning("refused to commit %s for %s: %s", artifact_id, job.job_id, problem)
            return Reply(False, problem)
        result = committed_result(summary, record, request.lease, job.spec, request.body["trainer_s"])
        t = self.registry.complete(request.job_id, request.lease, artifact_id, result)
        if t.ok:
            self.registry.count(UPLOADS)
            self.registry.count(UPLOAD_BYTES, record.size)
        return _reply(t)

    _HANDLERS = {Op.CLAIM: _claim, Op.START: _start, Op.BEAT: _beat, Op.COMPLETE: _complete, Op.FAIL: _fail, Op.DEFER: _defer}

    # --- the reaper ----------------------------------------------------------------

    def _reap_loop(self) -> None:
        ttl = max(2.0, min(5.0, self.settings.stale_after_s / 2))
        while not self.stopping.wait(min(POLL_S, self.settings.heartbeat_s)):
            self._survive("reaper", lambda: self.registry.lead(self.name, ttl_s=ttl) and self.reaper.reap())

def _reply(t: Transition) -> Reply:
    return Reply(t.ok, t.reason)


def _mismatch(record: ArtifactRecord, summary: Summary | None, job: JobRecord) -> str:
    """Why a stored bundle cannot be this job's result ('' when it can)."""
    if record.job_id != job.job_id:
        return f"the store holds artifact {record.artifact_id} for job {record.job_id or 'none'}, not {job.job_id}"
    if (record.model, record.mode) != (job.spec.model, job.spec.mode):
        return f"artifact {record.artifact_id} is a {record.model}/{record.mode} bundle; the job is {job.spec.model}/{job.spec.mode}"
    if summary is None:
        return f"artifact {record.artifact_id} has no readable report"
    return ""


def committed_result(summary: Summary, record: ArtifactRecord, lease: lifecycle.Lease, spec: JobSpec, trainer_s: float) -> dict[str, Any]:
    """The job's result as the registry keeps it: metrics from the verified bundle's report,
    sizes from the store's index row, who and when from the lease. `trainer_s` is the one figure
    the worker measured (its trainer's wall time), and no metric."""
    s = summary.to_json()
    return {
        "model": spec.model,
        "mode": spec.mode,
        "split_recipe": s["split_recipe"] or spec.split_recipe,
        "seed": s["seed"],
        "device": s["device"],
        "n_train": s["n_train"],
        "n_val": summary.n_val,
        "n_test": s["n_test"],
        "metrics": s["metrics"],
        "baseline": s["baseline"],
        "duration_s": s["duration_s"],
        "train_seconds": s["train_seconds"],
        "dataset": s["dataset"],
        "host": lease.host,
        "attempt": lease.attempt,
        "bundle_bytes": record.size,
        "trainer_s": round(trainer_s, 4),
    }


def run(settings: Settings) -> None:
    """`cis490-train coordinator`: serve until SIGTERM or SIGINT."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    coordinator = Coordinator(settings)
    coordinator.install_signal_handlers()
    coordinator.registry.ping()
    coordinator.serve()
