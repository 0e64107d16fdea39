"""The coordinator's request loop and reaper, in process against a real Redis: what it refuses,
what it skips, and that its loops outlive whatever goes wrong."""

from __future__ import annotations

import json

import pytest

from cis490_train.artifacts.records import ArtifactRecord
from cis490_train.artifacts.summary import Summary
from cis490_train.config import Settings
from cis490_train.coordinator.service import Coordinator, committed_result
from cis490_train.core.lifecycle import Lease
from cis490_train.core.specs import JobSpec
from cis490_train.core.protocol import REQUESTS, Op, Request, reply_key, waiting_key
from cis490_train.registry import LOOP_ERRORS, Registry, clean_result
from helpers.fleet import Sent

pytestmark = pytest.mark.integration


@pytest.fixture
def coordinator(redis_url, tmp_path):
    settings = Settings.from_env({"CIS490_BROKER_URL": redis_url, "HOME": str(tmp_path)})
    sent = Sent()
    c = Coordinator(settings, name="test-coordinator", messages=sent)
    c.registry.load_functions()
    c.sent = sent
    yield c
    c.store.close()


def a_job(registry: Registry) -> str:
    spec = JobSpec(name="j", model="gbt", split_recipe="sample", hyper={"n_estimators": 5})
    registry.apply([(spec, "cpu.gbt", 0)], "m")
    return spec.job_id


def ask(coordinator: Coordinator, request: Request, waiting: bool = True) -> dict | None:
    r = coordinator.registry.r
    if waiting:
        r.set(waiting_key(request.nonce), 1, px=5000)
    r.rpush(REQUESTS, request.encode())
    assert coordinator.serve_one(timeout=1)
    raw = r.lpop(reply_key(request.nonce))
    return json.loads(raw) if raw else None


def test_a_request_is_answered_and_one_nobody_waits_for_is_skipped(coordinator, registry):
    job_id = a_job(registry)
    lease = Lease.new(1, "w@h", "h")
    claim = Request(Op.CLAIM, job_id, 1, lease.worker, lease.host, lease.secret, "1" * 32)
    assert ask(coordinator, claim, waiting=False) is None
    assert registry.get(job_id).status == "pending"  # the asker gave up: nothing was done for it
    assert ask(coordinator, Request(Op.CLAIM, job_id, 1, lease.worker, lease.host, lease.secret, "2" * 32))["ok"]
    assert registry.get(job_id).status == "claimed"


def test_malformed_requests_are_counted_and_the_loop_goes_on(coordinator, registry):
    r = coordinator.registry.r
    for raw in ("not json", json.dumps({"op": "claim", "job_id": "/etc"}), "{" * 10_000):
        r.rpush(REQUESTS, raw)
        assert coordinator.serve_one(timeout=1)
    assert registry.stats()["bad_requests"] == 3
    assert not coordinator.serve_one(timeout=0.1)  # nothing left, nothing broken


def test_a_failure_is_retried_by_the_jobs_own_policy_not_the_workers_word(coordinator, registry):
    job_id = a_job(registry)
    lease = Lease.new(1, "w@h", "h")
    for op, nonce in ((Op.CLAIM, "4" * 32), (Op.START, "5" * 32)):
        assert ask(coordinator, Request(op, job_id, 1, lease.worker, lease.host, lease.secret, nonce))["ok"]
    failed = ask(coordinator, Request(Op.FAIL, job_id, 1, lease.worker, lease.host, lease.secret, "3" * 32, {"failure": "trainer_error", "error": "boom"}))
    assert failed["ok"] and not failed["requeued"] and registry.get(job_id).status == "failed" and coordinator.sent == []


def test_every_loop_survives_and_counts_what_it_raised(coordinator, registry):
    def broken():
        raise ValueError("a bug")

    coordinator.stopping.set()  # no back-off wait in the test
    coordinator._survive("reaper", broken)
    coordinator._survive("reaper", broken)
    assert registry.stats()[LOOP_ERRORS + "reaper"] == 2


def test_a_committed_result_is_the_bundles_report_not_the_request():
    report = {
        "name": "j",
        "split_recipe": "sample",
        "device": "cpu",
        "seed": 3,
        "n_train": 80,
        "n_val": 10,
        "n_test": 20,
        "duration_s": 1.5,
        "train_seconds": 1.0,
        "metrics": {"accuracy": {"value": 0.8, "ci_low": 0.7, "ci_high": 0.9}, "made_up": {"value": 1.0, "ci_low": 1.0, "ci_high": 1.0}},
        "baseline": {"accuracy": {"value": 0.5, "ci_low": 0.4, "ci_high": 0.6}},
        "dataset": {"name": "GunPoint", "fingerprint": "3f" * 32, "schema_hash": "ab" * 32},
    }
    summary = Summary.from_report(report)
    record = ArtifactRecord("a" * 64, "gbt", "realistic", "0123456789abcdef", 1, "h", 1234, "models/gbt_realistic/" + "a" * 64 + "/bundle.tar.zst", "")
    result = committed_result(summary, record, Lease(2, "w@h", "h", "s" * 64), JobSpec(name="j", model="gbt"), 0.123456)
    assert result["metrics"] == {"accuracy": {"value": 0.8, "ci_low": 0.7, "ci_high": 0.9}}  # only what the store keeps
    assert (result["n_val"], result["bundle_bytes"], result["attempt"], result["host"], result["trainer_s"]) == (10, 1234, 2, "h", 0.1235)
    assert result["dataset"] == report["dataset"] == clean_result(result)["dataset"]  # what the registry keeps and reads back
    older = committed_result(Summary.from_report({**report, "dataset": None}), record, Lease(2, "w@h", "h", "s" * 64), JobSpec(name="j", model="gbt"), 1)
    assert older["dataset"] is None and "dataset" not in clean_result(older)
    forged = clean_result({**result, "dataset": {"name": "j\x1b[2J", "fingerprint": "3f" * 32, "schema_hash": "../etc"}})
    assert forged["dataset"] == {"name": "", "fingerprint": "3f" * 32, "schema_hash": ""}
