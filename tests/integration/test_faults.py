"""Faults with real processes and real signals: lost workers, partitions, cancel, timeouts, OOM, grace."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import httpx
import psutil
import pytest

from cis490_train.operator.embedded import CoordinatorProcess
from helpers.fleet import cli, trainer_processes, wait_for, write_capability

pytestmark = pytest.mark.integration

SAMPLE = 'split_recipe = "sample"\nn_resamples = 100\n'


def manifest(tmp_path, body: str, name: str = "faults") -> str:
    path = tmp_path / f"{name}.toml"
    path.write_text(f'schema_version = 1\nname = "{name}"\n{body}')
    return str(path)


def mlp_job(name: str, epochs: int, extra: str = "") -> str:
    return f'[[jobs]]\nname = "{name}"\nmodel = "mlp"\n{SAMPLE}{extra}hyper = {{ epochs = {epochs}, batch_size = 16, early_stopping = false }}\n'



def running(registry, name):
    job = registry.find(name)
    return job if job.status == "running" and job.progress.get("epochs") else None


def artifacts(store) -> list[dict]:
    return httpx.get(f"{store.url}/v1/artifacts").json()


@pytest.mark.slow  # waits out the default 15 s stale threshold
def test_sigkilled_worker_is_recovered_within_20s_with_default_settings(fleet_env, registry, store, start_worker, tmp_path):
    for key in ("CIS490_HEARTBEAT_S", "CIS490_STALE_AFTER_S"):
        fleet_env.pop(key, None)
    doomed = start_worker("doomed", "cpu")
    assert cli(fleet_env, "enqueue", manifest(tmp_path, mlp_job("victim", 250))).returncode == 0
    job = wait_for(lambda: running(registry, "victim"), 60, "the job to run")
    start_worker("survivor", "cpu")

    doomed.proc.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    wait_for(lambda: not trainer_processes(job.job_id), 5, "the orphaned trainer to exit")
    wait_for(lambda: (j := registry.find("victim")).attempt == 2 and j, 25, "the reaper to requeue")
    recovery = time.monotonic() - killed
    print(f"\nrecovery after SIGKILL: {recovery:.1f}s (heartbeat 5s, stale after 15s)")
    assert recovery < 20
    first = registry.attempts(job.job_id)[0]
    assert first["failure"] == "worker_lost" and "no heartbeat" in first["error"]
    assert registry.stats()["requeued"] == 1
    done = wait_for(lambda: (j := registry.find("victim")).status == "completed" and j, 120, "attempt 2 to complete")
    assert done.host == "survivor" and [a["outcome"] for a in registry.attempts(job.job_id)] == ["failed", "completed"]
    assert [a["job_id"] for a in artifacts(store)] == [job.job_id]


def test_lost_worker_fails_the_job_after_max_attempts(fleet_env, registry, store, start_worker, tmp_path):
    fleet_env.update(CIS490_HEARTBEAT_S="0.5", CIS490_STALE_AFTER_S="2")
    doomed = start_worker("doomed", "cpu")
    start_worker("watcher", "cuda", gpus=[8.0])
    assert cli(fleet_env, "enqueue", manifest(tmp_path, mlp_job("once", 2000, "max_attempts = 1\n"))).returncode == 0
    wait_for(lambda: running(registry, "once"), 60, "the job to run")
    doomed.proc.send_signal(signal.SIGKILL)
    job = wait_for(lambda: (j := registry.find("once")).status == "failed" and j, 30, "the job to fail")
    assert job.failure == "worker_lost" and "gave up after 1 of max_attempts=1" in job.error


def test_partitioned_worker_cannot_commit_after_its_job_was_reassigned(fleet_env, registry, store, start_worker, tmp_path):
    fleet_env.update(CIS490_HEARTBEAT_S="0.5", CIS490_STALE_AFTER_S="2")
    cut_off = start_worker("cut-off", "cpu")
    assert cli(fleet_env, "enqueue", manifest(tmp_path, mlp_job("contested", 120))).returncode == 0
    job = wait_for(lambda: running(registry, "contested"), 60, "the job to run")
    (old_trainer,) = trainer_processes(job.job_id)

    cut_off.proc.send_signal(signal.SIGSTOP)  # frozen: no heartbeats, like a host cut off from Redis
    try:
        start_worker("other", "cpu")
        wait_for(lambda: registry.find("contested").attempt == 2, 30, "the reaper to reassign the job")
        wait_for(lambda: registry.find("contested").status in ("claimed", "running"), 30, "attempt 2 to start")
    finally:
        cut_off.proc.send_signal(signal.SIGCONT)
    wait_for(lambda: not old_trainer.is_running() or old_trainer.status() == psutil.STATUS_ZOMBIE, 15, "the stale trainer to be stopped")
    done = wait_for(lambda: (j := registry.find("contested")).status == "completed" and j, 120, "attempt 2 to complete")
    assert done.attempt == 2 and done.host == "other"
    rows = artifacts(store)
    assert len(rows) == 1 and rows[0]["attempt"] == 2 and rows[0]["artifact_id"] == done.artifact_id
    assert [a["outcome"] for a in registry.attempts(job.job_id)] == ["failed", "completed"]


def test_cancel_stops_a_running_trainer_within_2s_and_commits_nothing(fleet_env, registry, store, start_worker, tmp_path):
    start_worker("box", "cpu")
    body = mlp_job("long", 5000) + mlp_job("queued", 5, "seed = 1\n")
    assert cli(fleet_env, "enqueue", manifest(tmp_path, body)).returncode == 0
    job = wait_for(lambda: running(registry, "long"), 60, "the job to run")
    (trainer,) = trainer_processes(job.job_id)

    asked = time.monotonic()
    out = cli(fleet_env, "cancel", "long", "queued")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "cancelled long" in out.stdout and "2 cancelled, 0 refused" in out.stdout
    trainer.wait(timeout=5)
    gone = time.monotonic() - asked
    print(f"\n`cis490-train cancel` started -> trainer gone: {gone:.2f}s")
    assert gone <= 2.0
    assert registry.find("long").status == "cancelled" and registry.find("queued").status == "cancelled"
    wait_for(lambda: not registry.workers()[0].active, 10, "the worker to be idle again")
    assert registry.find("queued").starts == 0
    assert artifacts(store) == []
    assert registry.attempts(job.job_id)[-1]["outcome"] == "cancelled"
    again = cli(fleet_env, "cancel", "long")
    assert again.returncode == 1 and "already cancelled" in again.stdout


def test_requeue_reruns_from_any_state_and_filters(fleet_env, registry, store, start_worker, tmp_path):
    start_worker("box", "cpu")
    body = (
        '[[jobs]]\nname = "g"\nmodel = "gbt"\n' + SAMPLE + 'hyper = { n_estimators = 5 }\n'
        '[[jobs]]\nname = "k"\nmodel = "gbt"\nsplit_recipe = "host"\ntrain_hosts = ["nobody-laptop"]\n'
    )
    assert cli(fleet_env, "enqueue", manifest(tmp_path, body)).returncode == 0
    wait_for(lambda: registry.find("g").status == "completed" and registry.find("k").status == "failed", 120, "one success, one failure")
    out = cli(fleet_env, "requeue", "--all-failed")
    assert out.returncode == 0 and "requeued k" in out.stdout and "1 requeued" in out.stdout
    wait_for(lambda: (j := registry.find("k")).status == "failed" and j.attempt == 2, 60, "the failed job to run again")
    first = registry.find("g").artifact_id
    assert cli(fleet_env, "requeue", "g").returncode == 0
    wait_for(lambda: (j := registry.find("g")).status == "completed" and j.attempt == 2, 60, "the completed job to run again")
    assert registry.find("g").artifact_id != first and len(registry.attempts(registry.find("g").job_id)) == 2
    bad = cli(fleet_env, "requeue", "g", "--all-failed")
    assert bad.returncode == 2 and "not both" in bad.stderr


def test_prefer_cuda_job_falls_back_to_cpu_after_its_grace(fleet_env, registry, store, start_worker, tmp_path):
    start_worker("cpu-only", "cpu")
    body = mlp_job("nice-to-have-gpu", 3, "prefer_cuda = true\nprefer_cuda_grace_s = 3\n")
    assert cli(fleet_env, "enqueue", manifest(tmp_path, body)).returncode == 0
    job = registry.find("nice-to-have-gpu")
    assert job.queue == "cuda.mlp" and job.fallback_queue.startswith("cpu.mlp")
    done = wait_for(lambda: (j := registry.find("nice-to-have-gpu")).status == "completed" and j, 60, "the job to run on CPU")
    assert done.host == "cpu-only" and done.attempt == 1 and done.starts == 1
    assert done.claimed_at - done.created_at >= 3
    assert registry.stats()["fallback"] == 1


def test_timeout_fails_without_retry_and_oom_is_retried(fleet_env, registry, store, start_worker, tmp_path):
    start_worker("box", "cpu")
    body = mlp_job("slow", 5000, "max_runtime_s = 2\n") + mlp_job("oom", 300, "seed = 2\n")
    assert cli(fleet_env, "enqueue", manifest(tmp_path, body)).returncode == 0
    slow = wait_for(lambda: (j := registry.find("slow")).status == "failed" and j, 60, "the timeout")
    assert slow.failure == "timeout" and slow.starts == 1 and "max_runtime_s=2" in slow.error

    job = wait_for(lambda: running(registry, "oom"), 60, "the second job to run")
    (trainer,) = trainer_processes(job.job_id)
    trainer.send_signal(signal.SIGKILL)  # what the kernel's OOM killer does
    wait_for(lambda: registry.find("oom").attempt == 2, 30, "the OOM-killed attempt to be retried")
    first = registry.attempts(job.job_id)[0]
    assert first["failure"] == "oom" and "SIGKILL" in first["error"]
    wait_for(lambda: registry.find("oom").status == "completed", 120, "attempt 2 to complete")
    show = cli(fleet_env, "show", "oom").stdout
    assert "[oom]" in show and "completed" in show


def test_cuda_job_waits_for_free_vram_and_says_why(fleet_env, registry, store, start_worker, tmp_path):
    fleet_env["CIS490_VRAM_WAIT_S"] = "0.5"
    cap_path = tmp_path / "cap-gpu-host.json"
    worker = start_worker("gpu-host", "cuda", gpus=[8.0])
    busy = json.loads(cap_path.read_text())
    busy["cuda_devices"][0]["vram_free_gib"] = 2.0
    cap_path.write_text(json.dumps(busy))
    body = mlp_job("big", 3, "require_cuda = true\nmin_vram_gib = 4\n")
    assert cli(fleet_env, "enqueue", manifest(tmp_path, body)).returncode == 0
    waiting = wait_for(lambda: (j := registry.find("big")).waiting and j, 30, "the worker to put the job back")
    assert waiting.status == "pending" and waiting.starts == 0
    assert "gpu-host had 2 GiB VRAM free of the 4 GiB the job needs" in waiting.waiting
    explain = cli(fleet_env, "explain", "big").stdout
    assert "put back: gpu-host had 2 GiB VRAM free" in explain

    write_capability(cap_path, "gpu-host", gpus=[8.0])  # the other process let go of the memory
    claimed = wait_for(lambda: (j := registry.find("big")).starts == 1 and j, 30, "the job to be claimed")
    assert claimed.host == "gpu-host"
    assert worker.alive


def test_exactly_one_coordinator_reaps_and_another_takes_over(fleet_env, registry, start_coordinator):
    fleet_env.update(CIS490_HEARTBEAT_S="0.5", CIS490_STALE_AFTER_S="2")
    first = start_coordinator()
    second = CoordinatorProcess(dict(fleet_env), first.log.with_name("coordinator-second.log"))
    second.proc = subprocess.Popen([sys.executable, "-m", "cis490_train", "coordinator"], env=second.env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    start_coordinator.started.append(second)
    by_pid = {str(c.proc.pid): c for c in (first, second)}
    holder = wait_for(registry.reaper, 10, "a coordinator to take the lock")
    seen = {wait_for(registry.reaper, 5, "the lock") for _ in range(20)}
    assert seen == {holder}  # it keeps the lock while it lives
    pid = holder.split("-", 1)[1].split("@", 1)[0]
    by_pid[pid].proc.send_signal(signal.SIGKILL)
    (other,) = set(by_pid) - {pid}
    wait_for(lambda: (registry.reaper() or "").startswith(f"coordinator-{other}@"), 10, "the other coordinator to take over the lock")
