"""The fleet around real jobs: per-job overhead, recovery from a lost worker, cancel, makespan, memory.

Every figure runs real `celery worker` processes, the real store and a private redis-server, and real
trainer subprocesses on the small synthetic dataset, except the makespan: there the three stand-in hosts
share this machine's cores, so each runs `bench/simtrainer.py` (through CIS490_TRAINER_WRAPPER), which
sleeps for a duration scaled down from the job's size instead of training. Warm-up jobs are left out of
the overhead figure; recovery, cancel and makespan are medians of repeated runs.

    python bench/jobs.py [--quick]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from fleet import percentile, print_table  # noqa: E402
from report import save  # noqa: E402

# Stand-ins for three hosts of manifests/fleet.example.toml (cores, RAM GiB).
HOSTS = {"lab-ws1": (16, 64.0), "elliott-thinkpad": (8, 16.0), "pi-coordinator": (4, 8.0)}
# The lowest settings the chaos test runs without a spurious requeue (CIS490_STALE_AFTER_S > 2x heartbeat).
LOWEST = {"CIS490_HEARTBEAT_S": "0.5", "CIS490_STALE_AFTER_S": "2"}


def capability(host: str, cores: int, ram: float) -> dict:
    """A stand-in host as a capability file describes it: no GPU, all its RAM free."""
    return {"host_id": host, "cpu_cores": cores, "ram_total_gib": ram, "ram_available_gib": ram, "cuda_devices": []}


def poll(predicate, timeout: float, what: str, interval: float = 0.005):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


class Fleet:
    """A private redis-server, the store, a dataset and the workers one figure needs."""

    def __init__(self, workdir: Path):
        from cis490_train.operator.embedded import CoordinatorProcess, RedisServer, StoreServer, new_token
        from cis490_train.broker.messages import Messages
        from cis490_train.config import Settings
        from cis490_train.registry import Registry
        from cis490_train.trainer.data import synthesize

        self.workdir = workdir
        self.redis = RedisServer(workdir / "redis").start()
        os.environ.update(CIS490_BROKER_URL=self.redis.url, CIS490_RESULT_BACKEND=self.redis.url, RAW_BROKER_URL=self.redis.url)
        self.data = synthesize(workdir / "data", small=True)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CIS490_")}
        self.env.update(
            CIS490_BROKER_URL=self.redis.url,
            CIS490_RESULT_BACKEND=self.redis.url,
            CIS490_DATA_DIR=str(self.data),
            CIS490_WORKER_TOKEN=new_token(),
            CIS490_STORE_ROOT=str(workdir / "store"),
            CIS490_TRAINER_THREADS="1",
            HOME=str(workdir / "home"),
            XDG_DATA_HOME=str(workdir / "home" / "data"),
            XDG_CACHE_HOME=str(workdir / "home" / "cache"),
        )
        self.store = StoreServer(workdir / "store", self.env, log=workdir / "store.log").start()
        self.env["CIS490_STORE_URL"] = self.store.url
        self.coordinator = CoordinatorProcess(self.env, workdir / "coordinator.log").start()
        self.registry = Registry(self.redis.url)
        self.messages = Messages.from_settings(Settings.from_env(self.env))
        self.workers: list = []
        self._count = itertools.count(1)

    def worker(self, host: str, cores: int = 2, ram: float = 16.0, **env: str):
        from cis490_train.operator.embedded import WorkerProcess

        n = next(self._count)
        cap = self.workdir / f"cap-{host}-{n}.json"
        cap.write_text(json.dumps(capability(host, cores, ram)))
        wenv = dict(self.env, CIS490_CAPABILITY_FILE=str(cap), CIS490_HOST_ID=host, CIS490_WORK_DIR=str(self.workdir / f"work-{n}"), **env)
        w = WorkerProcess(f"w{n}-{host}@bench", "cpu", wenv, self.workdir / f"worker-{n}.log").start(self.registry)
        self.workers.append(w)
        return w

    def coordinate(self, **env: str) -> None:
        """Start the coordinator again with these settings: the reaper's stale threshold is its own."""
        from cis490_train.operator.embedded import CoordinatorProcess

        self.coordinator.stop()
        self.coordinator = CoordinatorProcess(dict(self.env, **env), self.workdir / "coordinator.log").start()

    def flush(self) -> None:
        import redis

        for w in self.workers:
            w.stop()
        self.workers.clear()
        redis.Redis.from_url(self.redis.url).flushall()

    def apply(self, text: str) -> list[str]:
        from cis490_train.operator.enqueue import apply_manifest
        from cis490_train.core.manifest import Manifest

        manifest = Manifest.from_toml(text)
        apply_manifest(manifest, self.registry, self.messages)
        return [spec.job_id for spec in manifest.jobs]

    def close(self) -> None:
        for w in self.workers:
            w.stop()
        self.coordinator.stop()
        self.store.stop()
        self.redis.stop()


def one_job(name: str, model: str, hyper: str, seed: int = 0, **keys: str) -> str:
    extra = "".join(f"{k} = {v}\n" for k, v in keys.items())
    return (
        f'schema_version = 1\nname = "bench"\n[defaults]\nsplit_recipe = "sample"\nn_resamples = 50\n'
        f'[[jobs]]\nname = "{name}"\nmodel = "{model}"\nseed = {seed}\nhyper = {{ {hyper} }}\n{extra}'
    )


def long_job(name: str, seed: int) -> str:
    """An mlp that trains for minutes unless stopped: the target of kills and cancels."""
    return one_job(name, "mlp", "epochs = 100000, hidden_dim = 16, early_stopping = false", seed=seed)


def finished(fleet: Fleet, job_id: str, timeout: float):
    """The job's record once it has completed; its error if it ended any other way."""
    job = poll(lambda: (j := fleet.registry.get(job_id)).status in ("completed", "failed", "cancelled") and j, timeout, f"job {job_id}", 0.01)
    if job.status != "completed":
        raise RuntimeError(f"job {job.name} {job.status}: {job.error}")
    return job


def trainer_of(worker) -> psutil.Process | None:
    try:
        for child in psutil.Process(worker.proc.pid).children(recursive=True):
            if "cis490_train.trainer" in child.cmdline():
                return child
    except psutil.NoSuchProcess:
        return None
    return None


def overhead(fleet: Fleet, n: int, warmup: int) -> list[dict[str, float]]:
    """End to end of a trivial job (apply -> completed), split into its parts; the trainer's own time out."""
    fleet.worker("lab-ws1")
    rows = []
    for i in range(warmup + n):
        start = time.time()
        (job_id,) = fleet.apply(one_job(f"o{i}", "gbt", "n_estimators = 1, max_depth = 1", seed=i))
        job = finished(fleet, job_id, 120)
        if i < warmup:
            continue
        trainer_s = job.result["trainer_s"]
        total = job.finished_at - start
        rows.append(
            {
                "total": total,
                "trainer": trainer_s,
                "overhead": total - trainer_s,
                "dispatch": job.claimed_at - start,
                "spawn": job.started_at - job.claimed_at,
                "after": job.finished_at - job.started_at - trainer_s,
            }
        )
    fleet.flush()
    return rows


def recovery(fleet: Fleet, repeats: int, env: dict[str, str]) -> list[float]:
    """SIGKILL the worker running a job; seconds until the job runs again on the other, idle host."""
    fleet.coordinate(**env)
    times = []
    for r in range(repeats):
        a = fleet.worker("lab-ws1", **env)
        (job_id,) = fleet.apply(long_job(f"k{r}", seed=r))
        poll(lambda: fleet.registry.get(job_id).progress, 120, "the job's first progress", 0.05)
        b = fleet.worker("elliott-thinkpad", **env)
        killed = time.time()
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait()
        job = poll(lambda: (j := fleet.registry.get(job_id)).status == "running" and j.attempt == 2 and j, 120, "the second attempt", 0.01)
        assert job.worker == b.nodename, (job.worker, b.nodename)
        times.append(job.started_at - killed)
        fleet.registry.cancel(job_id)
        poll(lambda: trainer_of(b) is None, 30, "the cancelled trainer to exit", 0.05)
        fleet.flush()
    fleet.coordinate()
    return times


def cancel(fleet: Fleet, repeats: int) -> list[float]:
    """`cis490-train cancel JOB` as an operator types it, until the trainer process is gone."""
    w = fleet.worker("lab-ws1")
    times = []
    for r in range(repeats):
        (job_id,) = fleet.apply(long_job(f"c{r}", seed=100 + r))
        poll(lambda: fleet.registry.get(job_id).progress, 120, "the job's first progress", 0.05)
        trainer = trainer_of(w)
        assert trainer is not None
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "cis490_train", "cancel", job_id], env=fleet.env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        poll(lambda: not trainer.is_running() or trainer.status() == psutil.STATUS_ZOMBIE, 30, "the trainer to exit", 0.002)
        times.append(time.perf_counter() - start)
        poll(lambda: fleet.registry.get(job_id).status == "cancelled" and trainer_of(w) is None, 30, "the worker to let go")
    fleet.flush()
    return times


def simulated_fleet_manifest() -> str:
    """The example fleet manifest with every CUDA wish dropped: the bench host has no GPU."""
    import tomllib

    import tomli_w

    doc = tomllib.loads((ROOT / "manifests" / "fleet.example.toml").read_text())
    for job in doc["jobs"]:
        for key in ("require_cuda", "prefer_cuda", "min_vram_gib"):
            job.pop(key, None)
    return tomli_w.dumps(doc)


def eligibility(jobs, policies) -> dict[str, frozenset[str]]:
    """Which of the stand-in hosts may run each job, by the fleet's own routing rules."""
    from cis490_train.core.capability import Capability
    from cis490_train.core.routing import QueueClass, ineligibility

    caps = {h: Capability.from_dict(capability(h, c, r)) for h, (c, r) in HOSTS.items()}
    return {spec.job_id: frozenset(h for h in HOSTS if ineligibility(QueueClass.for_job(spec), caps[h], policies.get(h), ("cpu",)) is None) for spec in jobs}


def lower_bound(durations: dict[str, float], eligible: dict[str, frozenset[str]]) -> tuple[float, str]:
    """max(longest job, max over host subsets S of the work only S may do / |S|): no schedule beats it."""
    best, why = max(durations.values()), "longest job"
    for k in range(1, len(HOSTS) + 1):
        for subset in itertools.combinations(HOSTS, k):
            work = sum(d for job_id, d in durations.items() if eligible[job_id] <= set(subset))
            if work / k > best:
                best, why = work / k, f"work only {'+'.join(subset)} may do / {k}"
    return best, why


def priority_schedule(jobs, durations: dict[str, float], eligible: dict[str, frozenset[str]]) -> float:
    """The makespan of a zero-overhead fleet that keeps the manifest's priority order: a free host takes
    the highest-priority waiting job it may run."""
    waiting = sorted(jobs, key=lambda spec: -spec.priority)
    free_at = dict.fromkeys(HOSTS, 0.0)
    while waiting:
        now = min(free_at.values())
        for host in [h for h, t in free_at.items() if t <= now]:
            spec = next((j for j in waiting if host in eligible[j.job_id]), None)
            if spec is None:
                later = [t for t in free_at.values() if t > now]
                free_at[host] = min(later) if later else float("inf")
                continue
            waiting.remove(spec)
            free_at[host] = now + durations[spec.job_id]
    return max(t for t in free_at.values() if t != float("inf"))


def makespan(fleet: Fleet, repeats: int, scale: float) -> list[dict[str, float | str]]:
    from cis490_train.core.manifest import Manifest

    text = simulated_fleet_manifest()
    manifest = Manifest.from_toml(text)
    eligible = eligibility(manifest.jobs, manifest.hosts)
    wrapper = f"{sys.executable} {HERE / 'simtrainer.py'}"
    runs = []
    for _ in range(repeats):
        for host, (cores, ram) in HOSTS.items():
            fleet.worker(host, cores=cores, ram=ram, CIS490_TRAINER_WRAPPER=wrapper, SIMTRAINER_SCALE=str(scale))
        start = time.time()
        ids = fleet.apply(text)
        jobs = [finished(fleet, job_id, 900) for job_id in ids]
        durations = {j.job_id: j.result["trainer_s"] for j in jobs}
        bound, why = lower_bound(durations, eligible)
        ideal = priority_schedule(manifest.jobs, durations, eligible)
        span = max(j.finished_at for j in jobs) - start
        runs.append({"makespan": span, "bound": bound, "why": why, "ratio": span / bound, "priority_ideal": ideal, "jobs": len(jobs)})
        fleet.flush()
    return runs


def worker_rss(fleet: Fleet) -> tuple[float, float]:
    """Resident memory (MiB) of an idle fleet worker and of a bare Celery worker with the same pool."""
    from rawapp import noop

    w = fleet.worker("lab-ws1")
    ours = idle_rss(w.proc.pid)
    fleet.flush()
    env = dict(os.environ, RAW_BROKER_URL=fleet.redis.url, PYTHONPATH=f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    raw = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "rawapp", "worker", "-Q", "raw", "-n", "raw@bench", "--without-mingle", "--without-gossip", "-l", "WARNING"],
        env=env, cwd=HERE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        noop.apply_async(queue="raw").get(timeout=60)
        bare = idle_rss(raw.pid)
    finally:
        raw.terminate()
        raw.wait(timeout=30)
    return ours, bare


def idle_rss(pid: int, seconds: float = 3.0) -> float:
    """The largest RSS of the process and its children over a few idle seconds (the sync loop runs every second)."""
    proc, peak = psutil.Process(pid), 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        peak = max(peak, proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True)))
        time.sleep(0.1)
    return peak / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts: checks the harness, not the numbers")
    args = parser.parse_args(argv)
    # counts, and bench seconds per full-scale second of the simulated trainers
    n, warmup, kills, lowest_kills, cancels, spans, sim_scale = (3, 1, 0, 1, 1, 1, 0.0005) if args.quick else (30, 3, 3, 5, 5, 3, 0.01)

    import celery

    print(f"{platform.node()}: {os.cpu_count()} cores, python {platform.python_version()}, celery {celery.__version__}, psutil {psutil.__version__}")
    with tempfile.TemporaryDirectory(prefix="cis490-bench-jobs-") as tmp:
        fleet = Fleet(Path(tmp))
        print(fleet.redis.binary.describe())
        try:
            rows = run(fleet, n, warmup, kills, lowest_kills, cancels, spans, sim_scale)
        finally:
            fleet.close()
    print_table(rows)
    if not args.quick:
        save("jobs", {"cores": os.cpu_count(), "python": platform.python_version(), "rows": rows})
    return 0


def run(fleet: Fleet, n: int, warmup: int, kills: int, lowest_kills: int, cancels: int, spans: int, sim_scale: float) -> list[dict]:
    from cis490_train.config import Settings

    rows = []
    parts = overhead(fleet, n, warmup)
    o50, o99 = percentile([p["overhead"] for p in parts], 50), percentile([p["overhead"] for p in parts], 99)
    split = ", ".join(f"{k} {statistics.median(p[k] for p in parts) * 1000:.0f}" for k in ("dispatch", "spawn", "after"))
    print(f"trivial job over {n} runs ({warmup} warm-up excluded): trainer p50 {statistics.median(p['trainer'] for p in parts):.2f} s; fleet part medians (ms): {split}")
    rows.append({"figure": f"fleet overhead per job p50 / p99 ({n} jobs)", "baseline": "", "fleet": f"{o50 * 1000:.0f} / {o99 * 1000:.0f} ms", "ratio": None, "target": "p50 <= 100 ms", "ok": o50 <= 0.1})

    defaults = Settings.from_env({})
    if kills:
        times = recovery(fleet, kills, {})
        label = f"heartbeat {defaults.heartbeat_s:g} s, stale {defaults.stale_after_s:g} s"
        print(f"lost-worker recovery, defaults ({label}): " + ", ".join(f"{t:.1f}" for t in times) + " s")
        med = statistics.median(times)
        rows.append({"figure": f"lost-worker recovery, defaults (median of {kills})", "baseline": label, "fleet": f"{med:.1f} s", "ratio": None, "target": "<= 20 s", "ok": med <= 20})
    times = recovery(fleet, lowest_kills, LOWEST)
    label = f"heartbeat {LOWEST['CIS490_HEARTBEAT_S']} s, stale {LOWEST['CIS490_STALE_AFTER_S']} s"
    print(f"lost-worker recovery, lowest safe ({label}): " + ", ".join(f"{t:.2f}" for t in times) + " s")
    rows.append({"figure": f"lost-worker recovery, lowest (median of {lowest_kills})", "baseline": label, "fleet": f"{statistics.median(times):.2f} s", "ratio": None, "target": "reported", "ok": None})

    times = cancel(fleet, cancels)
    print("cancel (CLI start included): " + ", ".join(f"{t:.2f}" for t in times) + " s")
    med = statistics.median(times)
    rows.append({"figure": f"cancel -> trainer gone (median of {cancels})", "baseline": "", "fleet": f"{med:.2f} s", "ratio": None, "target": "<= 2 s", "ok": med <= 2})

    if spans:
        runs = makespan(fleet, spans, sim_scale)
        for r in runs:
            print(
                f"makespan {r['makespan']:.1f} s; lower bound {r['bound']:.1f} s ({r['why']}): {r['ratio']:.3f}x; "
                f"zero-overhead priority-order schedule {r['priority_ideal']:.1f} s: fleet {r['makespan'] / r['priority_ideal']:.3f}x of it"
            )
        mid = sorted(runs, key=lambda r: r["ratio"])[len(runs) // 2]
        rows.append({"figure": f"makespan, fleet example on 3 hosts (median of {spans})", "baseline": f"{mid['bound']:.1f} s lower bound", "fleet": f"{mid['makespan']:.1f} s", "ratio": mid["ratio"], "target": "<= 1.10x", "ok": mid["ratio"] <= 1.10})
        rows.append({"figure": "  the same against a zero-overhead fleet in priority order", "baseline": f"{mid['priority_ideal']:.1f} s", "fleet": f"{mid['makespan']:.1f} s", "ratio": mid["makespan"] / mid["priority_ideal"], "target": "for reference", "ok": None})

    ours, bare = worker_rss(fleet)
    rows.append({"figure": "idle worker RSS", "baseline": f"{bare:.0f} MiB bare Celery", "fleet": f"{ours:.0f} MiB", "ratio": ours / bare, "target": "<= 1.3x", "ok": ours / bare <= 1.3})
    return rows


if __name__ == "__main__":
    sys.exit(main())
