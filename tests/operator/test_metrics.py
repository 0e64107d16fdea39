"""`cis490-train metrics serve`: a real server process scraped over HTTP, its figures against the registry."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter

import httpx
import pytest
import redis
from kombu import Connection, Exchange, Producer, Queue
from prometheus_client.parser import text_string_to_metric_families

from cis490_train.broker.app import transport_options

broker_transport_options = transport_options()
from cis490_train.operator.embedded import free_port
from cis490_train.core.lifecycle import Lease, Status
from cis490_train.core.specs import JobSpec
from cis490_train.registry import RESENT
from cis490_train.core.routing import QueueClass
from helpers.fleet import cli, wait_for

pytestmark = pytest.mark.integration

MANIFEST = """schema_version = 1
name = "metrics"
[defaults]
split_recipe = "sample"
n_resamples = 100
[[jobs]]
name = "trained"
model = "gbt"
hyper = { n_estimators = 5 }
[[jobs]]
name = "waits-for-a-gpu"
model = "gbt"
mode = "oracle"
require_cuda = true
hyper = { n_estimators = 5 }
"""


@pytest.fixture
def metrics_server(fleet_env, tmp_path):
    port = free_port()
    log = (tmp_path / "metrics.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cis490_train", "metrics", "serve", "--port", str(port)], env=fleet_env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}/metrics"
    wait_for(lambda: _answers(url) or proc.poll() is not None, 30, "the metrics server to listen")
    assert proc.poll() is None, (tmp_path / "metrics.log").read_text()
    yield proc, url
    if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """Every sample of one scrape, by name and sorted labels."""
    text = httpx.get(url, timeout=10).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in text_string_to_metric_families(text) for s in family.samples}


def messages_waiting(url: str, queue: str) -> int:
    """Counted straight from kombu's lists: the queue itself and its priority sub-lists."""
    r = redis.Redis.from_url(url)
    return sum(r.llen(key) for key in r.scan_iter(f"{queue}*") if key.decode().split(":")[0] == queue and r.type(key) == b"list")


def test_scraped_figures_match_the_registry(fleet_env, registry, redis_url, store, start_worker, metrics_server, tmp_path):
    proc, url = metrics_server
    worker = start_worker("box", "cpu")
    path = tmp_path / "metrics.toml"
    path.write_text(MANIFEST)
    assert cli(fleet_env, "enqueue", str(path)).returncode == 0
    done = wait_for(lambda: (j := registry.find("trained")).status == "completed" and j, 120, "the job to complete")

    m = scrape(url)
    assert m[("cis490_up", ())] == 1
    counts = Counter(r.status for r in registry.jobs())
    for status in Status:
        assert m[("cis490_jobs", (("status", status),))] == counts[status], status
    assert counts["completed"] == 1 and counts["pending"] == 1
    waiting = registry.find("waits-for-a-gpu")
    for qc in registry.queue_classes():
        assert m[("cis490_queue_messages", (("queue", qc.name), ("tier", qc.tier)))] == messages_waiting(redis_url, qc.name), qc.name
    assert m[("cis490_queue_messages", (("queue", waiting.queue), ("tier", "cuda")))] == 1
    assert m[("cis490_workers", (("tier", "cpu"),))] == len(registry.workers()) == 1
    assert m[("cis490_uploads_total", ())] == 1
    assert m[("cis490_upload_bytes_total", ())] == done.result["bundle_bytes"] > 0
    assert m[("cis490_leases", ())] == 0 and m[("cis490_heartbeat_age_max_seconds", ())] == 0
    assert all(m[("cis490_recoveries_total", (("kind", kind),))] == 0 for kind in ("requeued", "released", "resent", "fallback"))
    assert m[("cis490_scrape_duration_seconds", ())] > 0

    worker.stop()  # no reaper from here on: what follows is the test's alone
    lease = Lease.new(1, "gone@ghost", "ghost")
    assert registry.claim(waiting.job_id, lease).ok
    beat = registry.find("waits-for-a-gpu").heartbeat_at
    m = scrape(url)
    assert m[("cis490_leases", ())] == 1 and m[("cis490_jobs", (("status", "claimed"),))] == 1
    assert 0 < m[("cis490_heartbeat_age_max_seconds", ())] <= time.time() - beat
    assert ("cis490_workers", (("tier", "cpu"),)) not in m

    assert registry.reap(waiting.job_id, stale_after_s=0.0).dispatch == 2
    m = scrape(url)
    assert m[("cis490_recoveries_total", (("kind", "requeued"),))] == 1 == registry.stats()["requeued"]
    assert m[("cis490_leases", ())] == 0 and m[("cis490_jobs", (("status", "pending"),))] == 1

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0


def test_without_redis_a_scrape_says_down_and_a_busy_port_is_one_line(fleet_env, tmp_path):
    away = dict(fleet_env, CIS490_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cis490_train", "metrics", "serve", "--port", str(port)], env=away, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        wait_for(lambda: _answers(url), 30, "the metrics server to listen")
        m = scrape(url)
        assert m[("cis490_up", ())] == 0 and not any(name == "cis490_jobs" for name, _ in m)

        busy = cli(away, "metrics", "serve", "--port", str(port))
        assert busy.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in busy.stderr and "Traceback" not in busy.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _job(registry, name: str, **kw):
    spec = JobSpec(name=name, model="gbt", split_recipe="sample", seed=len(name), **kw)
    registry.apply([(spec, QueueClass.for_job(spec).name, 0)], "counters")
    return spec.job_id


def test_the_reapers_recoveries_are_counted_where_they_happen(registry, redis_url):
    retried, last_try = _job(registry, "retried"), _job(registry, "last-try", max_attempts=1)
    for job_id in (retried, last_try):
        assert registry.claim(job_id, Lease.new(1, "gone@ghost")).ok
    assert registry.reap(retried, stale_after_s=0.0).dispatch == 2
    assert registry.reap(last_try, stale_after_s=0.0).dispatch is None  # failed for good: not a recovery
    assert registry.stats() == {"requeued": 1}

    grace = _job(registry, "nice-to-have-gpu", prefer_cuda=True, prefer_cuda_grace_s=0.0)
    assert registry.fall_back(grace) is not None
    assert registry.fall_back(last_try) is None  # not pending: nothing moved, nothing counted
    registry.count(RESENT)
    assert registry.stats() == {"requeued": 1, "fallback": 1, "resent": 1}
    lost = _job(registry, "message-deleted")
    assert registry.resend(lost, 1).dispatch == 2 and not registry.resend(lost, 1).ok  # once per attempt
    assert registry.stats() == {"requeued": 1, "fallback": 1, "resent": 1, "lost": 1}


def publish(url: str, job_id: str, attempt: int, queue: str, priority: int) -> None:
    """A task message as Celery sends it (kombu, the fleet's transport options), into a class queue."""
    with Connection(url, transport_options=broker_transport_options) as conn:
        q = Queue(queue, Exchange(queue, type="direct"), routing_key=queue)
        Producer(conn).publish(
            {"args": [job_id, attempt]},
            serializer="json",
            exchange=q.exchange,
            routing_key=queue,
            declare=[q],
            priority=priority,
            headers={"task": "cis490.train", "id": f"{job_id}:{attempt}"},
        )


def test_a_message_taken_and_never_claimed_is_counted_when_released(registry, redis_url):
    job_id = _job(registry, "taken")
    publish(redis_url, job_id, 1, "cpu.gbt", 0)
    with Connection(redis_url, transport_options=broker_transport_options) as conn:
        taken = conn.SimpleQueue("cpu.gbt", no_ack=False).get(timeout=10)  # kombu keeps it in `unacked`, as a worker would
        assert taken.headers["id"] == f"{job_id}:1"
        (released,) = registry.release_taken_unclaimed(time.time() + 1)
    assert released.job_id == job_id and registry.stats() == {"released": 1}


def test_queue_depth_sums_kombus_priority_lists(registry, redis_url):
    for attempt, level in enumerate((0, 3, 9, 9), start=1):
        publish(redis_url, "0123456789abcdef", attempt, "cpu.gbt", level)
    keys = {k.decode() for k in redis.Redis.from_url(redis_url).scan_iter("cpu.gbt*")}
    assert keys == {"cpu.gbt", "cpu.gbt:3", "cpu.gbt:9"}  # the layout the depth relies on
    steps, sep = broker_transport_options["priority_steps"], broker_transport_options["sep"]
    assert registry.queue_depths(["cpu.gbt", "cpu.mlp"], steps, sep) == {"cpu.gbt": 4, "cpu.mlp": 0}
