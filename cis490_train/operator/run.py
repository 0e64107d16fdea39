"""`cis490-train run MANIFEST`: the whole fleet on one machine, for a demo or a laptop.

Starts a private redis-server, the store, the coordinator and workers, applies the manifest,
shows progress, prints the results and stops everything it started. Exits 0
only when every job this machine may run completed.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from rich.console import Console

from ..core.capability import Capability
from ..config import Settings
from ..broker.messages import Messages
from .embedded import CoordinatorProcess, RedisServer, StoreServer, WorkerProcess, child_env, new_token
from .redis_binary import find_redis_server
from ..errors import DataError, EmbeddedRunError
from ..core.lifecycle import TERMINAL, Status
from ..core.manifest import Manifest
from ..registry import Registry
from ..core.routing import CPU, CUDA, QueueClass, ineligibility
from .enqueue import apply_manifest
from .views import leaderboard_rows, plain, results_table
from .watch import watch

POLL_S = 0.5
LIVE_ROWS = 40


def ensure_dataset(settings: Settings, console: Console) -> Path:
    from ..trainer.data import synthesize

    data = settings.data_dir
    if data.exists():
        return data
    if settings.data_dir_configured:
        raise DataError(f"CIS490_DATA_DIR={data} does not exist; point it at a dataset or run `cis490-train data synth --out {data}`")
    console.print(f"no dataset configured: writing the synthetic one to {data}")
    synthesize(data)
    return data


def run_manifest(path: Path, settings: Settings, workers: int, console: Console, keep_dir: bool = False) -> int:
    manifest = Manifest.load(path)
    if workers < 1:
        raise EmbeddedRunError("--workers must be at least 1")
    cap = Capability.load(settings.capability_file, settings.host_id)
    tiers = (CPU, CUDA) if cap.cuda_available else (CPU,)
    policy = manifest.hosts.get(cap.host_id)
    skipped = {}
    for spec in manifest.jobs:
        reason = ineligibility(QueueClass.for_job(spec), cap, policy, tiers)
        if reason is not None:
            skipped[spec.job_id] = f"{spec.name}: {reason}"
    data = ensure_dataset(settings, console)

    tmp = Path(tempfile.mkdtemp(prefix="cis490-run-"))
    started: list = []
    try:
        redis_server = RedisServer(tmp / "redis", binary=find_redis_server(settings.redis_server))
        console.print(plain(redis_server.binary.describe()), markup=False)
        started.append(redis_server.start())
        env = child_env(
            CIS490_BROKER_URL=redis_server.url,
            CIS490_RESULT_BACKEND=redis_server.url,
            CIS490_WORKER_TOKEN=settings.configured_token or new_token(),
            CIS490_DATA_DIR=str(data),
            CIS490_STORE_ROOT=str(settings.store_root),
            CIS490_HOST_ID=cap.host_id,
        )
        store = StoreServer(settings.store_root, env, log=tmp / "store.log").start()
        started.append(store)
        env["CIS490_STORE_URL"] = store.url
        started.append(CoordinatorProcess(env, tmp / "coordinator.log").start())
        registry = Registry(redis_server.url)
        fleet = []
        for i in range(workers):
            w = WorkerProcess(f"run{i + 1}@{cap.host_id}", ",".join(tiers), env, tmp / f"worker{i + 1}.log")
            started.append(w)
            fleet.append(w.start(registry))
        console.print(f"private Redis {redis_server.url}, store {store.url} (root {settings.store_root}), {workers} worker(s) serving {','.join(tiers)}")

        console.print(plain(apply_manifest(manifest, registry, Messages.from_settings(Settings.from_env(env))).summary()), markup=False)
        for line in skipped.values():
            console.print(plain(f"not runnable on this machine: {line}"), markup=False)

        ids = [spec.job_id for spec in manifest.jobs]
        runnable = [i for i in ids if i not in skipped]
        records = _watch(registry, ids, runnable, fleet, console)
        console.print(results_table(leaderboard_rows(records)))
        done = sum(1 for r in records if r.job_id in runnable and r.status == Status.COMPLETED)
        for r in records:
            if r.job_id in runnable and r.status != Status.COMPLETED:
                console.print(plain(f"{r.name}: {r.status} [{r.failure}] {r.error.splitlines()[0] if r.error else ''}"), markup=False)
        console.print(f"{done} of {len(runnable)} runnable job(s) completed; artifacts in {settings.store_root}")
        return 0 if done == len(runnable) else 1
    finally:
        for service in reversed(started):
            service.stop()
        if keep_dir:
            console.print(f"run directory kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def _watch(registry: Registry, ids: list[str], runnable: list[str], fleet: list[WorkerProcess], console: Console):
    """Poll the registry until every runnable job has ended; the live view on a terminal, lines otherwise."""

    def finished(records) -> bool:
        states = {r.job_id: r.status for r in records}
        return all(states.get(i) in TERMINAL for i in runnable)

    def check_workers() -> None:
        if not any(w.alive for w in fleet):
            raise EmbeddedRunError(f"every worker exited; see {fleet[0].log}")

    return watch(registry, console, interval=POLL_S, limit=LIVE_ROWS, ids=ids, done=finished, check=check_workers, hint="Ctrl-C stops the run")
