"""The fleet against raw Celery + Redis, in the same run, on a private redis-server.

Figures: raw task round trip (the yardstick); dispatch latency (applying a one-job manifest to an
idle worker's lease); sending 10,000 raw tasks against a first apply of a 10,000-job manifest;
re-applying it unchanged; and `status` / `explain` / a metrics scrape with 10,000 pending jobs.
Warm-ups are excluded; timed figures are medians of repeated runs where they are cheap enough.

    python bench/fleet.py [--quick]
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import save

HERE = Path(__file__).resolve().parent


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def manifest_text(n: int) -> str:
    jobs = "".join(f'[[jobs]]\nname = "j{i}"\nmodel = "gbt"\nseed = {i}\npriority = {i % 5}\n' for i in range(n))
    return f'schema_version = 1\nname = "bench"\n[defaults]\nsplit_recipe = "sample"\n{jobs}'


def raw_round_trips(url: str, workdir: Path, n: int, warmup: int) -> list[float]:
    env = dict(os.environ, RAW_BROKER_URL=url, PYTHONPATH=f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    log = (workdir / "raw-worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "rawapp", "worker", "-Q", "raw", "-n", "raw@bench", "--without-mingle", "--without-gossip", "-l", "WARNING"],
        env=env, cwd=HERE, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        from rawapp import noop

        noop.apply_async(queue="raw").get(timeout=60)  # the worker is up
        times = []
        for i in range(warmup + n):
            start = time.perf_counter()
            noop.apply_async(queue="raw").get(timeout=30)
            if i >= warmup:
                times.append(time.perf_counter() - start)
        return times
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def raw_send(n: int, batch: bool = False) -> float:
    """The usual loop of `apply_async` on one producer; with `batch`, inside kombu's pipelined Producer.batch."""
    from contextlib import nullcontext

    from rawapp import app, noop

    start = time.perf_counter()
    with app.producer_or_acquire() as producer, producer.batch(max_size=1000) if batch else nullcontext():
        for _ in range(n):
            noop.apply_async(queue="raw-idle", ignore_result=True, producer=producer)
    return time.perf_counter() - start


def dispatch_latency(url: str, workdir: Path, n: int, warmup: int) -> list[float]:
    """Seconds from applying a one-job manifest to an idle worker's lease on that job.

    The jobs name a train host the data lacks, so each trainer exits at once and the worker is idle
    again quickly; the trainer's start is not part of the figure.
    """
    from cis490_train.broker.messages import Messages
    from cis490_train.config import Settings
    from cis490_train.operator.embedded import CoordinatorProcess, WorkerProcess, child_env
    from cis490_train.operator.enqueue import apply_manifest
    from cis490_train.core.manifest import Manifest
    from cis490_train.registry import Registry
    from cis490_train.trainer.data import synthesize

    data = synthesize(workdir / "data", small=True)
    registry = Registry(url)
    env = child_env(CIS490_BROKER_URL=url, CIS490_RESULT_BACKEND=url, CIS490_DATA_DIR=str(data), CIS490_WORK_DIR=str(workdir / "work"))
    messages = Messages.from_settings(Settings.from_env(env))
    coordinator = CoordinatorProcess(env, workdir / "dispatch-coordinator.log").start()
    worker = WorkerProcess("dispatch@bench", "cpu", env, workdir / "dispatch-worker.log").start(registry)
    try:
        latencies = []
        for i in range(warmup + n):
            manifest = Manifest.from_toml(
                f'schema_version = 1\nname = "dispatch"\n[[jobs]]\nname = "d{i}"\nmodel = "gbt"\ntrain_hosts = ["nobody"]\nseed = {i}\n'
            )
            job_id = manifest.jobs[0].job_id
            start = time.time()
            apply_manifest(manifest, registry, messages)
            while not (job := registry.get(job_id)).claimed_at:
                time.sleep(0.0005)
            if i >= warmup:
                latencies.append(job.claimed_at - start)
            while registry.status_of(job_id)[0] not in ("failed", "completed"):
                time.sleep(0.01)
        return latencies
    finally:
        worker.stop()
        coordinator.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts: checks the harness, not the numbers")
    args = parser.parse_args(argv)
    n_jobs, n_trips, warmup, n_dispatch = (500, 30, 5, 5) if args.quick else (10_000, 300, 30, 200)

    from cis490_train.operator.embedded import RedisServer

    with tempfile.TemporaryDirectory(prefix="cis490-bench-") as tmp:
        workdir = Path(tmp)
        redis_server = RedisServer(workdir / "redis").start()
        print(redis_server.binary.describe())
        url = redis_server.url
        os.environ.update(CIS490_BROKER_URL=url, CIS490_RESULT_BACKEND=url, RAW_BROKER_URL=url)
        sys.path.insert(0, str(HERE))
        try:
            rows = run(url, workdir, n_jobs, n_trips, warmup, n_dispatch)
        finally:
            redis_server.stop()
    print_table(rows)
    if not args.quick:
        save("fleet", {"cores": os.cpu_count(), "python": platform.python_version(), "rows": rows})
    return 0


def run(url: str, workdir: Path, n_jobs: int, n_trips: int, warmup: int, n_dispatch: int) -> list[dict]:
    import celery
    import redis

    from cis490_train.broker.messages import Messages
    from cis490_train.config import Settings
    from cis490_train.operator.enqueue import apply_manifest
    from cis490_train.operator.explain import explain_job
    from cis490_train.core.manifest import Manifest
    from cis490_train.registry import Registry
    from cis490_train.operator.views import counts_of, display_order, jobs_table
    from rich.console import Console

    print(f"{platform.node()}: {os.cpu_count()} cores, python {platform.python_version()}, celery {celery.__version__}, redis-py {redis.__version__}")
    trips = raw_round_trips(url, workdir, n_trips, warmup)
    rt50, rt99 = percentile(trips, 50), percentile(trips, 99)
    print(f"raw round trip over {n_trips} tasks ({warmup} warm-up excluded): p50 {rt50 * 1000:.2f} ms, p99 {rt99 * 1000:.2f} ms")

    dispatch = dispatch_latency(url, workdir, n_dispatch, warmup=min(warmup, 5))
    d50, d99 = percentile(dispatch, 50), percentile(dispatch, 99)
    redis.Redis.from_url(url).flushall()

    r = redis.Redis.from_url(url)
    path = workdir / "bench.toml"
    path.write_text(manifest_text(n_jobs))
    registry = Registry(url)
    messages = Messages.from_settings(Settings.from_env())
    raw_runs, batched_runs, apply_runs = [], [], []
    for _ in range(3):
        for name in ("cis490:*", "cpu.gbt*"):  # kombu's bindings stay: its producers remember declaring them
            for key in list(r.scan_iter(name)):
                r.delete(key)
        raw_runs.append(raw_send(n_jobs))
        assert r.llen("raw-idle") == n_jobs
        r.delete("raw-idle")
        batched_runs.append(raw_send(n_jobs, batch=True))
        assert r.llen("raw-idle") == n_jobs
        r.delete("raw-idle")
        start = time.perf_counter()
        first = apply_manifest(Manifest.load(path), registry, messages)
        apply_runs.append(time.perf_counter() - start)
        assert first.sent == n_jobs and len(first.inserted) == n_jobs
    raw_s, raw_batched_s, apply_s = (statistics.median(x) for x in (raw_runs, batched_runs, apply_runs))

    before = sum(r.llen(k) for k in r.scan_iter("cpu.gbt*"))
    reapply = []
    for _ in range(3):
        start = time.perf_counter()
        again = apply_manifest(Manifest.load(path), registry, messages)
        reapply.append(time.perf_counter() - start)
        assert again.sent == 0 and len(again.unchanged) == n_jobs
    after = sum(r.llen(k) for k in r.scan_iter("cpu.gbt*"))

    null = Console(file=io.StringIO(), width=200)
    status, explain = [], []
    for _ in range(3):
        start = time.perf_counter()
        shown, statuses = registry.first_jobs(display_order, 50)  # what `cis490-train status` reads and prints
        null.print(jobs_table(shown, title=counts_of(statuses), hidden=len(statuses) - len(shown)))
        status.append(time.perf_counter() - start)
        start = time.perf_counter()
        explain_job(registry, registry.find("j42"))
        explain.append(time.perf_counter() - start)
    scrapes = metrics_scrapes(registry, 3)

    return [
        {"figure": "raw task round trip p50 / p99", "baseline": f"{rt50 * 1000:.2f} / {rt99 * 1000:.2f} ms", "fleet": "", "ratio": None, "target": "yardstick", "ok": None},
        {"figure": f"dispatch latency p50 / p99 ({n_dispatch} jobs)", "baseline": f"{rt50 * 1000:.2f} ms round trip", "fleet": f"{d50 * 1000:.1f} / {d99 * 1000:.1f} ms", "ratio": d50 / rt50, "target": "p50 <= 5x round trip", "ok": d50 / rt50 <= 5},
        {"figure": f"enqueue {n_jobs} jobs, first apply (median of 3)", "baseline": f"{raw_s:.2f} s raw send", "fleet": f"{apply_s:.2f} s", "ratio": apply_s / raw_s, "target": "<= 1.3x", "ok": apply_s / raw_s <= 1.3},
        {"figure": "  the same against raw sends in kombu batches", "baseline": f"{raw_batched_s:.2f} s raw batched", "fleet": f"{apply_s:.2f} s", "ratio": apply_s / raw_batched_s, "target": "for reference", "ok": None},
        {"figure": "re-apply unchanged (median of 3)", "baseline": "", "fleet": f"{statistics.median(reapply):.2f} s, {after - before} messages", "ratio": None, "target": "<= 1 s, 0 messages", "ok": statistics.median(reapply) <= 1 and after == before},
        {"figure": f"status with {n_jobs} pending (median of 3)", "baseline": "", "fleet": f"{statistics.median(status):.3f} s", "ratio": None, "target": "<= 1 s", "ok": statistics.median(status) <= 1},
        {"figure": f"explain with {n_jobs} pending (median of 3)", "baseline": "", "fleet": f"{statistics.median(explain):.3f} s", "ratio": None, "target": "<= 1 s", "ok": statistics.median(explain) <= 1},
        {"figure": f"metrics scrape, {n_jobs} pending (median of 3)", "baseline": "", "fleet": f"{statistics.median(scrapes):.3f} s", "ratio": None, "target": "<= 0.25 s", "ok": statistics.median(scrapes) <= 0.25},
    ]


def metrics_scrapes(registry, n: int) -> list[float]:
    """Seconds per HTTP scrape of the fleet's Prometheus metrics (what `cis490-train metrics serve` answers)."""
    import httpx
    from prometheus_client import start_http_server
    from prometheus_client.registry import CollectorRegistry

    from cis490_train.operator.embedded import free_port
    from cis490_train.operator.metrics import FleetCollector

    metrics = CollectorRegistry(auto_describe=False)
    metrics.register(FleetCollector(registry))
    server, thread = start_http_server(free_port(), addr="127.0.0.1", registry=metrics)
    url = f"http://127.0.0.1:{server.server_port}/metrics"
    try:
        with httpx.Client() as client:
            client.get(url).raise_for_status()  # warm-up
            times = []
            for _ in range(n):
                start = time.perf_counter()
                client.get(url).raise_for_status()
                times.append(time.perf_counter() - start)
        return times
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def print_table(rows: list[dict]) -> None:
    cols = ("figure", "baseline", "fleet")
    widths = [max(len(name), *(len(str(r[name])) for r in rows)) + 2 for name in cols]
    print("".join(name.ljust(w) for name, w in zip(cols, widths)) + f"{'ratio':>7}  target")
    for row in rows:
        ratio = f"{row['ratio']:.2f}" if row["ratio"] is not None else ""
        mark = {True: "", False: "  MISSED", None: ""}[row["ok"]]
        print("".join(str(row[name]).ljust(w) for name, w in zip(cols, widths)) + f"{ratio:>7}  {row['target']}{mark}")

if __name__ == "__main__":
    sys.exit(main())
