"""Chaos: 100+ short jobs on three stand-in hosts while workers are SIGKILLed, one is SIGTERMed
and Redis restarts. Every job must end completed, committed once, with one artifact."""

from __future__ import annotations

import random
import signal
import time

import httpx
import pytest

from cis490_train.operator.embedded import RedisServer
from cis490_train.errors import BrokerUnavailable
from cis490_train.registry import Registry
from helpers.fleet import cli, trainer_processes

pytestmark = [pytest.mark.integration, pytest.mark.slow]

JOBS = 105
HOSTS = ("alpha", "beta", "gamma")
MAX_KILLS = 12


@pytest.fixture
def chaos_redis(tmp_path):
    server = RedisServer(tmp_path / "chaos-redis", appendonly=True).start()
    yield server
    server.stop()


def chaos_manifest(path):
    jobs = []
    for i in range(JOBS):
        if i % 3:
            jobs.append(f'[[jobs]]\nname = "g{i}"\nmodel = "gbt"\nseed = {i}\npriority = {i % 4}\nhyper = {{ n_estimators = 4, max_depth = 2 }}\n')
        else:
            jobs.append(f'[[jobs]]\nname = "m{i}"\nmodel = "mlp"\nseed = {i}\nhyper = {{ epochs = 2, hidden_dim = 8 }}\n')
    path.write_text('schema_version = 1\nname = "chaos"\n[defaults]\nsplit_recipe = "sample"\nn_resamples = 50\nmax_attempts = 20\n' + "".join(jobs))



def test_chaos(fleet_env, chaos_redis, store, start_worker, tmp_path):
    rng = random.Random(490)
    url = chaos_redis.url
    fleet_env.update(CIS490_BROKER_URL=url, CIS490_RESULT_BACKEND=url, CIS490_HEARTBEAT_S="0.5", CIS490_STALE_AFTER_S="2", CIS490_VRAM_WAIT_S="1")
    registry = Registry(url, patience_s=30)
    manifest = tmp_path / "chaos.toml"
    chaos_manifest(manifest)

    workers = {}
    for host in HOSTS:
        w = start_worker(host, "cpu", wait=False)
        workers[host] = w.start(registry)
    assert cli(fleet_env, "enqueue", str(manifest)).returncode == 0

    started = time.monotonic()
    kills = restarts = 0
    sigtermed = redis_restarted = False
    watching: dict[str, tuple[int, float]] = {}  # job id -> (attempt it lost, when)
    requeued: dict[str, float] = {}
    recoveries: list[float] = []  # kill -> next attempt queued (the reaper's part)
    restarts_after: list[float] = []  # kill -> next attempt running (includes waiting behind the queue)
    next_kill = time.monotonic() + 4
    records = []
    while time.monotonic() - started < 240:
        try:
            records = registry.jobs()
        except BrokerUnavailable:
            time.sleep(0.2)
            continue
        by_id = {r.job_id: r for r in records}
        for job_id, (attempt, when) in list(watching.items()):
            r = by_id[job_id]
            if r.attempt == attempt and r.status == "completed":
                del watching[job_id]  # it finished just before its worker was killed
                continue
            if r.attempt > attempt and job_id not in requeued:
                requeued[job_id] = time.monotonic() - when
                recoveries.append(requeued[job_id])
            if r.attempt > attempt and r.status in ("claimed", "running", "completed"):
                restarts_after.append(time.monotonic() - when)
                del watching[job_id]
        done = sum(r.status == "completed" for r in records)
        if done == JOBS and not watching:
            break
        assert not any(r.status == "failed" for r in records), [(r.name, r.error) for r in records if r.status == "failed"]

        now = time.monotonic()
        if now >= next_kill and kills < MAX_KILLS:
            host = rng.choice(HOSTS)
            victim = workers[host]
            for r in records:
                if r.worker == victim.nodename and r.status in ("claimed", "running"):
                    watching[r.job_id] = (r.attempt, now)
            victim.proc.send_signal(signal.SIGKILL)
            victim.proc.wait()
            kills += 1
            workers[host] = start_worker(host, "cpu", wait=False).start(registry)
            restarts += 1
            next_kill = time.monotonic() + rng.uniform(3, 6)
        elif not sigtermed and done >= JOBS // 3:
            host = rng.choice(HOSTS)
            workers[host].proc.send_signal(signal.SIGTERM)
            workers[host].proc.wait(timeout=60)
            sigtermed = True
            workers[host] = start_worker(host, "cpu", wait=False).start(registry)
            restarts += 1
        elif not redis_restarted and done >= 2 * JOBS // 3:
            chaos_redis.restart()
            redis_restarted = True
        time.sleep(0.2)

    elapsed = time.monotonic() - started
    requeues = sum(max(0, r.attempt - 1) for r in records)
    print(
        f"\nchaos: {JOBS} jobs, {kills} SIGKILLs, 1 SIGTERM, {restarts} worker restarts, 1 Redis restart, "
        f"{requeues} requeues; kill -> requeued: max {max(recoveries, default=0):.1f}s; "
        f"kill -> running again: max {max(restarts_after, default=0):.1f}s (behind the backlog of its priority level); "
        f"{elapsed:.0f}s in all"
    )
    assert sigtermed and redis_restarted and kills >= 3
    assert sum(r.status == "completed" for r in records) == JOBS, [(r.name, r.status, r.attempt) for r in records if r.status != "completed"]
    assert not watching, {by_id[j].name: (a, by_id[j].status, by_id[j].attempt) for j, (a, _) in watching.items()}

    index = httpx.get(f"{store.url}/v1/artifacts").json()
    by_job = {}
    for row in index:
        by_job.setdefault(row["job_id"], []).append(row)
    orphans = 0
    for r in records:
        attempts = registry.attempts(r.job_id)
        assert [a["outcome"] for a in attempts].count("completed") == 1, (r.name, attempts)
        committed = [row for row in by_job.get(r.job_id, []) if row["artifact_id"] == r.artifact_id]
        assert len(committed) == 1 and committed[0]["attempt"] == r.attempt, (r.name, by_job.get(r.job_id))
        # A worker lost between its upload and its commit leaves that upload behind; the attempt is
        # recorded as lost and the job is trained again. Nothing else may leave a second artifact.
        lost = {a["attempt"] for a in attempts if a.get("failure") == "worker_lost"}
        extra = [row for row in by_job.get(r.job_id, []) if row["artifact_id"] != r.artifact_id]
        assert all(row["attempt"] in lost for row in extra), (r.name, extra, attempts)
        orphans += len(extra)
    assert len(index) == JOBS + orphans and orphans <= kills + 1  # a kill, or the Redis restart outlasting a lease
    assert trainer_processes(fleet_env["CIS490_WORK_DIR"]) == []
