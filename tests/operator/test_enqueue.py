"""`python -m cis490_train.enqueue`: idempotent, prints what it did, refuses bad input whole."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import redis

from cis490_train.operator.embedded import free_port
from cis490_train.core.manifest import Manifest
from cis490_train.core.routing import QueueClass
from helpers.fleet import ROOT

pytestmark = pytest.mark.integration
FLEET = ROOT / "manifests" / "fleet.example.toml"


def enqueue(env, *args):
    return subprocess.run([sys.executable, "-m", "cis490_train.enqueue", *args], env=env, capture_output=True, text=True, timeout=120)


def broker_messages(url: str) -> dict[str, list[dict]]:
    """Every task message waiting on the broker, by queue key."""
    r = redis.Redis.from_url(url)
    found = {}
    for key in r.scan_iter():
        key = key.decode()
        if r.type(key) == b"list" and key.split(":")[0].startswith(("cpu", "cuda")):
            found[key] = [json.loads(m) for m in r.lrange(key, 0, -1)]
    return found


def test_enqueue_is_idempotent_and_sends_one_message_per_attempt(fleet_env, registry, redis_url):
    manifest = Manifest.load(FLEET)
    first = enqueue(fleet_env, str(FLEET))
    assert first.returncode == 0, first.stderr
    assert f"{len(manifest.jobs)} inserted, 0 updated, 0 unchanged" in first.stdout
    messages = broker_messages(redis_url)
    ids = sorted(m["headers"]["id"] for ms in messages.values() for m in ms)
    assert ids == sorted(f"{j.job_id}:1" for j in manifest.jobs)
    for key, ms in messages.items():
        for m in ms:
            job_id = m["headers"]["id"].split(":")[0]
            assert key.split(":")[0] == QueueClass.for_job(manifest.job(job_id)).name

    second = enqueue(fleet_env, str(FLEET), "--json")
    report = json.loads(second.stdout)
    assert report["sent"] == 0 and not report["inserted"] and len(report["unchanged"]) == len(manifest.jobs)
    assert broker_messages(redis_url) == messages
    assert {r.status for r in registry.jobs()} == {"pending"}


def test_removed_jobs_stay_and_are_reported(fleet_env, registry, tmp_path):
    text = FLEET.read_text()
    assert enqueue(fleet_env, str(FLEET)).returncode == 0
    smaller = tmp_path / "smaller.toml"
    cut = text.index('[[jobs]]\nname = "knn-realistic"')
    smaller.write_text(text[:cut] + text[text.index('[[jobs]]\nname = "knn-oracle"'):])
    out = enqueue(fleet_env, str(smaller), "--json")
    assert json.loads(out.stdout)["not_in_manifest"] == ["knn-realistic"]
    assert registry.find("knn-realistic").status == "pending"


def test_higher_priority_is_sent_at_a_higher_broker_priority(fleet_env, registry, redis_url):
    assert enqueue(fleet_env, str(FLEET)).returncode == 0
    by_name = {r.name: r for r in registry.jobs()}
    assert by_name["gbt-realistic"].broker_priority < by_name["mlp-realistic"].broker_priority < by_name["transformer-oracle-wide"].broker_priority
    r = redis.Redis.from_url(redis_url)
    level = by_name["mlp-realistic"].broker_priority
    key = "cpu.mlp" if level == 0 else f"cpu.mlp:{level}"
    assert r.llen(key) == 2


def test_bad_manifest_enqueues_nothing(fleet_env, redis_url, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('schema_version = 1\n[[jobs]]\nname = "a"\nmodel = "gbt"\n[[jobs]]\nname = "b"\nmodel = "cnnn"\nhyper = { epoch = 1 }\n')
    out = enqueue(fleet_env, str(bad))
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    lines = out.stderr.splitlines()
    assert lines[0] == f"error: {bad}: 1 problem" and "unknown model 'cnnn'" in lines[1]
    assert redis.Redis.from_url(redis_url).dbsize() == 0


def test_unreachable_broker_is_one_line(fleet_env):
    url = f"redis://127.0.0.1:{free_port()}/0"
    out = enqueue(dict(fleet_env, CIS490_BROKER_URL=url), str(FLEET))
    assert out.returncode == 3
    assert out.stderr.strip().splitlines() == [out.stderr.strip()] and url in out.stderr and "Traceback" not in out.stderr


def test_status_shows_the_first_rows_and_counts_every_job(fleet_env, tmp_path):
    from helpers.fleet import cli

    path = tmp_path / "many.toml"
    path.write_text(
        'schema_version = 1\nname = "many"\n'
        + "".join(f'[[jobs]]\nname = "m{i:02d}"\nmodel = "gbt"\nseed = {i}\npriority = {i % 3}\n' for i in range(30))
    )
    assert enqueue(fleet_env, str(path)).returncode == 0
    out = cli(fleet_env, "status", "--limit", "4")
    assert out.returncode == 0, out.stderr
    rows = [line.split()[1] for line in out.stdout.splitlines() if line.startswith("│ m")]
    assert rows == ["m02", "m05", "m08", "m11"]  # pending jobs by priority (2 first), then by name
    assert "30 jobs: 30 pending" in out.stdout and "26 more jobs not shown" in out.stdout
    everything = cli(fleet_env, "status", "--all")
    assert len([line for line in everything.stdout.splitlines() if line.startswith("│ m")]) == 30
    assert "not shown" not in everything.stdout
    other = cli(fleet_env, "status", "--manifest", "other")
    assert "0 jobs: none" in other.stdout
