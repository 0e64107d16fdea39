"""Each of the reaper's passes against a real registry, with a recording `send` in place of the broker."""

from __future__ import annotations

import time

import pytest

from cis490_train.broker.messages import Messages
from cis490_train.config import Settings
from cis490_train.coordinator import reaper as reaping
from cis490_train.coordinator.reaper import Reaper
from cis490_train.core.lifecycle import Lease, Status
from cis490_train.core.routing import QueueClass
from cis490_train.core.specs import JobSpec
from cis490_train.registry import Registry
from helpers.fleet import Sent

pytestmark = pytest.mark.integration


def survive(loop, step) -> None:
    step()  # let a failing pass fail the test


@pytest.fixture
def settings(redis_url, tmp_path) -> Settings:
    return Settings.from_env({"CIS490_BROKER_URL": redis_url, "HOME": str(tmp_path), "CIS490_HEARTBEAT_S": "1", "CIS490_STALE_AFTER_S": "3"})


def reaper_for(registry: Registry, settings: Settings, watching_since: float = 0.0) -> tuple[Reaper, Sent]:
    sent = Sent()
    return Reaper(registry, sent, settings, watching_since, survive), sent


def job(registry: Registry, name: str, **kw) -> JobSpec:
    spec = JobSpec(name=name, model="gbt", split_recipe="sample", hyper={"n_estimators": 5}, **kw)
    registry.apply([(spec, QueueClass.for_job(spec).name, 0)], "reaper")
    return spec


def test_a_stale_lease_becomes_the_next_attempt_but_not_before_the_reaper_watched_long_enough(registry, settings):
    spec = job(registry, "silent")
    lease = Lease.new(1, "w@h", "h")
    assert registry.claim(spec.job_id, lease).ok and registry.start(spec.job_id, lease).ok
    later = time.time() + 10  # ten seconds of silence, past the 3 s threshold

    just_started, sent = reaper_for(registry, settings, watching_since=later - 1)
    just_started._stale_leases(later)
    assert sent == [] and registry.get(spec.job_id).status == Status.RUNNING  # it only just began to watch

    watching, sent = reaper_for(registry, settings)
    watching._stale_leases(later)
    assert sent == [("dispatch", spec.job_id, 2)]
    assert registry.get(spec.job_id).failure == "worker_lost" and registry.stats()["requeued"] == 1


def test_an_attempt_whose_message_never_left_is_sent_once(registry, settings):
    spec = job(registry, "unsent")  # applied, never marked sent
    reaper, sent = reaper_for(registry, settings)
    reaper._unsent(time.time())
    assert sent == []  # within its grace: its sender may still be sending
    reaper._unsent(time.time() + reaping.UNSENT_GRACE_S + 1)
    assert sent == [("dispatch", spec.job_id, 1)] and registry.stats()["resent"] == 1


def test_a_cuda_preferring_job_is_offered_to_the_cpu_tier_after_its_grace(registry, settings):
    spec = job(registry, "prefers-gpu", prefer_cuda=True, prefer_cuda_grace_s=0.0)
    reaper, sent = reaper_for(registry, settings)
    reaper._fallbacks(time.time() + 1)
    (only,) = sent
    assert only[:3] == ("send", spec.job_id, 1) and only[3].startswith("cpu.")
    assert registry.get(spec.job_id).fallback_active


def test_a_pending_job_whose_message_is_gone_twice_gets_its_next_attempt(registry, settings, redis_url):
    kept, lost = job(registry, "kept", seed=1), job(registry, "lost", seed=2)
    messages = Messages.from_settings(settings)
    for spec in (kept, lost):
        messages.dispatch(registry, registry.get(spec.job_id))  # real messages on the real broker
    registry.r.delete(*[k for k in registry.r.scan_iter(f"{QueueClass.for_job(lost).name}*")])
    messages.send(kept.job_id, 1, QueueClass.for_job(kept).name, 0)  # put the kept one's back

    reaper, sent = reaper_for(registry, settings)
    now = time.time()
    reaper._lost_messages(now)
    assert sent == []  # missing once: it may be between a worker's take and its bookkeeping
    reaper._lost_messages(now + 1)
    assert sent == []  # not searched again so soon
    reaper._lost_messages(now + reaping.LOST_SCAN_S + 1)
    assert sent == [("dispatch", lost.job_id, 2)] and registry.stats()["lost"] == 1
    assert registry.get(kept.job_id).attempt == 1
