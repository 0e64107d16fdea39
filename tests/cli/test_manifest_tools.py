"""`cis490-train manifest init | check | diff`: a starter that loads, checks without Redis, and a preview
that says exactly what the next enqueue does."""

from __future__ import annotations

import json
import os
import tomllib
from collections import Counter

import pytest
import redis

from cis490_train.operator.embedded import free_port
from cis490_train.core.hyper import MODELS, SCHEMAS
from cis490_train.core.lifecycle import Lease
from cis490_train.core.manifest import _DEFAULTABLE, _HOST_KEYS, _JOB_KEYS, Manifest
from cis490_train.core.routing import QueueClass, job_tier
from cis490_train.core.starter import starter_document
from helpers.fleet import ROOT, cli

FLEET = ROOT / "manifests" / "fleet.example.toml"


def plain_env() -> dict[str, str]:
    """No Redis anywhere: a broker URL on a port nothing listens on."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIS490_")}
    return dict(env, CIS490_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0")


def test_init_writes_a_commented_starter_that_loads_and_checks(tmp_path):
    path = tmp_path / "fleet.toml"
    made = cli(plain_env(), "manifest", "init", str(path), "--name", "lab")
    assert made.returncode == 0, made.stderr
    text = path.read_text()
    manifest = Manifest.load(path)
    assert manifest.name == "lab" and manifest.jobs and manifest.hosts
    assert tomllib.loads(text) == starter_document("lab")  # the comments change nothing
    comments = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    for key in (*_JOB_KEYS, *_DEFAULTABLE, *_HOST_KEYS):
        assert key in comments, key
    for model in MODELS:
        assert model in comments
        for param in SCHEMAS[model]:
            assert f"{param.name}=" in comments, (model, param.name)
    assert max(map(len, text.splitlines())) <= 100

    check = cli(plain_env(), "manifest", "check", str(path))
    assert check.returncode == 0 and "valid" in check.stdout, check.stderr

    stdout = cli(plain_env(), "manifest", "init", "-", "--name", "lab")
    assert stdout.returncode == 0 and stdout.stdout == text


def test_init_refuses_to_overwrite_unless_forced(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text("# my own work\n")
    refused = cli(plain_env(), "manifest", "init", str(path))
    assert refused.returncode == 2 and "--force" in refused.stderr and "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert path.read_text() == "# my own work\n"
    forced = cli(plain_env(), "manifest", "init", str(path), "--force")
    assert forced.returncode == 0 and Manifest.load(path).jobs
    assert [p.name for p in tmp_path.iterdir()] == ["mine.toml"]  # no temporary file left behind


def test_check_shows_where_jobs_go_without_redis(tmp_path):
    out = cli(plain_env(), "manifest", "check", str(FLEET), "--json")
    assert out.returncode == 0, out.stderr
    (report,) = json.loads(out.stdout)
    manifest = Manifest.load(FLEET)
    assert report["ok"] and report["jobs"] == len(manifest.jobs) and report["hosts"] == sorted(manifest.hosts)
    assert {q["queue"]: q["jobs"] for q in report["queues"]} == Counter(QueueClass.for_job(j).name for j in manifest.jobs)
    assert report["tiers"] == Counter(job_tier(j) for j in manifest.jobs)
    assert report["fallback_queues"] == sorted({QueueClass.for_job(j, tier="cpu").name for j in manifest.jobs if j.prefer_cuda and not j.require_cuda})

    text = cli(plain_env(), "manifest", "check", str(FLEET))
    assert text.returncode == 0 and "cuda-8g.transformer " in text.stdout and f"{len(manifest.jobs)} jobs" in text.stdout


def test_check_prints_every_problem_of_every_file_and_exits_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('schema_version = 2\n[[jobs]]\nname = "a"\nmodel = "gbtt"\n[[jobs]]\nname = "b"\nmodel = "mlp"\nhyper = { epoch = 3 }\n')
    missing = tmp_path / "missing.toml"
    out = cli(plain_env(), "manifest", "check", str(bad), str(FLEET), str(missing))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"error: {bad}: 3 problems" in out.stderr
    for problem in ("schema_version must be 1", "unknown model 'gbtt'", "unknown mlp hyperparameter 'epoch'", f"manifest not found at {missing}"):
        assert problem in out.stderr
    assert f"{FLEET}: valid" in out.stdout

    as_json = json.loads(cli(plain_env(), "manifest", "check", str(bad), str(FLEET), "--json").stdout)
    assert [r["ok"] for r in as_json] == [False, True] and len(as_json[0]["problems"]) == 3


V1 = """schema_version = 1
name = "tools"
[defaults]
split_recipe = "sample"
[[jobs]]
name = "moves"
model = "gbt"
priority = 100
[[jobs]]
name = "finished"
model = "gbt"
mode = "oracle"
priority = 100
[[jobs]]
name = "busy"
model = "mlp"
priority = 50
[[jobs]]
name = "dropped"
model = "knn"
priority = 10
[[jobs]]
name = "needs-cores"
model = "knn"
mode = "oracle"
priority = 10
[[jobs]]
name = "steady"
model = "mlp"
mode = "oracle"
priority = 50
"""


def edited(text: str) -> str:
    """V1 edited: a pending job changes priority, a pending job asks for cores, a finished and a running
    job change a scheduling field, a job is dropped and one is added (the set of priorities stays)."""
    text = text.replace('name = "moves"\nmodel = "gbt"\npriority = 100', 'name = "moves"\nmodel = "gbt"\npriority = 50')
    for name, line in (("finished", "n_resamples = 50"), ("busy", "max_attempts = 5"), ("needs-cores", "min_cores = 2")):
        text = text.replace(f'name = "{name}"\n', f'name = "{name}"\n{line}\n')
    text = text.replace('[[jobs]]\nname = "dropped"\nmodel = "knn"\npriority = 10\n', "")
    return text + '[[jobs]]\nname = "new"\nmodel = "cnn"\npriority = 10\n'


def redis_contents(url: str) -> dict[bytes, bytes]:
    r = redis.Redis.from_url(url)
    return {key: r.dump(key) for key in sorted(r.scan_iter())}


def broker_task_ids(url: str) -> dict[str, str]:
    """Task id -> the class queue its message waits in."""
    r = redis.Redis.from_url(url)
    found = {}
    for key in r.scan_iter():
        name = key.decode()
        if r.type(key) == b"list" and name.split(":")[0].startswith(("cpu", "cuda")):
            for raw in r.lrange(key, 0, -1):
                found[json.loads(raw)["headers"]["id"]] = name.split(":")[0]
    return found


@pytest.mark.integration
def test_diff_predicts_exactly_what_the_next_enqueue_does(fleet_env, registry, redis_url, tmp_path):
    path = tmp_path / "tools.toml"
    path.write_text(V1)
    assert cli(fleet_env, "enqueue", str(path)).returncode == 0
    finished, busy = registry.find("finished"), registry.find("busy")
    lease = Lease.new(1, "w@test", "h")
    for step in (registry.claim, registry.start):
        assert step(finished.job_id, lease).ok and step(busy.job_id, lease).ok
    assert registry.complete(finished.job_id, lease, "a" * 64, {"metrics": {}}).ok

    path.write_text(edited(V1))
    before = redis_contents(redis_url)
    out = cli(fleet_env, "manifest", "diff", str(path), "--json")
    assert out.returncode == 0, out.stderr
    assert redis_contents(redis_url) == before  # a preview writes nothing
    preview = json.loads(out.stdout)
    predicted = {j["name"]: (j["action"], j["attempt"], j["send"]) for j in preview["jobs"]}
    assert {name: action for name, (action, _, _) in predicted.items()} == {
        "moves": "reroute",
        "finished": "leave",
        "busy": "leave",
        "needs-cores": "reroute",
        "steady": "unchanged",
        "new": "insert",
    }
    assert [o["name"] for o in preview["orphans"]] == ["dropped"]
    changes = {j["name"]: j["changes"] for j in preview["jobs"]}
    assert "priority: 100 -> 50" in changes["moves"] and "broker priority: 0 -> 1" in changes["moves"] and "n_resamples: 1000 -> 50" in changes["finished"]
    assert any(c.startswith("queue: cpu.knn -> cpu.knn.") for c in changes["needs-cores"])

    text = cli(fleet_env, "manifest", "diff", str(path))
    assert text.returncode == 0
    for word in ("re-route   moves", "leave      finished", "insert     new", "orphan     dropped", "new queue  cpu.cnn"):
        assert word in text.stdout, word

    applied = cli(fleet_env, "enqueue", str(path), "--json")
    assert applied.returncode == 0, applied.stderr
    report = json.loads(applied.stdout)
    assert {j["name"]: (j["action"], j["attempt"], j["send"]) for j in report["jobs"]} == predicted
    assert report["not_in_manifest"] == ["dropped"] and report["sent"] == preview["sends"]
    assert report["new_queues"] == preview["new_queues"]

    # What the apply really did, read back from the registry and the broker.
    messages = broker_task_ids(redis_url)
    for name, (action, attempt, send) in predicted.items():
        job = registry.find(name)
        assert job.attempt == attempt
        if send:
            assert messages.get(f"{job.job_id}:{attempt}") == job.queue
    assert registry.find("finished").status == "completed" and registry.find("finished").spec.n_resamples == 50
    assert registry.find("busy").status == "running" and registry.find("busy").spec.max_attempts == 5
    assert registry.find("dropped").status == "pending"

    again = json.loads(cli(fleet_env, "manifest", "diff", str(path), "--json").stdout)
    assert again["counts"] == {"insert": 0, "unchanged": 6, "reroute": 0, "leave": 0, "orphan": 1} and again["sends"] == 0


@pytest.mark.integration
def test_diff_of_a_bad_manifest_or_without_redis_is_one_clear_error(fleet_env, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("schema_version = 1\n")
    out = cli(fleet_env, "manifest", "diff", str(bad))
    assert out.returncode == 2 and "no [[jobs]]" in out.stderr
    away = cli(dict(fleet_env, CIS490_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0"), "manifest", "diff", str(FLEET))
    assert away.returncode == 3 and len(away.stderr.strip().splitlines()) == 1
