"""Prometheus metrics of the fleet, read from the registry in Redis on every scrape.

Flower's own `/metrics` says what Celery sees (events, task runtimes, online
workers); these say what only the registry knows: jobs by status, messages
waiting per class queue, live workers per tier, heartbeat age, the reaper's
recoveries and uploaded bytes. A scrape costs a handful of pipelined reads,
whatever the number of jobs.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from ..broker.app import transport_options
from ..registry import LOOP_ERRORS, RECOVERIES, UPLOAD_BYTES, UPLOADS, Registry

log = logging.getLogger("cis490.metrics")


@dataclass(frozen=True)
class Snapshot:
    """What one scrape read from the registry."""

    jobs: dict[str, int]  # status -> jobs
    queues: dict[str, tuple[str, int]]  # class queue -> (tier, messages waiting)
    workers: dict[str, int]  # tier -> live workers serving it
    leases: int
    heartbeat_age_max_s: float
    stats: dict[str, int]
    worker_errors: dict[str, int]  # worker -> exceptions its sync loop survived
    bad_records: int  # records this scrape found unreadable and skipped


def read_snapshot(registry: Registry, now: float) -> Snapshot:
    transport = transport_options()
    registry.clear_problems()
    classes = registry.queue_classes()
    depths = registry.queue_depths((qc.name for qc in classes), transport["priority_steps"], transport["sep"])
    workers: dict[str, int] = {}
    live = registry.workers()
    for w in live:
        for tier in w.tiers:
            workers[tier] = workers.get(tier, 0) + 1
    leases, oldest = registry.lease_summary()
    return Snapshot(
        jobs=registry.status_counts(),
        queues={qc.name: (qc.tier, depths[qc.name]) for qc in classes},
        workers=workers,
        leases=leases,
        heartbeat_age_max_s=max(0.0, now - oldest) if oldest is not None else 0.0,
        stats=registry.stats(),
        worker_errors={w.name: w.errors for w in live},
        bad_records=len(registry.problems),
    )


def families(snap: Snapshot) -> list[Metric]:
    """The snapshot as Prometheus metric families."""
    jobs = GaugeMetricFamily("cis490_jobs", "Jobs in the registry by status", labels=["status"])
    for status, n in snap.jobs.items():
        jobs.add_metric([status], n)
    queues = GaugeMetricFamily("cis490_queue_messages", "Messages waiting on the broker per class queue (all priority levels)", labels=["queue", "tier"])
    for name, (tier, depth) in sorted(snap.queues.items()):
        queues.add_metric([name, tier], depth)
    workers = GaugeMetricFamily("cis490_workers", "Live workers serving each tier (a worker started with -Q cuda,cpu counts in both)", labels=["tier"])
    for tier, n in sorted(snap.workers.items()):
        workers.add_metric([tier], n)
    leases = GaugeMetricFamily("cis490_leases", "Jobs claimed or running (holding a lease)", value=snap.leases)
    age = GaugeMetricFamily(
        "cis490_heartbeat_age_max_seconds", "Seconds since the oldest last heartbeat among leased jobs (0 when none)", value=snap.heartbeat_age_max_s
    )
    recoveries = CounterMetricFamily("cis490_recoveries", "Attempts the reaper recovered, by kind", labels=["kind"])
    for kind in RECOVERIES:
        recoveries.add_metric([kind], snap.stats.get(kind, 0))
    uploads = CounterMetricFamily("cis490_uploads", "Bundles workers uploaded to the store", value=snap.stats.get(UPLOADS, 0))
    upload_bytes = CounterMetricFamily("cis490_upload_bytes", "Bytes of the bundles workers uploaded", value=snap.stats.get(UPLOAD_BYTES, 0))
    loops = CounterMetricFamily("cis490_loop_errors", "Exceptions the coordinator's loops survived, by loop", labels=["loop"])
    for name, n in sorted(snap.stats.items()):
        if name.startswith(LOOP_ERRORS):
            loops.add_metric([name[len(LOOP_ERRORS) :]], n)
    worker_errors = CounterMetricFamily("cis490_worker_sync_errors", "Exceptions each live worker's sync loop survived", labels=["worker"])
    for name, n in sorted(snap.worker_errors.items()):
        worker_errors.add_metric([name], n)
    bad = GaugeMetricFamily("cis490_bad_records", "Registry records this scrape could not read and skipped (the log names them)", value=snap.bad_records)
    return [jobs, queues, workers, leases, age, recoveries, uploads, upload_bytes, loops, worker_errors, bad]


class FleetCollector(Collector):
    """Reads the registry on each scrape; `cis490_up` is 0 (and nothing else is reported) while Redis
    is away or answers something this code cannot read: a scrape never fails with a 500."""

    def __init__(self, registry: Registry, clock: Callable[[], float] = time.time):
        self.registry = registry
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        start = time.perf_counter()
        up = GaugeMetricFamily("cis490_up", "1 when the registry in Redis answered this scrape")
        try:
            snap = read_snapshot(self.registry, self.clock())
        except Exception as exc:
            log.warning("scrape failed: %s: %s", type(exc).__name__, exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families(snap)
        yield GaugeMetricFamily("cis490_scrape_duration_seconds", "Seconds this scrape spent reading the registry", value=time.perf_counter() - start)


def serve(registry: Registry, host: str, port: int, ready: Callable[[str], None] = lambda url: None) -> None:
    """Serve the metrics over HTTP until SIGTERM or SIGINT."""
    from prometheus_client import start_http_server

    metrics = CollectorRegistry(auto_describe=False)
    metrics.register(FleetCollector(registry))
    server, thread = start_http_server(port, addr=host, registry=metrics)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    shown = f"[{host}]" if ":" in host else host
    ready(f"http://{shown}:{server.server_port}/metrics")
    try:
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
