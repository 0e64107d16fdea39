"""One attempt of one job on this worker: lease, trainer subprocess, heartbeats, bundle, upload, commit.

Celery-free apart from what the task hands in (a progress callback), so the
whole life of an attempt reads top to bottom here. Every change of the job's
state is a request to the coordinator (`leases`); this module only reads the
registry.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from ..core import lifecycle
from ..artifacts.bundle import REPORT_NAME, make_bundle
from ..artifacts.client import StoreClient
from ..core.capability import Capability
from ..config import Settings
from ..errors import BadRecord, BrokerUnavailable, Cis490Error, CoordinatorUnavailable, JobNotFound, StoreError
from .logship import LogShipper
from .trainer_proc import LineSink, OutputReader, exit_failure, new_process_group, stop
from .leases import LeaseClient
from ..core.lifecycle import AttemptOutcome, Lease
from ..paths import inside
from ..core.protocol import Reply
from ..registry import JobRecord, Registry
from ..core.routing import CPU, QueueClass
from ..trainer import PARENT_PID_ENV

log = logging.getLogger("cis490.attempt")

COMMIT_PATIENCE_S = 60.0
COMMIT_RETRY_S = 2.0
PROGRESS_EVERY_S = 1.0


class Stop(StrEnum):
    """Why supervising a trainer ended."""

    EXITED = "exited"
    SHUTDOWN = "shutdown"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    LEASE_LOST = "lease_lost"


@dataclass(frozen=True)
class Outcome:
    job_id: str
    attempt: int
    status: AttemptOutcome
    detail: str = ""
    artifact_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "attempt": self.attempt, "status": self.status, "detail": self.detail, "artifact_id": self.artifact_id}


ProgressSink = Callable[[dict[str, Any]], None]


class AttemptRunner:
    def __init__(
        self,
        *,
        registry: Registry,
        settings: Settings,
        capability: Capability,
        worker: str,
        on_progress: ProgressSink,
        stopping: threading.Event,
        leases: LeaseClient | None = None,
    ):
        self.registry = registry
        self.settings = settings
        self.capability = capability
        self.worker = worker
        self.on_progress = on_progress
        self.stopping = stopping
        self.leases = leases or LeaseClient(registry)

    def run(self, job_id: str, attempt: int, wake: threading.Event, queue: str) -> Outcome:
        """Run one attempt delivered through `queue` (its tier decides CPU or CUDA)."""
        lease = Lease.new(attempt, self.worker, self.capability.host_id)
        parsed = QueueClass.parse(queue)
        device = "cuda" if parsed is not None and parsed.cuda else CPU
        try:
            job = self.registry.get(job_id)
        except JobNotFound:
            return Outcome(job_id, attempt, AttemptOutcome.DROPPED, "job is not in the registry")
        except BadRecord as exc:
            log.warning("dropping message %s:%s: %s", job_id, attempt, exc)
            return Outcome(job_id, attempt, AttemptOutcome.DROPPED, str(exc))
        if job.status == lifecycle.Status.PENDING and job.attempt == attempt and device != CPU:
            short = self._vram_shortfall(job, wake)
            if short:
                self.leases.defer(job_id, lease, short)
                log.info("job %s attempt %s put back: %s", job_id, attempt, short)
                return Outcome(job_id, attempt, AttemptOutcome.DEFERRED, short)
        claimed = self.leases.claim(job_id, lease)
        if not claimed.ok:
            log.info("dropping message %s:%s: %s", job_id, attempt, claimed.reason)
            return Outcome(job_id, attempt, AttemptOutcome.DROPPED, claimed.reason)
        job = self.registry.get(job_id)
        workdir = inside(self.settings.work_dir, f"{job_id}-{attempt}")
        shipper = self._shipper(job_id, attempt)
        outcome: Outcome | None = None
        try:
            outcome = self._train(job, lease, workdir, wake, device, shipper.add if shipper else None)
        except StoreError as exc:
            outcome = self._fail(job, lease, lifecycle.Failure.UPLOAD_ERROR, str(exc))
        except (BrokerUnavailable, CoordinatorUnavailable):
            raise  # nothing can be recorded now; the reaper requeues the silent lease once both are back
        except Exception as exc:
            log.exception("job %s attempt %s failed", job_id, attempt)
            outcome = self._fail(job, lease, lifecycle.Failure.TRAINER_ERROR, f"{type(exc).__name__}: {exc}")
        finally:
            if shipper:
                shipper.close(*((outcome.status, outcome.detail) if outcome else ("interrupted", "the outcome could not be recorded")))
        return outcome

    def _shipper(self, job_id: str, attempt: int) -> LogShipper | None:
        """The attempt's output stream in Redis (None when CIS490_LOG_LINES=0)."""
        if not self.settings.log_lines:
            return None
        return LogShipper(
            self.registry.url, job_id, attempt, max_lines=self.settings.log_lines, keep_s=self.settings.log_keep_s
        ).start()

    def _vram_shortfall(self, job: JobRecord, wake: threading.Event) -> str:
        """Why this host cannot start a CUDA job now ('' when it can): its VRAM floor is not free.

        Waits up to CIS490_VRAM_WAIT_S for another process to let go before putting the job back.
        """
        need = job.spec.min_vram_gib
        if not need:
            return ""
        deadline = time.monotonic() + self.settings.vram_wait_s
        while True:
            cap = Capability.load(self.settings.capability_file, self.settings.host_id)
            free = cap.max_vram_free_gib
            if free >= need:
                return ""
            if time.monotonic() >= deadline or self.stopping.is_set():
                return f"{cap.host_id} had {free:g} GiB VRAM free of the {need:g} GiB the job needs (at {time.strftime('%H:%M:%S')})"
            wake.wait(timeout=min(2.0, self.settings.vram_wait_s))
            wake.clear()

    def _train(self, job: JobRecord, lease: Lease, workdir: Path, wake: threading.Event, device: str, sink: LineSink | None) -> Outcome:
        shutil.rmtree(workdir, ignore_errors=True)
        out = workdir / "out"
        out.mkdir(parents=True)
        spec_path = workdir / "spec.json"
        spec_path.write_text(json.dumps(job.spec.to_dict(), indent=2))
        cmd = [
            *self.settings.trainer_wrapper,
            sys.executable, "-m", "cis490_train.trainer",
            "--spec", str(spec_path), "--out", str(out),
            "--data", str(self.settings.data_dir), "--device", device,
        ]
        log.info("job %s attempt %s: %s", job.job_id, lease.attempt, " ".join(cmd))
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1", PARENT_PID_ENV: str(os.getpid())},
            **new_process_group(),
        )
        reader = OutputReader(proc, workdir / "train.log", wake, sink)
        reader.start()

        try:
            started = self.leases.start(job.job_id, lease).ok
        except BaseException:
            stop(proc, reader)  # no trainer outlives an attempt that cannot be recorded
            raise
        if not started:
            stop(proc, reader)
            return Outcome(job.job_id, lease.attempt, AttemptOutcome.LEASE_LOST, "job changed before the trainer started")

        stop_reason = self._supervise(job, lease, proc, reader, wake)
        if stop_reason != Stop.EXITED:
            stop(proc, reader)
        if stop_reason == Stop.SHUTDOWN:
            return self._fail(job, lease, lifecycle.Failure.WORKER_SHUTDOWN, "worker shutdown")
        if stop_reason == Stop.TIMEOUT:
            return self._fail(job, lease, lifecycle.Failure.TIMEOUT, f"max_runtime_s={job.spec.max_runtime_s:g} exceeded; trainer stopped")
        if stop_reason == Stop.CANCELLED:
            log.info("job %s attempt %s cancelled; trainer stopped", job.job_id, lease.attempt)
            return Outcome(job.job_id, lease.attempt, AttemptOutcome.CANCELLED, "cancelled by operator")
        if stop_reason == Stop.LEASE_LOST:
            log.warning("job %s attempt %s: lease lost, trainer stopped", job.job_id, lease.attempt)
            return Outcome(job.job_id, lease.attempt, AttemptOutcome.LEASE_LOST, "the job was reassigned")

        rc = proc.wait()
        reader.join()
        if rc != 0:
            tail = "\n".join(reader.tail)
            failure, what = exit_failure(rc)
            return self._fail(job, lease, failure, f"{what}\n{tail}".rstrip())
        if not self._beat(job, lease, reader.progress, strict=True):
            return Outcome(job.job_id, lease.attempt, AttemptOutcome.LEASE_LOST, "the job was reassigned before the upload")

        if not (out / REPORT_NAME).is_file():
            return self._fail(job, lease, lifecycle.Failure.TRAINER_ERROR, f"the trainer exited 0 without writing {REPORT_NAME}")
        bundle = make_bundle(out, workdir / "bundle.tar.zst")
        with StoreClient(self.settings.store_url, self.settings.worker_token) as client:
            client.upload(
                bundle.path,
                bundle.sha256,
                model=job.spec.model,
                mode=job.spec.mode,
                job_id=job.job_id,
                attempt=lease.attempt,
                host=lease.host,
            )
        done = self._commit(job, lease, bundle.sha256, reader.wall_s)
        if not done.ok and self.registry.get(job.job_id).artifact_id != bundle.sha256:
            log.warning("job %s attempt %s: artifact %s uploaded but not recorded: %s", job.job_id, lease.attempt, bundle.sha256, done.reason)
            failed = self._fail(job, lease, lifecycle.Failure.TRAINER_ERROR, f"the result was refused: {done.reason}")
            return failed if failed.status != AttemptOutcome.LEASE_LOST else Outcome(job.job_id, lease.attempt, AttemptOutcome.LEASE_LOST, done.reason, bundle.sha256)
        shutil.rmtree(workdir, ignore_errors=True)
        return Outcome(job.job_id, lease.attempt, AttemptOutcome.COMPLETED, artifact_id=bundle.sha256)

    def _supervise(self, job: JobRecord, lease: Lease, proc: subprocess.Popen, reader: OutputReader, wake: threading.Event) -> str:
        """Beat and report progress until the trainer exits; say why if it must be stopped instead.

        Wakes at least every second, so a cancel or a reassignment stops the trainer within about a second.
        """
        started = time.monotonic()
        last_beat = started
        last_pushed: dict[str, Any] | None = None
        limit = job.spec.max_runtime_s
        while True:
            wake.wait(timeout=PROGRESS_EVERY_S)
            wake.clear()
            if self.stopping.is_set():
                return Stop.SHUTDOWN
            progress = reader.progress
            if progress and progress is not last_pushed:
                self.on_progress(_progress_meta(job, lease, progress))
                last_pushed = progress
            if reader.finished.is_set():
                return Stop.EXITED
            if limit and time.monotonic() - started > limit:
                return Stop.TIMEOUT
            moved = self._moved_on(job, lease)
            if moved:
                return moved
            if time.monotonic() - last_beat >= self.settings.heartbeat_s:
                last_beat = time.monotonic()
                if not self._beat(job, lease, progress):
                    return Stop.LEASE_LOST

    def _moved_on(self, job: JobRecord, lease: Lease) -> str:
        try:
            status, attempt = self.registry.status_of(job.job_id)
        except Cis490Error:
            return ""
        if status == lifecycle.Status.CANCELLED:
            return Stop.CANCELLED
        if attempt != lease.attempt or status not in lifecycle.LEASED:
            return Stop.LEASE_LOST
        return ""

    def _beat(self, job: JobRecord, lease: Lease, progress: dict[str, Any] | None, strict: bool = False) -> bool:
        """Renew the lease. An outage of Redis or the coordinator is ridden out (the reaper judges
        silence), unless `strict`."""
        try:
            return self.leases.beat(job.job_id, lease, progress).ok
        except Cis490Error as exc:
            log.warning("heartbeat for %s failed: %s", job.job_id, exc)
            return not strict

    def _commit(self, job: JobRecord, lease: Lease, artifact_id: str, trainer_s: float) -> Reply:
        """Ask for the uploaded bundle to become the job's result; ask again while the coordinator
        says it could not reach the store, for as long as a Redis restart is ridden out."""
        deadline = time.monotonic() + COMMIT_PATIENCE_S
        while True:
            reply = self.leases.complete(job.job_id, lease, artifact_id, trainer_s)
            if not reply.retry or time.monotonic() >= deadline or self.stopping.is_set():
                return reply
            log.warning("job %s attempt %s: commit not decided yet (%s); asking again", job.job_id, lease.attempt, reply.reason)
            self.stopping.wait(COMMIT_RETRY_S)

    def _fail(self, job: JobRecord, lease: Lease, failure: str, error: str) -> Outcome:
        reply = self.leases.fail(job.job_id, lease, failure, error)
        if not reply.ok:
            return Outcome(job.job_id, lease.attempt, AttemptOutcome.LEASE_LOST, reply.reason)
        if reply.requeued:
            return Outcome(job.job_id, lease.attempt, AttemptOutcome.REQUEUED, f"{failure}: {error}")
        return Outcome(job.job_id, lease.attempt, AttemptOutcome.FAILED, f"{failure}: {error}")




def _progress_meta(job: JobRecord, lease: Lease, progress: dict[str, Any]) -> dict[str, Any]:
    keys = ("phase", "epoch", "epochs", "step", "steps", "loss", "metric", "metric_name", "eta_s", "elapsed_s")
    return {
        "job_id": job.job_id,
        "name": job.name,
        "attempt": lease.attempt,
        "host": lease.host,
        **{k: progress.get(k) for k in keys},
    }


