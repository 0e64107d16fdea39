"""The job state machine: fenced transitions as pure functions."""

from __future__ import annotations

from cis490_train.core import lifecycle as lc
from cis490_train.core.lifecycle import JobState, Lease

W1 = Lease.new(1, "w1", "a")
W2 = Lease.new(1, "w2", "b")


def held(status=lc.Status.RUNNING, attempt=1, starts=1, max_attempts=3, worker="w1", by: Lease = W1) -> JobState:
    return JobState(status, attempt, starts, max_attempts, worker, lease_hash=lc.lease_digest(by.secret))


def test_claim_takes_a_pending_job_once():
    t = lc.claim(JobState(lc.Status.PENDING, 1), W1, 10.0)
    assert t.ok and t.changes["status"] == lc.Status.CLAIMED and t.changes["worker"] == "w1" and t.changes["starts"] == 1
    assert t.new_record["attempt"] == 1
    assert not lc.claim(held(lc.Status.CLAIMED), W2, 11.0).ok


def test_stale_attempt_changes_nothing():
    for event in (
        lambda s: lc.claim(s, Lease.new(1, "w1"), 0),
        lambda s: lc.start(s, Lease.new(1, "w1"), 0),
        lambda s: lc.beat(s, Lease.new(1, "w1"), 0),
        lambda s: lc.complete(s, Lease.new(1, "w1"), 0, "a" * 64, "{}"),
        lambda s: lc.fail(s, Lease.new(1, "w1"), 0, lc.Failure.TRAINER_ERROR, "x", False),
    ):
        t = event(held(lc.Status.RUNNING, attempt=2))
        assert not t.ok and "stale attempt 1" in t.reason and not t.changes


def test_only_the_lease_holder_beats_completes_or_fails():
    state = held(lc.Status.RUNNING, worker="w1")
    assert lc.beat(state, W1, 1.0, '{"epoch": 1}').ok
    for t in (lc.beat(state, W2, 1.0), lc.complete(state, W2, 1.0, "x", "{}"), lc.fail(state, W2, 1.0, lc.Failure.UPLOAD_ERROR, "e", True)):
        assert not t.ok and "held by another claim (w1)" in t.reason


def test_lifecycle_claim_start_beat_complete():
    s = JobState(lc.Status.PENDING, 1)
    claimed = lc.claim(s, W1, 1).changes
    s = JobState(claimed["status"], 1, 1, 3, "w1", lease_hash=claimed["lease"])
    t = lc.start(s, W1, 2)
    assert t.ok and t.changes["status"] == lc.Status.RUNNING
    s = held(lc.Status.RUNNING)
    done = lc.complete(s, W1, 3, "f" * 64, '{"m": 1}')
    assert done.ok and done.changes["status"] == lc.Status.COMPLETED and done.changes["artifact_id"] == "f" * 64
    assert not lc.complete(held(lc.Status.COMPLETED), W1, 4, "x", "{}").ok


def test_retryable_failure_becomes_the_next_attempt_until_the_budget_is_spent():
    t = lc.fail(held(starts=1), W1, 5, lc.Failure.WORKER_SHUTDOWN, "worker shutdown", retry=True)
    assert t.ok and t.changes["status"] == lc.Status.PENDING and t.changes["attempt"] == 2 and t.dispatch == 2
    last = lc.fail(held(starts=3, max_attempts=3), W1, 5, lc.Failure.UPLOAD_ERROR, "store down", retry=True)
    assert last.changes["status"] == lc.Status.FAILED and last.dispatch is None and "gave up after 3" in last.changes["error"]
    trainer = lc.fail(held(starts=1), W1, 5, lc.Failure.TRAINER_ERROR, "exit 1", retry=False)
    assert trainer.changes["status"] == lc.Status.FAILED and trainer.record["failure"] == lc.Failure.TRAINER_ERROR


def test_requeue_from_any_state_resets_the_budget():
    for status in lc.Status:
        t = lc.requeue(held(status, attempt=4, starts=3), 9)
        assert t.ok and t.changes["status"] == lc.Status.PENDING and t.changes["attempt"] == 5 and t.changes["starts"] == 0 and t.dispatch == 5


def test_cancel_and_reroute():
    assert lc.cancel(held(lc.Status.RUNNING), 1).changes["status"] == lc.Status.CANCELLED
    assert not lc.cancel(held(lc.Status.COMPLETED), 1).ok
    assert lc.reroute(JobState(lc.Status.PENDING, 2), 1).dispatch == 3
    assert not lc.reroute(held(lc.Status.RUNNING), 1).ok


def test_reaper_requeues_only_silent_leases():
    silent = JobState(lc.Status.RUNNING, 1, 1, 3, "w1", heartbeat_at=100.0)
    assert not lc.reap(silent, 110.0, 15.0).ok
    t = lc.reap(silent, 120.0, 15.0)
    assert t.ok and t.changes["status"] == lc.Status.PENDING and t.dispatch == 2 and t.record["failure"] == lc.Failure.WORKER_LOST
    assert "w1 lost: no heartbeat for 20s" in t.record["error"]
    spent = JobState(lc.Status.CLAIMED, 3, 3, 3, "w1", heartbeat_at=0.0)
    assert lc.reap(spent, 100.0, 15.0).changes["status"] == lc.Status.FAILED
    assert not lc.reap(JobState(lc.Status.PENDING, 1), 1e9, 15.0).ok


def test_retry_policy_by_failure_type():
    for failure in (lc.Failure.WORKER_LOST, lc.Failure.WORKER_SHUTDOWN, lc.Failure.UPLOAD_ERROR, lc.Failure.OOM):
        assert lc.should_retry(failure, retry_on_error=False)
    for failure in (lc.Failure.TRAINER_ERROR, lc.Failure.TIMEOUT):
        assert not lc.should_retry(failure, retry_on_error=False) and lc.should_retry(failure, retry_on_error=True)
    assert not lc.should_retry(lc.Failure.CANCELLED, retry_on_error=True)


def test_the_lease_is_the_claims_secret_not_the_workers_name():
    claimed = lc.claim(JobState(lc.Status.PENDING, 1), W1, 1.0).changes
    assert claimed["lease"] == lc.lease_digest(W1.secret) and W1.secret not in claimed.values()
    state = JobState(lc.Status.RUNNING, 1, 1, 3, "w1", lease_hash=claimed["lease"])
    impostor = Lease(1, "w1", "a", secret="0" * 64)  # same attempt, same worker name, another secret
    for t in (lc.beat(state, impostor, 2.0), lc.complete(state, impostor, 2.0, "f" * 64, "{}"), lc.fail(state, impostor, 2.0, lc.Failure.TRAINER_ERROR, "x", False)):
        assert not t.ok and "held by another claim" in t.reason
    assert lc.beat(state, W1, 2.0).ok
    assert not lc.claim(JobState(lc.Status.PENDING, 1), Lease(1, "w1", "a"), 1.0).ok  # a claim without a secret
    assert not lc.beat(JobState(lc.Status.RUNNING, 1, 1, 3, "w1"), Lease(1, "w1", "a"), 2.0).ok  # no recorded lease: nobody holds it


def test_every_end_of_a_lease_forgets_its_hash():
    state = held(lc.Status.RUNNING)
    for t in (lc.fail(state, W1, 5, lc.Failure.UPLOAD_ERROR, "e", True), lc.fail(state, W1, 5, lc.Failure.TRAINER_ERROR, "e", False), lc.requeue(state, 5), lc.cancel(state, 5), lc.reap(state, 1e9, 15.0)):
        assert t.ok and t.changes["lease"] == ""


def test_silence_counts_from_when_the_reaper_started_watching():
    silent = JobState(lc.Status.RUNNING, 1, 1, 3, "w1", heartbeat_at=100.0)
    assert not lc.reap(silent, 200.0, 15.0, watching_since=190.0).ok  # the coordinator was down until 190
    assert lc.reap(silent, 206.0, 15.0, watching_since=190.0).ok


def test_a_lost_message_becomes_the_next_attempt_once():
    t = lc.resend(JobState(lc.Status.PENDING, 2), 2, 1.0)
    assert t.ok and t.dispatch == 3 and t.changes["sent"] == 0
    assert not lc.resend(JobState(lc.Status.PENDING, 3), 2, 1.0).ok  # already resent
    assert not lc.resend(held(lc.Status.RUNNING, attempt=2), 2, 1.0).ok  # claimed meanwhile


def test_a_malformed_record_is_reported_with_its_key():
    import pytest

    from cis490_train.errors import BadRecord

    for fields, word in (({"status": "pending", "attempt": "x"}, "attempt"), ({"status": "bogus"}, "status"), ({"status": "running", "heartbeat_at": "nan"}, "heartbeat_at"), ({"attempt": "¹"}, "attempt")):
        with pytest.raises(BadRecord) as err:
            JobState.from_fields(fields, "cis490:job:abc")
        assert err.value.key == "cis490:job:abc" and word in err.value.problem
