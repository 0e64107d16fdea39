"""The coordinator: the one writer of job state, and the fleet's reaper.

A worker credential is the credential of one host, so no worker writes a job's
record. Workers send requests (`protocol`); this process, running with the
operator credential on the coordinator host, checks each against the job's
lease (attempt and claim secret) and applies it through the registry. A
completion is accepted only for a bundle the store holds under that job, and
the result it records is read from that bundle's verified report, never from
the request.

It also runs the reaper: stale leases, attempts whose message never reached the
broker or left it without a claim, and CUDA-preferring jobs whose grace ran out.
Several coordinators may run; a lock lets one reap at a time, and any of them
serves requests.
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
from ..broker.app import transport_options
from ..broker.messages import Messages
from ..artifacts.records import ArtifactRecord
from ..artifacts.summary import Summary
from ..config import Settings
from ..errors import ArtifactNotFound, BadRecord, BadRequest, JobNotFound, StoreError
from ..ids import task_id
from ..core.lifecycle import AttemptOutcome, Transition
from ..core.manifest import JobSpec
from ..core.protocol import Op, Reply, Request, REQUESTS, reply_key, waiting_key
from ..registry import LOOP_ERRORS, RESENT, UPLOAD_BYTES, UPLOADS, JobRecord, Registry

log = logging.getLogger("cis490.coordinator")

# How long transitions retry through a Redis restart before a request gives up.
REDIS_PATIENCE_S = 60.0
# How long an attempt may sit unsent (its sender died between the registry write and the broker) before it is sent.
UNSENT_GRACE_S = 10.0
# How often the broker is searched for the messages of pending jobs; a message missing from two
# searches in a row is lost, so a lost message is sent again within about twice this.
LOST_SCAN_S = 5.0
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
        self._suspects: set[tuple[str, int]] = set()
        self._last_scan = 0.0

    # --- the service ---------------------------------------------------------------

    def serve(self) -> None:
        """Serve requests and reap until `stop()` (or SIGTERM/SIGINT when run as `cis490-train coordinator`)."""
        self.registry.load_functions()
        self.started_at = time.time()
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
            self._survive("reaper", lambda: self.registry.lead(self.name, ttl_s=ttl) and self.reap())

    def reap(self, now: float | None = None) -> None:
        """One reaper pass; each part survives the others' errors."""
        now = time.time() if now is None else now
        for part in (self._stale_leases, self._taken_unclaimed, self._unsent, self._fallbacks, self._lost_messages):
            self._survive("reaper", lambda part=part: part(now))

    def _stale_leases(self, now: float) -> None:
        stale = self.settings.stale_after_s
        for job_id in self.registry.stale_leases(now - stale):
            t = self._each(job_id, lambda: self.registry.reap(job_id, stale, watching_since=self.started_at))
            if t is not None and t.ok:
                job = self.registry.get(job_id)
                log.warning("reaper: %s (%s) %s; %s", job.name, job_id, job.error, AttemptOutcome.REQUEUED if t.dispatch else AttemptOutcome.FAILED)
                if t.dispatch is not None:
                    self.messages.dispatch(self.registry, job)

    def _taken_unclaimed(self, now: float) -> None:
        stale = self.settings.stale_after_s
        limbo = max(3 * stale, self.settings.vram_wait_s + 2 * stale)
        for job in self.registry.release_taken_unclaimed(now - limbo):
            log.warning("reaper: %s attempt %s was taken by a worker that never claimed it; sending it again", job.name, job.attempt)
            self.messages.dispatch(self.registry, job)

    def _unsent(self, now: float) -> None:
        for job_id in self.registry.unsent_before(now - UNSENT_GRACE_S):
            job = self.registry.readable(job_id)
            if job is not None and job.status == lifecycle.Status.PENDING and not job.sent:
                log.warning("reaper: sending %s attempt %s, whose message never reached the broker", job.name, job.attempt)
                self.messages.dispatch(self.registry, job)
                self.registry.count(RESENT)
            else:
                self.registry.forget_unsent(job_id)

    def _fallbacks(self, now: float) -> None:
        for job_id in self.registry.due_fallbacks(now):
            job = self._each(job_id, lambda: self.registry.fall_back(job_id))
            if job is not None:
                log.info("reaper: no CUDA host started %s in %ss; offering it to the CPU tier (%s)", job.name, job.spec.prefer_cuda_grace_s, job.fallback_queue)
                self.messages.send(job.job_id, job.attempt, job.fallback_queue, job.broker_priority)

    def _lost_messages(self, now: float) -> None:
        """The registry, not the broker, is the truth about pending work: a pending job whose message
        is in no queue and not taken, in two searches in a row, gets its next attempt sent."""
        if now - self._last_scan < LOST_SCAN_S:
            return
        self._last_scan = now
        transport = transport_options()
        pending = self.registry.pending_sent()
        queues = {q for _, _, qs in pending for q in qs}
        present = self.registry.broker_task_ids(queues, transport["priority_steps"], transport["sep"]) if pending else set()
        missing = {(job_id, attempt) for job_id, attempt, _ in pending if task_id(job_id, attempt) not in present}
        confirmed, self._suspects = missing & self._suspects, missing
        for job_id, attempt in sorted(confirmed):
            t = self._each(job_id, lambda: self.registry.resend(job_id, attempt))
            if t is not None and t.ok:
                job = self.registry.get(job_id)
                log.warning("reaper: the message of %s attempt %s left the broker unclaimed; sending attempt %s", job.name, attempt, job.attempt)
                self.messages.dispatch(self.registry, job)

    def _each(self, job_id: str, act: Callable[[], Any]) -> Any:
        """One job's step of a pass: a record that cannot be read is reported and skipped, not fatal."""
        try:
            return act()
        except BadRecord as exc:
            self.registry.report(exc)
        except JobNotFound:
            pass
        return None


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
