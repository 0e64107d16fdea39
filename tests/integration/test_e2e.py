"""The whole path with real processes: manifest → class queues → two workers → trainer → store."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from cis490_train.core.manifest import Manifest
from helpers.fleet import cli, wait_for

pytestmark = pytest.mark.integration

TWO_HOSTS = """
schema_version = 1
name = "two-hosts"

[defaults]
split_recipe = "sample"
n_resamples = 200

[hosts.pi]
description = "CPU host that may only train the light models"
allow_jobs = ["gbt", "mlp"]

[hosts.box]
description = "another CPU host"

[[jobs]]
name = "gbt-anywhere"
model = "gbt"
hyper = { n_estimators = 30 }

[[jobs]]
name = "mlp-anywhere"
model = "mlp"
hyper = { epochs = 3 }

[[jobs]]
name = "gbt-box-only"
model = "gbt"
mode = "oracle"
allowed_hosts = ["box"]
hyper = { n_estimators = 30 }

[[jobs]]
name = "mlp-not-on-box"
model = "mlp"
mode = "oracle"
denied_hosts = ["box"]
hyper = { epochs = 3 }

[[jobs]]
name = "gbt-four-cores"
model = "gbt"
split_recipe = "time"
min_cores = 4
hyper = { n_estimators = 30 }

[[jobs]]
name = "mlp-needs-cuda"
model = "mlp"
require_cuda = true
hyper = { epochs = 4 }
"""

ELIGIBLE = {
    "gbt-anywhere": {"pi", "box"},
    "mlp-anywhere": {"pi", "box"},
    "gbt-box-only": {"box"},
    "mlp-not-on-box": {"pi"},
    "gbt-four-cores": {"box"},
}


def python(env, code: str) -> None:
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)


def test_two_hosts_train_every_job_they_may_run_exactly_once(fleet_env, registry, store, start_worker, tmp_path):
    manifest_path = tmp_path / "two-hosts.toml"
    manifest_path.write_text(TWO_HOSTS)
    start_worker("pi", "cpu", cores=2)
    start_worker("box", "cpu", cores=4)
    out = cli(fleet_env, "enqueue", str(manifest_path))
    assert out.returncode == 0, out.stderr
    assert "6 inserted" in out.stdout

    wait_for(lambda: all(registry.find(n).status in ("completed", "failed") for n in ELIGIBLE), 240, "every runnable job to end")

    index = httpx.get(f"{store.url}/v1/artifacts").json()
    for name, hosts in ELIGIBLE.items():
        job = registry.find(name)
        attempts = registry.attempts(job.job_id)
        assert job.status == "completed", (name, job.error)
        assert job.host in hosts, (name, job.host)
        assert len(attempts) == 1 and attempts[0]["outcome"] == "completed" and attempts[0]["host"] in hosts
        body = httpx.get(f"{store.url}/v1/artifacts/{job.artifact_id}").content
        assert hashlib.sha256(body).hexdigest() == job.artifact_id
        rows = [row for row in index if row["artifact_id"] == job.artifact_id]
        assert len(rows) == 1 and rows[0]["job_id"] == job.job_id and rows[0]["host"] == job.host
        assert (Path(fleet_env["CIS490_STORE_ROOT"]) / rows[0]["path"]).is_file()
        metrics = job.result["metrics"]
        assert metrics["macro_f1"]["ci_low"] <= metrics["macro_f1"]["value"] <= metrics["macro_f1"]["ci_high"]
    assert len(index) == len(ELIGIBLE)

    cuda = registry.find("mlp-needs-cuda")
    assert cuda.status == "pending" and cuda.starts == 0
    show = cli(fleet_env, "show", "mlp-needs-cuda")
    assert show.returncode == 0
    assert "no live worker may run it" in show.stdout
    assert "host pi has no CUDA" in show.stdout and "host box has no CUDA" in show.stdout

    status = cli(fleet_env, "status", "--json")
    counts = json.loads(status.stdout)["counts"]
    assert counts == "6 jobs: 1 pending, 5 completed"
    results = json.loads(cli(fleet_env, "results", "--json").stdout)
    assert sorted(r["job"] for r in results) == sorted(ELIGIBLE)


def test_trainer_failure_is_recorded_with_exit_code_and_output(fleet_env, registry, store, start_worker, tmp_path):
    manifest_path = tmp_path / "fail.toml"
    manifest_path.write_text(
        'schema_version = 1\nname = "fail"\n[[jobs]]\nname = "no-such-host"\nmodel = "gbt"\n'
        'split_recipe = "host"\ntrain_hosts = ["nobody-laptop"]\n'
    )
    start_worker("box", "cpu")
    assert cli(fleet_env, "enqueue", str(manifest_path)).returncode == 0
    job = wait_for(lambda: (j := registry.find("no-such-host")).status == "failed" and j, 120, "the job to fail")
    assert job.failure == "trainer_error" and job.starts == 1
    assert job.error.startswith("trainer exited with code 2")
    assert "train_hosts ['nobody-laptop'] are not in the data" in job.error
    show = cli(fleet_env, "show", "no-such-host")
    assert "[trainer_error] trainer exited with code 2" in show.stdout
    assert httpx.get(f"{store.url}/v1/artifacts").json() == []


def test_stale_and_duplicate_messages_change_nothing_and_priority_orders_work(fleet_env, registry, store, start_worker, tmp_path):
    manifest_path = tmp_path / "prio.toml"
    manifest_path.write_text(
        'schema_version = 1\nname = "prio"\n[defaults]\nsplit_recipe = "sample"\nn_resamples = 100\n'
        + "".join(f'[[jobs]]\nname = "p{p}"\nmodel = "gbt"\npriority = {p}\nseed = {p}\nhyper = {{ n_estimators = 10 }}\n' for p in (1, 50, 100))
    )
    assert cli(fleet_env, "enqueue", str(manifest_path)).returncode == 0
    low = registry.find("p1")
    # Requeue the lowest-priority job while no worker runs: its attempt-1 message turns stale,
    # and attempt 2 is sent twice (a duplicate delivery).
    assert registry.requeue(low.job_id).dispatch == 2
    send = (
        "from cis490_train.broker.messages import Messages; from cis490_train.config import Settings; "
        f"Messages.from_settings(Settings.from_env()).send({low.job_id!r}, 2, {low.queue!r}, {low.broker_priority})"
    )
    python(fleet_env, send)
    python(fleet_env, send)

    start_worker("box", "cpu")
    names = [f"p{p}" for p in (1, 50, 100)]
    wait_for(lambda: all(registry.find(n).status == "completed" for n in names), 180, "all three jobs to complete")
    started = sorted(names, key=lambda n: registry.find(n).claimed_at)
    assert started == ["p100", "p50", "p1"]
    attempts = registry.attempts(low.job_id)
    assert [a["attempt"] for a in attempts] == [2] and registry.find("p1").attempt == 2
    assert len(httpx.get(f"{store.url}/v1/artifacts").json()) == 3


def test_a_queue_created_after_boot_reaches_the_running_worker(fleet_env, registry, store, start_worker, tmp_path):
    start_worker("box", "cpu")
    first = tmp_path / "first.toml"
    first.write_text('schema_version = 1\nname = "late"\n[[jobs]]\nname = "g"\nmodel = "gbt"\nsplit_recipe = "sample"\nhyper = { n_estimators = 5 }\n')
    assert cli(fleet_env, "enqueue", str(first)).returncode == 0
    wait_for(lambda: registry.find("g").status == "completed", 120, "the gbt job")
    second = tmp_path / "second.toml"
    second.write_text(first.read_text() + '[[jobs]]\nname = "m"\nmodel = "mlp"\nsplit_recipe = "sample"\nmin_ram_gib = 2.0\nhyper = { epochs = 2 }\n')
    out = cli(fleet_env, "enqueue", str(second))
    assert "1 inserted" in out.stdout and "new queues: cpu.mlp." in out.stdout
    wait_for(lambda: registry.find("m").status == "completed", 120, "the mlp job on a queue created after the worker booted")
    assert Manifest.load(second).job("m").job_id == registry.find("m").job_id


def test_the_trainer_runs_under_the_configured_wrapper(fleet_env, registry, store, start_worker, tmp_path):
    marker = tmp_path / "wrapped.txt"
    wrapper = tmp_path / "wrap.sh"
    wrapper.write_text(f'#!/bin/sh\nprintf "%s|%s" "$1" "$2 $3 $4" > {marker}\nshift\nexec "$@"\n')
    wrapper.chmod(0o755)
    fleet_env["CIS490_TRAINER_WRAPPER"] = f"{wrapper} 'two words'"
    start_worker("box", "cpu")
    path = tmp_path / "wrapped.toml"
    path.write_text('schema_version = 1\nname = "wrapped"\n[[jobs]]\nname = "w"\nmodel = "gbt"\nsplit_recipe = "sample"\nhyper = { n_estimators = 3 }\n')
    assert cli(fleet_env, "enqueue", str(path)).returncode == 0
    job = wait_for(lambda: (j := registry.find("w")).status in ("completed", "failed") and j, 120, "the wrapped job")
    assert job.status == "completed", job.error
    assert marker.read_text() == f"two words|{sys.executable} -m cis490_train.trainer"
    assert job.result["trainer_s"] > 0
