"""A worker's life in the fleet.

At boot, the tiers given with `-Q` are checked against the hardware and expanded
into the class queues this host may consume. A background thread keeps the
worker's registry record alive and makes the queues it actually consumes match
the ones it may, every second, whatever changed them: a manifest that created a
queue, a changed host policy, or an operator's `add_consumer`/`cancel_consumer`.
It survives any error, counting it in the worker's record. On SIGTERM every
running training is told to stop, so its attempt is requeued at once.

Workers do not reap: the coordinator does (`coordinator`).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from dataclasses import dataclass, field

from celery import signals
from celery.worker.consumer import Consumer as CeleryConsumer

from ..core.capability import Capability
from ..config import Settings
from ..errors import Cis490Error
from ..registry import Registry, WorkerInfo
from ..core.routing import subscriptions, validate_tiers

log = logging.getLogger("cis490.worker")

# How long registry reads and requests retry through a Redis restart before an attempt gives up.
REDIS_PATIENCE_S = 60.0


class Consumer(CeleryConsumer):
    """Celery's consumer with mingle and gossip off, whatever the command line says: mingle
    broadcasts `hello` on the remote-control channel at boot, and the worker user may not publish
    there (see `acl`). Nothing in the fleet uses what they share (revokes, clocks, elections)."""

    def __init__(self, *args, worker_options=None, **kwargs):
        options = {**(worker_options or {}), "without_mingle": True, "without_gossip": True}
        super().__init__(*args, worker_options=options, **kwargs)


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
    errors: int = 0
    _base: set[str] = field(default_factory=set)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def boot(self, app, nodename: str, requested: list[str]) -> None:
        self.settings = Settings.from_env()
        self.capability = Capability.load(self.settings.capability_file, self.settings.host_id)
        self.tiers = validate_tiers(requested, self.capability)
        self.registry = Registry(self.settings.broker_url, patience_s=REDIS_PATIENCE_S)
        # kombu's transport calls them from here on (see `broker`).
        self.registry.wait_for_functions(self.stopping)
        self.nodename = nodename
        self.started_at = time.time()
        # Registered before the queue classes are read: an enqueue racing this boot sees one or the other.
        self.publish(queues=self.tiers)
        self._base = set(self.current_queues(app))
        for name in self.eligible():
            app.amqp.queues.select_add(name)
        self.publish(queues=self.current_queues(app))
        log.info("host %s serves tiers %s; consuming %s", self.capability.host_id, ",".join(self.tiers), ", ".join(self.current_queues(app)) or "nothing yet")

    def eligible(self) -> list[str]:
        policy = self.registry.host_policy(self.capability.host_id)
        return subscriptions(self.registry.queue_classes(), self.capability, policy, self.tiers)

    def current_queues(self, app) -> tuple[str, ...]:
        """What the consumer really consumes once it runs (before: what it was configured with)."""
        if self.consumer is not None:
            return tuple(sorted({q.name for q in list(self.consumer.task_consumer.queues)}))
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
            errors=self.errors,
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
                self._reconcile()
                if time.monotonic() - last_publish >= self.settings.heartbeat_s:
                    self.publish(self.current_queues(app))
                    last_publish = time.monotonic()
            except Cis490Error as exc:
                self.errors += 1
                log.warning("registry sync failed: %s", exc)
            except Exception:
                self.errors += 1
                log.exception("registry sync survived an error")

    def _reconcile(self) -> None:
        """Consume exactly the queues this host may: the tiers it was started with and its eligible
        class queues, compared with what the consumer really consumes."""
        wanted = self._base | set(self.eligible())
        consumer = self.consumer
        actual = set(self.current_queues(consumer.app))
        for name in sorted(wanted - actual):
            consumer.call_soon(consumer.add_task_queue, name)
            log.info("subscribing to class queue %s", name)
        for name in sorted(actual - wanted):
            consumer.call_soon(consumer.cancel_task_queue, name)
            log.info("leaving queue %s (this host may not consume it)", name)

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
