"""A worker's life in the fleet.

At boot, the tiers given with `-Q` are checked against the hardware and expanded
into the class queues this host may consume. A background thread keeps the
worker's registry record alive and adds (or drops) class queues as manifests
create them or host policies change, without a restart. On SIGTERM every
running training is told to stop, so its attempt is requeued at once.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from dataclasses import dataclass, field

from celery import signals

from .capability import Capability
from .config import Settings
from .errors import Cis490Error
from .registry import Registry, WorkerInfo
from .routing import subscriptions, validate_tiers

log = logging.getLogger("cis490.worker")

# How long job transitions retry through a Redis restart before an attempt gives up.
REDIS_PATIENCE_S = 60.0
# How long an attempt may sit unsent (its sender died between the registry write and the broker) before the reaper sends it.
UNSENT_GRACE_S = 10.0


@dataclass
class Runtime:
    """State of this worker process, shared by the boot hook, the sync thread and the tasks."""

    settings: Settings | None = None
    capability: Capability | None = None
    registry: Registry | None = None
    nodename: str = ""
    tiers: tuple[str, ...] = ()
    started_at: float = 0.0
    stopping: threading.Event = field(default_factory=threading.Event)
    active: dict[str, threading.Event] = field(default_factory=dict)
    consumer: object | None = None
    _requested: set[str] = field(default_factory=set)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def boot(self, app, nodename: str, requested: list[str]) -> None:
        self.settings = Settings.from_env()
        self.capability = Capability.load(self.settings.capability_file, self.settings.host_id)
        self.tiers = validate_tiers(requested, self.capability)
        self.registry = Registry(self.settings.broker_url, patience_s=REDIS_PATIENCE_S)
        self.nodename = nodename
        self.started_at = time.time()
        # Registered before the queue classes are read: an enqueue racing this boot sees one or the other.
        self.publish(queues=self.tiers)
        for name in self.eligible():
            app.amqp.queues.select_add(name)
            self._requested.add(name)
        self.publish(queues=self.current_queues(app))
        log.info("host %s serves tiers %s; consuming %s", self.capability.host_id, ",".join(self.tiers), ", ".join(sorted(self._requested)) or "nothing yet")

    def eligible(self) -> list[str]:
        policy = self.registry.host_policy(self.capability.host_id)
        return subscriptions(self.registry.queue_classes(), self.capability, policy, self.tiers)

    def current_queues(self, app) -> tuple[str, ...]:
        return tuple(sorted(app.amqp.queues.consume_from or ()))

    def publish(self, queues: tuple[str, ...]) -> None:
        if self.capability.cuda_available:
            # Free VRAM changes as other processes come and go; `explain` shows the current figure.
            self.capability = Capability.load(self.settings.capability_file, self.settings.host_id)
        now = time.time()
        with self._lock:
            active = tuple(sorted(self.active))
        info = WorkerInfo(
            name=self.nodename,
            host_id=self.capability.host_id,
            tiers=self.tiers,
            queues=queues,
            capability=self.capability.to_dict(),
            pid=os.getpid(),
            started_at=self.started_at,
            seen_at=now,
            active=active,
            ready=self.consumer is not None,
        )
        self.registry.register_worker(info, ttl_s=max(3 * self.settings.heartbeat_s, 5.0))

    def start_sync(self, consumer) -> None:
        self.consumer = consumer
        self.publish(self.current_queues(consumer.app))
        self._thread = threading.Thread(target=self._sync_loop, args=(consumer.app,), name="cis490-sync", daemon=True)
        self._thread.start()

    def _sync_loop(self, app) -> None:
        interval = min(1.0, self.settings.heartbeat_s)
        last_publish = 0.0
        while not self.stopping.wait(interval):
            try:
                self._reconcile(app)
                if time.monotonic() - last_publish >= self.settings.heartbeat_s:
                    self.publish(self.current_queues(app))
                    last_publish = time.monotonic()
                # The lock outlives a few missed renewals but lapses well before a lease goes stale.
                if self.registry.lead(self.nodename, ttl_s=max(2.0, min(5.0, self.settings.stale_after_s / 2))):
                    self._reap()
            except Cis490Error as exc:
                log.warning("registry sync failed: %s", exc)

    def _reap(self) -> None:
        """One reaper pass (only the worker holding the reaper lock runs it)."""
        from .tasks import dispatch, send_attempt

        stale = self.settings.stale_after_s
        now = time.time()
        for job_id in self.registry.stale_leases(now - stale):
            t = self.registry.reap(job_id, stale)
            if not t.ok:
                continue
            job = self.registry.get(job_id)
            log.warning("reaper: %s (%s) %s; %s", job.name, job_id, job.error, "requeued" if t.dispatch else "failed")
            if t.dispatch is not None:
                dispatch(self.registry, job)
        limbo = max(3 * stale, self.settings.vram_wait_s + 2 * stale)
        for job in self.registry.release_taken_unclaimed(now - limbo):
            log.warning("reaper: %s attempt %s was taken by a worker that never claimed it; sending it again", job.name, job.attempt)
            dispatch(self.registry, job)
        for job_id in self.registry.unsent_before(now - UNSENT_GRACE_S):
            job = self.registry.get(job_id)
            if job.status == "pending" and not job.sent:
                log.warning("reaper: sending %s attempt %s, whose message never reached the broker", job.name, job.attempt)
                dispatch(self.registry, job)
                self.registry.count_resent()
            else:
                self.registry.forget_unsent(job_id)
        for job_id in self.registry.due_fallbacks(now):
            job = self.registry.fall_back(job_id)
            if job is not None:
                log.info("reaper: no CUDA host started %s in %ss; offering it to the CPU tier (%s)", job.name, job.spec.prefer_cuda_grace_s, job.fallback_queue)
                send_attempt(job.job_id, job.attempt, job.fallback_queue, job.broker_priority)

    def _reconcile(self, app) -> None:
        wanted = set(self.eligible())
        consumer = self.consumer
        for name in sorted(wanted - self._requested):
            consumer.call_soon(consumer.add_task_queue, name)
            self._requested.add(name)
            log.info("subscribing to new class queue %s", name)
        for name in sorted(self._requested - wanted):
            consumer.call_soon(consumer.cancel_task_queue, name)
            self._requested.discard(name)
            log.info("leaving class queue %s (no longer eligible)", name)

    def track(self, task_id: str, wake: threading.Event) -> None:
        with self._lock:
            self.active[task_id] = wake

    def untrack(self, task_id: str) -> None:
        with self._lock:
            self.active.pop(task_id, None)

    def shutdown(self) -> None:
        self.stopping.set()
        with self._lock:
            wakers = list(self.active.values())
        for wake in wakers:
            wake.set()


runtime = Runtime()


@signals.celeryd_after_setup.connect
def _on_after_setup(sender, instance, **_):
    requested = list(instance.app.amqp.queues.consume_from or ())
    try:
        runtime.boot(instance.app, sender, requested)
    except Cis490Error as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        os._exit(exc.exit_code)


@signals.worker_ready.connect
def _on_ready(sender, **_):
    runtime.start_sync(sender)


@signals.worker_shutting_down.connect
def _on_shutting_down(**_):
    runtime.shutdown()


@signals.worker_shutdown.connect
def _on_shutdown(**_):
    if runtime.registry is not None:
        try:
            runtime.registry.unregister_worker(runtime.nodename)
        except Cis490Error:
            pass
