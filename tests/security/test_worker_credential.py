"""Attacks with the worker credential, against a fleet locked down as deployed: Redis with the ACL
users of `cis490-train acl`, the coordinator with the operator user, real workers with the worker
user. Each test reproduces an attack found by an outside attack run and checks it now fails
harmlessly, and that the fleet goes on training."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from cis490_train.operator.acl import OPERATOR, WORKER, broker_url, new_password, render_acl
from cis490_train.artifacts.client import StoreClient
from cis490_train.operator.embedded import RedisServer, free_port
from cis490_train.registry.functions import STATUS_COUNTS
from cis490_train.ids import task_id
from cis490_train.worker.leases import LeaseClient
from cis490_train.core.lifecycle import Lease
from cis490_train.core.manifest import Manifest
from cis490_train.core.protocol import REQUESTS
from cis490_train.registry import REAPER, Registry
from helpers.fleet import cli, wait_for

pytestmark = pytest.mark.integration


def gbt_manifest(path: Path, names: list[str], name: str = "attack", estimators: int = 5) -> Path:
    jobs = "".join(
        f'[[jobs]]\nname = "{job}"\nmodel = "gbt"\nsplit_recipe = "sample"\nseed = {i}\nn_resamples = 100\nhyper = {{ n_estimators = {estimators} }}\n'
        for i, job in enumerate(names)
    )
    path.write_text(f'schema_version = 1\nname = "{name}"\n{jobs}')
    return path


@dataclass
class AclFleet:
    server: RedisServer
    urls: dict[str, str]
    operator_env: dict[str, str]
    worker_env: dict[str, str]
    ops: Registry

    @property
    def as_worker(self) -> redis.Redis:
        return redis.Redis.from_url(self.urls[WORKER], decode_responses=True)

    def celery(self, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "celery", "-A", "cis490_train", *args], env=env, capture_output=True, text=True, timeout=120)

    def send(self, env: dict[str, str], args: list, queue: str, tid: str) -> None:
        """Send one raw `cis490.train` message, as any holder of a credential that may write queues can."""
        code = (
            "import json, sys\nfrom cis490_train.worker.app import app\n"
            "app.send_task('cis490.train', args=json.loads(sys.argv[1]), queue=sys.argv[2], routing_key=sys.argv[2], task_id=sys.argv[3])\n"
        )
        subprocess.run([sys.executable, "-c", code, json.dumps(args), queue, tid], env=env, check=True, timeout=60)


@pytest.fixture
def acl_fleet(redis_binary_7, fleet_env, store, start_coordinator, start_worker, tmp_path):
    passwords = {OPERATOR: new_password(), WORKER: new_password()}
    acl = tmp_path / "users.acl"
    acl.write_text(render_acl(passwords[OPERATOR], passwords[WORKER]))
    server = RedisServer(tmp_path / "acl-redis", acl_file=acl).start()
    urls = {role: broker_url(role, pw, port=server.port) for role, pw in passwords.items()}
    operator_env = dict(fleet_env, CIS490_BROKER_URL=urls[OPERATOR], CIS490_RESULT_BACKEND=urls[OPERATOR])
    start_coordinator(operator_env)
    fleet_env.update(CIS490_BROKER_URL=urls[WORKER], CIS490_RESULT_BACKEND=urls[WORKER])
    try:
        yield AclFleet(server, urls, operator_env, dict(fleet_env), Registry(urls[OPERATOR]))
    finally:
        for process in [*start_worker.started, *start_coordinator.started]:
            process.stop()
        server.stop()


def worker(start_worker, fleet: AclFleet, host: str, **kwargs):
    return start_worker(host, "cpu", wait=False, **kwargs).start(fleet.ops)


def completed(fleet: AclFleet, name: str, timeout: float = 120):
    return wait_for(lambda: (j := fleet.ops.find(name)).status == "completed" and j, timeout, f"{name} to complete")


def test_a_crafted_message_cannot_name_a_directory_to_delete(acl_fleet, start_worker, tmp_path):
    """Item 1: an absolute 'job id' used to become the attempt's work directory, removed afterwards."""
    fleet = acl_fleet
    victim = tmp_path / "victim"
    (tmp_path / "victim-1").mkdir()
    (tmp_path / "victim-1" / "precious.txt").write_text("keep me")
    with pytest.raises(redis.exceptions.NoPermissionError):
        fleet.as_worker.hset(f"cis490:job:{victim}", mapping={"status": "pending", "attempt": 1})
    # Even a record that got there another way names nothing: the message's arguments are refused first.
    fleet.ops.r.hset(f"cis490:job:{victim}", mapping={"status": "pending", "attempt": 1})
    w = worker(start_worker, fleet, "box")
    crafted = [[str(victim), 1], ["../../victim", 1], ["0123456789abcdef", "1/../../x"], ["0123456789abcdef", -1]]
    for i, args in enumerate(crafted):
        fleet.send(fleet.worker_env, args, "cpu", f"crafted:{i}")  # the tier queue every CPU worker consumes
    wait_for(lambda: w.log.read_text().count("dropping message crafted:") == len(crafted), 60, "the worker to drop every crafted message")
    assert (tmp_path / "victim-1" / "precious.txt").read_text() == "keep me"
    assert w.alive
    # and the host goes on training real jobs
    assert cli(fleet.operator_env, "enqueue", str(gbt_manifest(tmp_path / "m.toml", ["after"]))).returncode == 0
    assert completed(fleet, "after").host == "box"


def test_remote_control_is_the_operators_and_subscriptions_repair_themselves(acl_fleet, start_worker, tmp_path):
    """Item 2: `celery control shutdown`, `revoke` and `add_consumer`/`cancel_consumer` with the worker credential."""
    fleet = acl_fleet
    assert cli(fleet.operator_env, "enqueue", str(gbt_manifest(tmp_path / "m.toml", ["first"]))).returncode == 0
    w = worker(start_worker, fleet, "box")
    completed(fleet, "first")
    for command in (["control", "shutdown"], ["control", "revoke", "0123456789abcdef:1"], ["control", "add_consumer", "cuda.gbt"], ["inspect", "ping"]):
        denied = fleet.celery(fleet.worker_env, *command)
        assert denied.returncode != 0 and "no permissions" in (denied.stdout + denied.stderr), command
    assert w.alive
    assert "pong" in fleet.celery(fleet.operator_env, "inspect", "ping", "-d", w.nodename).stdout  # operators keep inspect
    # An operator's mistake, or anything else that changes what the worker consumes, is undone within seconds.
    assert fleet.celery(fleet.operator_env, "control", "add_consumer", "cuda.gbt", "-d", w.nodename).returncode == 0
    assert fleet.celery(fleet.operator_env, "control", "cancel_consumer", "cpu.gbt", "-d", w.nodename).returncode == 0

    def repaired() -> bool:
        queues = next((x.queues for x in fleet.ops.workers() if x.name == w.nodename), ())
        return "cpu.gbt" in queues and "cuda.gbt" not in queues

    # The heartbeat may still show the queues from before the change: wait for the repair itself, then for the report.
    wait_for(lambda: "leaving queue cuda.gbt" in w.log.read_text() and "subscribing to class queue cpu.gbt" in w.log.read_text(),
             20, "the worker to undo the change")
    wait_for(repaired, 10, "the worker to consume exactly its eligible queues again")


def test_a_pending_job_whose_message_is_gone_is_sent_again(acl_fleet, start_worker, tmp_path):
    """Item 2: `DEL cpu.gbt` dropped queued messages for good; a revoked task id left its job pending for ever."""
    fleet = acl_fleet
    path = gbt_manifest(tmp_path / "m.toml", ["deleted-1", "deleted-2", "revoked"])
    ids = {spec.name: spec.job_id for spec in Manifest.load(path).jobs}
    w = worker(start_worker, fleet, "box")
    # The operator revokes the attempt-1 task id of one job before it exists (a live worker keeps revokes).
    assert fleet.celery(fleet.operator_env, "control", "revoke", task_id(ids["revoked"], 1)).returncode == 0
    w.stop()  # nobody consumes while the other two messages are deleted
    assert cli(fleet.operator_env, "enqueue", str(path)).returncode == 0
    attacker = fleet.as_worker
    wait_for(lambda: any(attacker.scan_iter("cpu.gbt*")), 10, "the messages to reach the broker")
    attacker.delete(*attacker.scan_iter("cpu.gbt*"))
    w = worker(start_worker, fleet, "box2")
    for name in ids:
        job = completed(fleet, name, timeout=180)
        assert job.attempt == 2, (name, job.attempt)  # a new attempt: the old task id may stay revoked
    assert fleet.ops.stats()["lost"] == 3


def test_the_reaper_lock_the_counters_and_other_hosts_requests_are_out_of_reach(acl_fleet, tmp_path):
    """Item 2: `SET cis490:reaper x` without a TTL stopped every reaper; requests carry claim secrets."""
    fleet = acl_fleet
    attacker = fleet.as_worker
    for write in (lambda: attacker.set(REAPER, "x"), lambda: attacker.hset("cis490:stats", "lost", 1), lambda: attacker.lrange(REQUESTS, 0, -1)):
        with pytest.raises(redis.exceptions.NoPermissionError):
            write()
    # A lock that never expires (left by a crash of old code, or written by hand) is taken over.
    fleet.ops.r.set(REAPER, "stuck")
    wait_for(lambda: fleet.ops.reaper() not in (None, "stuck") and fleet.ops.r.pttl(REAPER) > 0, 10, "a coordinator to take the lock over")


def test_only_the_claims_holder_changes_a_job_and_results_come_from_verified_bundles(acl_fleet, start_worker, tmp_path):
    """Item 3: a worker credential could HSET any job `completed` with made-up metrics, and
    `complete` was fenced on a worker name read from the record itself."""
    fleet = acl_fleet
    path = gbt_manifest(tmp_path / "m.toml", ["honest", "target"])
    assert cli(fleet.operator_env, "enqueue", str(path)).returncode == 0
    target = fleet.ops.find("target")
    attacker = fleet.as_worker
    forged = {"status": "completed", "artifact_id": "f" * 64, "result": json.dumps({"metrics": {"accuracy": {"value": 1.0, "ci_low": 1.0, "ci_high": 1.0}}})}
    with pytest.raises(redis.exceptions.NoPermissionError):
        attacker.hset(f"cis490:job:{target.job_id}", mapping=forged)

    # A claim is taken with a secret; the record shows only its hash; another secret changes nothing.
    leases = LeaseClient(Registry(fleet.urls[WORKER]))
    mine = Lease.new(target.attempt, "attacker@evil", "evil")
    assert leases.claim(target.job_id, mine).ok and leases.start(target.job_id, mine).ok
    record = fleet.ops.get(target.job_id)
    assert record.worker == "attacker@evil" and mine.secret not in json.dumps(fleet.ops.r.hgetall(f"cis490:job:{target.job_id}"))
    impostor = Lease(target.attempt, "attacker@evil", "evil", secret="0" * 64)  # same name, same attempt
    for reply in (leases.beat(target.job_id, impostor, {}), leases.complete(target.job_id, impostor, "f" * 64, 1.0), leases.fail(target.job_id, impostor, "trainer_error", "x")):
        assert not reply.ok and "held by another claim" in reply.reason
    # Even the holder cannot commit a bundle the store does not hold, or another job's bundle.
    assert "not in the store" in leases.complete(target.job_id, mine, "f" * 64, 1.0).reason
    worker(start_worker, fleet, "box")
    honest = completed(fleet, "honest")
    stolen = leases.complete(target.job_id, mine, honest.artifact_id, 1.0)
    assert not stolen.ok and f"for job {honest.job_id}, not {target.job_id}" in stolen.reason
    assert fleet.ops.get(target.job_id).status == "running" and fleet.ops.get(target.job_id).artifact_id == ""

    # What `results` shows is what the verified bundle's report says, field for field.
    with StoreClient(fleet.worker_env["CIS490_STORE_URL"], None) as store:
        _, summary = store.meta(honest.artifact_id)
    shown = json.loads(cli(fleet.operator_env, "results", "--json").stdout)
    assert [row["metrics"] for row in shown if row["job"] == "honest"] == [summary.to_json()["metrics"]]


def test_malformed_records_are_reported_and_skipped_never_a_crash(acl_fleet, start_worker, tmp_path):
    """Item 4: `attempt x` on a job in the unsent set killed every worker's sync thread; malformed
    progress, worker and stats fields crashed status, results, workers, show and the metrics."""
    fleet = acl_fleet
    ops = fleet.ops.r
    poison = "badbadbadbadbad0"
    ops.hset(f"cis490:job:{poison}", mapping={"status": "pending", "attempt": "x", "sent": 0, "name": "poison"})
    ops.sadd("cis490:op:jobs", poison)
    ops.zadd("cis490:unsent", {poison: 0})
    ops.hset("cis490:stats", "requeued", "many")
    ops.hset("cis490:op:queues", "cpu.evil", "{not json")  # read by every worker's sync loop each second
    ops.hset("cis490:op:hosts", "box", "[]")  # the policy of the very host that must go on working
    attacker = fleet.as_worker
    attacker.set("cis490:worker:evil@host", "{not json")
    attacker.sadd("cis490:workers", "evil@host")
    attacker.set("cis490:worker:odd@host", json.dumps({"name": "odd@host", "host_id": 5, "capability": "x"}))
    attacker.sadd("cis490:workers", "odd@host")

    path = gbt_manifest(tmp_path / "m.toml", ["survivor", "noisy"])
    assert cli(fleet.operator_env, "enqueue", str(path)).returncode == 0
    noisy = fleet.ops.find("noisy").job_id
    ops.hset(f"cis490:job:{noisy}", mapping={"progress": "{broken", "status": "pending"})
    w = worker(start_worker, fleet, "box")
    completed(fleet, "survivor")
    assert w.alive

    live = json.loads(cli(fleet.operator_env, "workers", "--json").stdout)
    assert [x["name"] for x in live] == [w.nodename]
    for args in (("status",), ("status", "--all"), ("results",), ("workers",), ("show", "survivor")):
        out = cli(fleet.operator_env, *args)
        assert out.returncode == 0 and "Traceback" not in out.stderr, (args, out.stderr)
    status = cli(fleet.operator_env, "status", "--all")
    assert "cis490:job:badbadbadbadbad0" in status.stderr and "'attempt'" in status.stderr  # named, with what is wrong
    bad = cli(fleet.operator_env, "show", poison)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    coordinator_log = "\n".join(p.read_text() for p in tmp_path.glob("coordinator-*.log"))
    assert f"cis490:job:{poison}" in coordinator_log  # the reaper reported the record and carried on

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cis490_train", "metrics", "serve", "--port", str(port)], env=fleet.operator_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        page = wait_for(lambda: _get(url), 30, "a metrics scrape")
        assert page.status_code == 200 and "cis490_up 1.0" in page.text
        bad_records = [line for line in page.text.splitlines() if line.startswith("cis490_bad_records ")]
        assert bad_records and float(bad_records[0].split()[1]) >= 3  # the two worker records and the counter
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_worker_credential_cannot_run_lua(acl_fleet, start_worker, tmp_path):
    """Item 5: the worker user could EVAL a busy loop that answered BUSY to every client."""
    fleet = acl_fleet
    attacker = fleet.as_worker
    attempts = (
        lambda: attacker.eval("while true do end", 0),
        lambda: attacker.script_load("while true do end"),
        lambda: attacker.function_load("#!lua name=evil\nredis.register_function('evil', function() while true do end end)"),
        lambda: attacker.function_flush(),
        lambda: attacker.function_delete("cis490_1"),
    )
    for attempt in attempts:
        with pytest.raises(redis.exceptions.NoPermissionError):
            attempt()
    started = time.monotonic()
    assert fleet.ops.r.ping() and time.monotonic() - started < 1.0
    # The fleet's own functions stay callable, and a worker runs jobs with them under the same user.
    assert attacker.fcall_ro(STATUS_COUNTS, 0, "cis490:op:jobs", "cis490:job:") == []
    assert cli(fleet.operator_env, "enqueue", str(gbt_manifest(tmp_path / "m.toml", ["lua-free"]))).returncode == 0
    worker(start_worker, fleet, "box")
    done = completed(fleet, "lua-free")

    def ended() -> bool:  # the log's end entry follows the commit: it carries the outcome
        log = [f for _, f in fleet.ops.log_entries(done.job_id, 1)]
        return bool(log) and log[-1].get("end") == "completed"

    wait_for(ended, 10, "the log shipper's appends, through a function, to end the log")


def _get(url: str):
    try:
        return httpx.get(url, timeout=5)
    except httpx.HTTPError:
        return None
