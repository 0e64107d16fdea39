"""SIGTERM on a worker: the running attempt fails as "worker shutdown" and is requeued at once."""

from __future__ import annotations

import json
import signal
import time

import pytest
import redis

from helpers.fleet import cli, trainer_processes, wait_for

pytestmark = pytest.mark.integration


def _task_state(url: str, task_id: str) -> dict | None:
    """The task's state as the Celery result backend holds it (what Flower and AsyncResult read)."""
    raw = redis.Redis.from_url(url).get(f"celery-task-meta-{task_id}")
    return json.loads(raw) if raw else None



def test_sigterm_requeues_the_running_attempt_and_leaves_no_trainer(fleet_env, registry, store, start_worker, tmp_path):
    manifest = tmp_path / "long.toml"
    manifest.write_text(
        'schema_version = 1\nname = "long"\n[[jobs]]\nname = "slow-mlp"\nmodel = "mlp"\nsplit_recipe = "sample"\n'
        "n_resamples = 100\nhyper = { epochs = 400, batch_size = 16, early_stopping = false }\n"
    )
    first = start_worker("box", "cpu")
    assert cli(fleet_env, "enqueue", str(manifest)).returncode == 0
    job = wait_for(lambda: (j := registry.find("slow-mlp")).status == "running" and j.progress and j, 120, "the job to run")
    assert trainer_processes(job.job_id)
    def training_state():
        meta = _task_state(fleet_env["CIS490_RESULT_BACKEND"], f"{job.job_id}:1")
        return meta if meta and (meta.get("result") or {}).get("epochs") else None

    meta = wait_for(training_state, 30, "a PROGRESS task state with the epoch count")
    assert meta["status"] == "PROGRESS" and meta["result"]["job_id"] == job.job_id and meta["result"]["host"] == "box"
    assert meta["result"]["epochs"] == 400 and meta["result"]["loss"] is not None

    first.proc.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    requeued = wait_for(lambda: (j := registry.find("slow-mlp")).attempt == 2 and j, 10, "the attempt to be requeued")
    assert time.monotonic() - sent < 5
    assert requeued.status == "pending" and requeued.failure == "worker_shutdown"
    (attempt,) = registry.attempts(job.job_id)
    assert attempt["outcome"] == "failed" and attempt["failure"] == "worker_shutdown"
    wait_for(lambda: not trainer_processes(job.job_id), 10, "the trainer process group to be gone")
    first.proc.wait(timeout=30)

    start_worker("box2", "cpu")
    wait_for(lambda: registry.find("slow-mlp").status == "running", 60, "attempt 2 to start on the other worker")
    again = registry.find("slow-mlp")
    assert again.attempt == 2 and again.host == "box2"
