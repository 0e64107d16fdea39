"""Real `celery worker` processes: tier checks at boot, -Q expansion, subscriptions that follow the registry."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cis490_train.core.specs import HostSpec
from cis490_train.core.routing import QueueClass
from helpers.fleet import cli, wait_for, write_capability

pytestmark = pytest.mark.integration


def worker_queues(registry, name):
    for w in registry.workers():
        if w.name == name:
            return set(w.queues)
    return None


def test_worker_refuses_a_tier_its_hardware_cannot_serve(fleet_env, tmp_path):
    cap = write_capability(tmp_path / "cap.json", "laptop", gpus=[8.0])
    for tiers, expected in (("cuda-24g", "error: -Q cuda-24g: needs a GPU with 24 GiB"), ("cuda,gpu", "error: -Q gpu: not a tier")):
        proc = subprocess.run(
            [sys.executable, "-m", "celery", "-A", "cis490_train", "worker", "-Q", tiers, "-n", "refuse@test"],
            env=dict(fleet_env, CIS490_CAPABILITY_FILE=str(cap)),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and errors[0].startswith(expected)
        assert "Traceback" not in proc.stderr


def test_cuda_worker_subscribes_to_every_tier_its_card_satisfies(registry, start_worker):
    classes = [QueueClass("cuda", "mlp"), QueueClass("cuda-8g", "mlp"), QueueClass("cuda-16g", "mlp"), QueueClass("cpu", "gbt")]
    registry.add_queue_classes(classes)
    w = start_worker("ws", "cuda", gpus=[12.0])
    assert worker_queues(registry, w.nodename) >= {"cuda.mlp", "cuda-8g.mlp"}
    assert not worker_queues(registry, w.nodename) & {"cuda-16g.mlp", "cpu.gbt"}


def test_new_queue_classes_and_policies_reach_a_running_worker(registry, start_worker):
    registry.add_queue_classes([QueueClass("cpu", "gbt")])
    w = start_worker("pi", "cpu")
    assert "cpu.gbt" in worker_queues(registry, w.nodename)

    registry.add_queue_classes([QueueClass("cpu", "mlp"), QueueClass("cpu", "knn", denied_hosts=("pi",))])
    wait_for(lambda: "cpu.mlp" in worker_queues(registry, w.nodename), 15, "the worker to subscribe to cpu.mlp")
    assert not any(q.startswith("cpu.knn") for q in worker_queues(registry, w.nodename))

    registry.set_hosts([HostSpec("pi", allow_jobs=("gbt",))])
    wait_for(lambda: "cpu.mlp" not in worker_queues(registry, w.nodename), 15, "the worker to leave cpu.mlp")
    assert "cpu.gbt" in worker_queues(registry, w.nodename)


def test_workers_command_lists_live_workers(fleet_env, registry, start_worker):
    start_worker("cpu-box", "cpu", cores=8, ram=32.0)
    start_worker("gpu-box", "cuda,cpu", gpus=[24.0])
    out = cli(fleet_env, "workers", "--json")
    assert out.returncode == 0, out.stderr
    workers = {w["host_id"]: w for w in json.loads(out.stdout)}
    assert set(workers) == {"cpu-box", "gpu-box"}
    assert workers["cpu-box"]["capability"]["cpu_cores"] == 8 and workers["cpu-box"]["tiers"] == ["cpu"]
    assert workers["gpu-box"]["capability"]["cuda_devices"][0]["vram_total_gib"] == 24.0
    table = cli(fleet_env, "workers")
    assert "2 live workers" in table.stdout
