"""Roles and serializers: Redis ACL users `operator` and `worker`, JSON only on the wire."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time

import pytest
import redis
from kombu import Connection, Exchange, Producer, Queue

from cis490_train.broker.app import transport_options

broker_transport_options = transport_options()
from cis490_train.operator.acl import OPERATOR, WORKER, broker_url, new_password, render_acl
from cis490_train.operator.embedded import RedisServer
from cis490_train.operator.metrics import read_snapshot
from cis490_train.registry import Registry
from helpers.fleet import ROOT, cli, wait_for

pytestmark = pytest.mark.integration

MANIFEST = 'schema_version = 1\nname = "acl"\n[[jobs]]\nname = "g"\nmodel = "gbt"\nsplit_recipe = "sample"\nn_resamples = 100\nhyper = { n_estimators = 5 }\n'


@pytest.fixture
def acl_redis(tmp_path, redis_binary_7):
    passwords = {OPERATOR: new_password(), WORKER: new_password()}
    acl = tmp_path / "users.acl"
    acl.write_text(render_acl(passwords[OPERATOR], passwords[WORKER]))
    server = RedisServer(tmp_path / "acl-redis", acl_file=acl).start()
    urls = {role: broker_url(role, pw, port=server.port) for role, pw in passwords.items()}
    yield server, urls
    server.stop()


def as_role(env: dict[str, str], url: str) -> dict[str, str]:
    return dict(env, CIS490_BROKER_URL=url, CIS490_RESULT_BACKEND=url)


def test_worker_credential_gets_noperm_on_operator_actions(fleet_env, acl_redis, tmp_path):
    server, urls = acl_redis
    manifest = tmp_path / "acl.toml"
    manifest.write_text(MANIFEST)
    operator, worker = as_role(fleet_env, urls[OPERATOR]), as_role(fleet_env, urls[WORKER])

    denied = cli(worker, "enqueue", str(manifest))
    assert denied.returncode == 4 and "NOPERM" in denied.stderr and "operator" in denied.stderr
    assert "Traceback" not in denied.stderr
    admin = redis.Redis.from_url(urls[OPERATOR])
    assert admin.scard("cis490:op:jobs") == 0

    assert cli(operator, "enqueue", str(manifest)).returncode == 0
    for action in ("cancel", "requeue"):
        out = cli(worker, action, "g")
        assert out.returncode == 4 and "NOPERM" in out.stderr, (action, out.stderr)
    shown = json.loads(cli(operator, "show", "g", "--json").stdout)
    assert shown["attempt"] == 1 and shown["status"] == "pending" and shown["operator_actions"] == []  # the refused left no trace

    w = redis.Redis.from_url(urls[WORKER])
    for write in (lambda: w.set("cis490:op:spec:x", "{}"), lambda: w.delete("cis490:op:jobs"), lambda: w.hset("cis490:op:hosts", "h", "{}")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            write()
    assert w.smembers("cis490:op:jobs")  # but it may read them
    assert w.hgetall("cis490:stats") == {}  # and the counters, which only the coordinator writes
    with pytest.raises(redis.exceptions.NoPermissionError):
        w.hincrby("cis490:stats", "requeued", 1)
    with pytest.raises(redis.exceptions.NoPermissionError):
        w.flushall()
    anonymous = cli(as_role(fleet_env, f"redis://127.0.0.1:{server.port}/0"), "status")
    assert anonymous.returncode == 3 and "authentication" in anonymous.stderr.lower()


def test_a_worker_runs_jobs_under_the_worker_user(fleet_env, acl_redis, store, start_coordinator, start_worker, tmp_path):
    _, urls = acl_redis
    manifest = tmp_path / "acl.toml"
    manifest.write_text(MANIFEST)
    start_coordinator(as_role(fleet_env, urls[OPERATOR]))
    fleet_env.update(as_role(fleet_env, urls[WORKER]))
    ops = Registry(urls[OPERATOR])
    w = start_worker("locked-down", "cpu", wait=False)
    w.start(ops)
    assert cli(as_role(fleet_env, urls[OPERATOR]), "enqueue", str(manifest)).returncode == 0
    done = wait_for(lambda: (j := ops.find("g")).status == "completed" and j, 120, "the job to complete under the worker user")
    assert done.host == "locked-down" and done.artifact_id
    # The coordinator counted the committed upload in cis490:stats; the worker user may read what the metrics server reads.
    assert ops.stats() == {"uploads": 1, "upload_bytes": done.result["bundle_bytes"]}
    snapshot = read_snapshot(Registry(urls[WORKER]), time.time())
    assert snapshot.jobs["completed"] == 1 and snapshot.stats["upload_bytes"] == done.result["bundle_bytes"]
    # The worker user may write the attempt's output stream too (it lives under cis490:job:).
    log = wait_for(lambda: (e := [f for _, f in ops.log_entries(done.job_id, 1)]) and "end" in e[-1] and e, 10, "the log's end entry")
    assert log[-1]["end"] == "completed" and any('"event": "start"' in f.get("line", "") for f in log)


def test_only_json_is_accepted(fleet_env, registry, redis_url, store, start_worker, tmp_path):
    manifest = tmp_path / "acl.toml"
    manifest.write_text(MANIFEST)
    assert cli(fleet_env, "enqueue", str(manifest)).returncode == 0
    job = registry.find("g")
    assert cli(fleet_env, "cancel", "g").returncode == 0  # keep the real message from running first
    worker = start_worker("box", "cpu")

    queue = Queue("cpu.gbt", Exchange("cpu.gbt", type="direct"), routing_key="cpu.gbt")
    with Connection(redis_url, transport_options=broker_transport_options) as conn:
        producer = Producer(conn)
        producer.publish(
            {"args": [job.job_id, 1]},
            serializer="pickle",
            exchange=queue.exchange,
            routing_key="cpu.gbt",
            declare=[queue],
            headers={"task": "cis490.train", "id": f"{job.job_id}:1"},
        )
    wait_for(lambda: "untrusted content of type pickle" in worker.log.read_text(), 30, "the worker to refuse the pickle message")
    assert worker.alive
    assert registry.find("g").starts == 0 and registry.attempts(job.job_id) == []


def test_shipped_redis_config_requires_auth_keeps_an_aof_and_never_evicts(tmp_path, redis_binary_7):
    from cis490_train.operator.embedded import free_port

    conf = ROOT / "deploy" / "redis" / "cis490-redis.conf"
    generated = subprocess.run([sys.executable, "-m", "cis490_train", "acl", "--port", "0"], capture_output=True, text=True, check=True)
    urls = dict(line.replace(" ", "").split(":CIS490_BROKER_URL=") for line in generated.stderr.splitlines())
    acl = tmp_path / "users.acl"
    acl.write_text(generated.stdout)
    port = free_port()
    proc = subprocess.Popen(
        [str(redis_binary_7.path), str(conf), "--port", str(port), "--dir", str(tmp_path), "--aclfile", str(acl), "--daemonize", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        operator = redis.Redis.from_url(urls["operators"].replace(":0/", f":{port}/"))
        wait_for(lambda: _pings(operator), 15, "the configured redis-server")
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port).ping()
        assert operator.info("persistence")["aof_enabled"] == 1
        assert operator.info("memory")["maxmemory_policy"] == "noeviction"
        worker = redis.Redis.from_url(urls["workers"].replace(":0/", f":{port}/"))
        with pytest.raises(redis.exceptions.NoPermissionError):
            worker.set("cis490:op:jobs", "x")
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def _pings(client) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def test_acl_output_is_private_and_holds_no_password(tmp_path, redis_binary_7):
    out = tmp_path / "users.acl"
    made = subprocess.run([sys.executable, "-m", "cis490_train", "acl", "--output", str(out)], capture_output=True, text=True, check=True)
    urls = dict(line.replace(" ", "").split(":CIS490_BROKER_URL=") for line in made.stderr.splitlines())
    assert made.stdout == "" and out.stat().st_mode & 0o777 == 0o600
    text = out.read_text()
    for url in urls.values():
        password = url.split(":")[2].split("@")[0]
        assert password not in text and f"#{hashlib.sha256(password.encode()).hexdigest()}" in text
    # and Redis takes the hashed file as it is
    server = RedisServer(tmp_path / "hashed", acl_file=out).start()
    try:
        assert redis.Redis.from_url(urls["workers"].replace(":6379/", f":{server.port}/")).ping()
    finally:
        server.stop()
