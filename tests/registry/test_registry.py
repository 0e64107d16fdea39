"""The registry against a real redis-server: the earlier system's queue behaviours, fenced."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from cis490_train.errors import BrokerUnavailable, JobNotFound
from cis490_train.core.lifecycle import Lease
from cis490_train.core.specs import HostSpec, JobSpec
from cis490_train.registry import Registry, WorkerInfo
from cis490_train.core.routing import QueueClass

pytestmark = pytest.mark.integration


def plans(*specs: JobSpec, priority: int = 0):
    return [(s, QueueClass.for_job(s).name, priority) for s in specs]


def spec(name: str, **kw) -> JobSpec:
    kw.setdefault("model", "gbt")
    return JobSpec(name=name, seed=sum(map(ord, name)), **kw)


def test_apply_is_idempotent(registry):
    a, b = spec("a"), spec("b")
    first = registry.apply(plans(a, b), "m")
    assert [(o.outcome, o.needs_send) for o in first] == [("inserted", True)] * 2
    registry.mark_sent((o.job_id, o.attempt) for o in first)
    again = registry.apply(plans(a, b), "m")
    assert [(o.outcome, o.needs_send) for o in again] == [("unchanged", False)] * 2
    assert {r.status for r in registry.jobs()} == {"pending"}


def test_unsent_pending_job_is_resent_on_reapply(registry):
    a = spec("a")
    registry.apply(plans(a), "m")
    (again,) = registry.apply(plans(a), "m")
    assert again.outcome == "unchanged" and again.needs_send


def test_changed_scheduling_reroutes_a_pending_job(registry):
    a = spec("a")
    (first,) = registry.apply(plans(a), "m")
    registry.mark_sent([(first.job_id, first.attempt)])
    moved = dataclasses.replace(a, min_cores=2)
    (o,) = registry.apply(plans(moved), "m")
    assert o.outcome == "updated" and o.needs_send and o.attempt == 2
    rec = registry.get(a.job_id)
    assert rec.queue == QueueClass.for_job(moved).name and rec.spec.min_cores == 2


def test_no_double_assignment_under_concurrent_claims(registry):
    a = spec("a")
    registry.apply(plans(a), "m")
    results = []
    barrier = threading.Barrier(8)

    def claim(i):
        barrier.wait()
        results.append(Registry(registry.url).claim(a.job_id, Lease.new(1, f"w{i}", f"h{i}")).ok)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1
    rec = registry.get(a.job_id)
    assert rec.status == "claimed" and rec.starts == 1 and len(registry.attempts(a.job_id)) == 1


def test_heartbeat_from_wrong_worker_or_attempt_is_rejected(registry):
    a = spec("a")
    registry.apply(plans(a), "m")
    lease = Lease.new(1, "w1", "h1")
    assert registry.claim(a.job_id, lease).ok
    assert not registry.beat(a.job_id, Lease.new(1, "w2", "h2")).ok
    assert not registry.beat(a.job_id, Lease.new(2, "w1", "h1")).ok
    assert registry.beat(a.job_id, lease, {"epoch": 3}).ok
    assert registry.get(a.job_id).progress == {"epoch": 3}


def test_lifecycle_with_artifact_id(registry):
    a = spec("a")
    registry.apply(plans(a), "m")
    lease = Lease.new(1, "w1", "h1")
    assert registry.claim(a.job_id, lease).ok and registry.start(a.job_id, lease).ok
    assert registry.complete(a.job_id, lease, "ab" * 32, {"metrics": {"accuracy": {"value": 0.9, "ci_low": 0.8, "ci_high": 0.95}}}).ok
    rec = registry.get(a.job_id)
    assert rec.status == "completed" and rec.artifact_id == "ab" * 32 and rec.result["metrics"]["accuracy"]["value"] == 0.9
    assert registry.attempts(a.job_id)[-1]["outcome"] == "completed"
    assert not registry.complete(a.job_id, lease, "cd" * 32, {}).ok
    assert registry.get(a.job_id).artifact_id == "ab" * 32


def test_requeue_from_a_stuck_claim_fences_the_old_holder(registry):
    a = spec("a")
    registry.apply(plans(a), "m")
    old = Lease.new(1, "w1", "h1")
    registry.claim(a.job_id, old)
    t = registry.requeue(a.job_id)
    assert t.ok and t.dispatch == 2
    assert registry.get(a.job_id).status == "pending"
    assert not registry.start(a.job_id, old).ok
    assert not registry.complete(a.job_id, old, "ab" * 32, {}).ok
    assert registry.claim(a.job_id, Lease.new(2, "w2", "h2")).ok


def test_operators_cancels_and_requeues_are_audited_per_job_newest_first(registry):
    a, b = spec("a"), spec("b")
    registry.apply(plans(a, b), "m")
    assert registry.requeue(a.job_id).ok and registry.cancel(b.job_id).ok and registry.cancel(a.job_id).ok
    assert not registry.cancel(a.job_id).ok  # refused: nothing recorded
    assert [(e["action"], e["attempt"]) for e in registry.audit(job_id=a.job_id)] == [("cancel", 2), ("requeue", 1)]
    assert [e["job_id"] for e in registry.audit()] == [a.job_id, b.job_id, a.job_id]
    assert len(registry.audit(limit=1)) == 1


def test_find_by_id_prefix_and_name(registry):
    a, b = spec("alpha"), spec("beta")
    registry.apply(plans(a, b), "m")
    assert registry.find(a.job_id).name == "alpha"
    assert registry.find(a.job_id[:8]).name == "alpha"
    assert registry.find("beta").job_id == b.job_id
    with pytest.raises(JobNotFound):
        registry.find("gamma")


def test_queue_classes_and_hosts(registry):
    q1, q2 = QueueClass("cpu", "gbt"), QueueClass("cuda", "mlp")
    assert registry.add_queue_classes([q1, q2]) == ["cpu.gbt", "cuda.mlp"]
    assert registry.add_queue_classes([q1]) == []
    assert {q.name for q in registry.queue_classes()} == {"cpu.gbt", "cuda.mlp"}
    registry.set_hosts([HostSpec("pi", allow_jobs=("gbt",))])
    assert registry.host_policy("pi").allow_jobs == ("gbt",) and registry.host_policy("other") is None


def test_workers_expire_without_heartbeat(registry):
    info = WorkerInfo("w@h", "h", ("cpu",), ("cpu.gbt",), {"host_id": "h", "cpu_cores": 2, "ram_total_gib": 8.0}, 1, time.time(), time.time())
    registry.register_worker(info, ttl_s=0.3)
    assert [w.name for w in registry.workers()] == ["w@h"]
    deadline = time.monotonic() + 5
    while registry.workers() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert registry.workers() == []


def test_unreachable_redis_is_one_clear_error():
    from cis490_train.operator.embedded import free_port

    url = f"redis://:secret@127.0.0.1:{free_port()}/0"
    with pytest.raises(BrokerUnavailable) as info:
        Registry(url).ping()
    assert "127.0.0.1" in str(info.value) and "secret" not in str(info.value)


def test_first_jobs_reads_the_rows_a_status_page_shows_and_every_status(registry):
    from cis490_train.operator.views import display_order

    specs = [spec(f"j{i}", priority=i % 3) for i in range(12)]
    registry.apply([(s, QueueClass.for_job(s).name, 0) for s in specs], "m")
    registry.apply(plans(spec("other")), "n")
    running = specs[4]
    lease = Lease.new(1, "w@h", "h")
    assert registry.claim(running.job_id, lease).ok and registry.start(running.job_id, lease).ok

    shown, statuses = registry.first_jobs(display_order, 4, manifest="m")
    assert sorted(statuses) == ["pending"] * 11 + ["running"]
    everything = sorted(registry.jobs(), key=lambda r: display_order(r.status, r.spec.priority, r.name))
    expected = [r.job_id for r in everything if r.manifest == "m"][:4]
    assert [r.job_id for r in shown] == expected and shown[0].job_id == running.job_id
    assert [r.spec.priority for r in shown[1:]] == [2, 2, 2]


def test_jobs_narrowed_by_manifest_model_and_status(registry):
    from cis490_train.core.lifecycle import UNFINISHED, Status

    gbt, mlp, other = spec("gbt-a"), spec("mlp-a", model="mlp"), spec("gbt-b")
    registry.apply(plans(gbt, mlp), "m")
    registry.apply(plans(other), "n")
    registry.cancel(other.job_id)

    def names(**filters) -> list[str]:
        return sorted(r.name for r in registry.jobs(**filters))

    assert names() == ["gbt-a", "gbt-b", "mlp-a"]
    assert names(manifest="m") == ["gbt-a", "mlp-a"]
    assert names(model="gbt") == ["gbt-a", "gbt-b"]
    assert names(status=Status.CANCELLED) == ["gbt-b"]
    assert names(model="gbt", status=UNFINISHED) == ["gbt-a"]
    assert names(manifest="n", status=Status.PENDING) == []
    assert names(manifest="nowhere") == []
    assert [r.name for r in registry.jobs([mlp.job_id, other.job_id], model="mlp")] == ["mlp-a"]


def test_job_record_to_dict_is_what_the_cli_prints(registry):
    a = spec("a")
    registry.apply(plans(a, priority=3), "m")
    d = registry.get(a.job_id).to_dict()
    assert d["job_id"] == a.job_id and d["name"] == "a" and d["manifest"] == "m" and d["status"] == "pending"
    assert (d["attempt"], d["starts"], d["broker_priority"]) == (1, 0, 3)
    assert d["spec"] == a.to_dict() and d["result"] == {} and d["progress"] == {}
    assert "lease_hash" not in d and "sent" not in d
    assert set(d) == {
        "job_id", "name", "manifest", "status", "attempt", "starts", "max_attempts", "queue", "broker_priority", "worker", "host",
        "created_at", "claimed_at", "started_at", "heartbeat_at", "finished_at", "progress", "error", "failure", "artifact_id",
        "result", "spec",
    }
