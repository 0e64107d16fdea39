"""Routing by subscription: tiers, class queues, eligibility, tier checks at boot, priorities."""

from __future__ import annotations

import pytest

from cis490_train.core.capability import Capability, GpuDevice
from cis490_train.errors import TierUnavailable
from cis490_train.core.specs import HostSpec, JobSpec
from cis490_train.core.routing import (
    QueueClass,
    QueueName,
    broker_priorities,
    ineligibility,
    job_tier,
    subscriptions,
    validate_tiers,
)


def cap(host="h", *, vram=(), ram=16.0, cores=4) -> Capability:
    return Capability(
        host_id=host,
        cpu_cores=cores,
        ram_total_gib=ram,
        ram_available_gib=ram,
        cuda_devices=tuple(GpuDevice(i, "gpu", v, v) for i, v in enumerate(vram)),
    )


def job(**kw) -> JobSpec:
    kw.setdefault("name", "j")
    kw.setdefault("model", "gbt")
    return JobSpec(**kw)


@pytest.mark.parametrize(
    "spec,tier",
    [
        (job(), "cpu"),
        (job(require_cuda=True), "cuda"),
        (job(require_cuda=True, min_vram_gib=8.0), "cuda-8g"),
        (job(require_cuda=True, min_vram_gib=7.5), "cuda-8g"),
        (job(prefer_cuda=True, min_vram_gib=2.0), "cuda-2g"),
    ],
)
def test_job_tier(spec, tier):
    assert job_tier(spec) == tier


def test_class_queue_names_encode_only_what_differs_from_the_base():
    assert QueueClass.for_job(job()).name == "cpu.gbt"
    assert QueueClass.for_job(job(model="transformer", require_cuda=True, min_vram_gib=8)).name == "cuda-8g.transformer"
    a = QueueClass.for_job(job(allowed_hosts=("b", "a")))
    b = QueueClass.for_job(job(allowed_hosts=("a", "b")))
    c = QueueClass.for_job(job(min_cores=4))
    assert a.name == b.name and a.name.startswith("cpu.gbt.") and len(a.name.split(".")[2]) == 8
    assert c.name != a.name
    assert QueueClass.from_dict(a.to_dict()) == a


def test_cuda_worker_expands_to_every_tier_its_card_satisfies():
    twelve = cap(vram=(12.0,))
    classes = [QueueClass.for_job(job(model="mlp", require_cuda=True, min_vram_gib=n)) for n in (0, 4, 8, 12, 16)]
    subs = subscriptions(classes, twelve, None, ["cuda"])
    assert subs == sorted(["cuda.mlp", "cuda-4g.mlp", "cuda-8g.mlp", "cuda-12g.mlp"])
    assert subscriptions(classes, twelve, None, ["cuda-8g"]) == ["cuda-8g.mlp"]
    assert subscriptions(classes + [QueueClass.for_job(job())], twelve, None, ["cuda"]) == subs
    assert "cpu.gbt" in subscriptions([QueueClass.for_job(job())], twelve, None, ["cuda", "cpu"])


def test_boot_refuses_tiers_the_hardware_cannot_serve():
    with pytest.raises(TierUnavailable, match="has no CUDA device"):
        validate_tiers(["cuda"], cap())
    with pytest.raises(TierUnavailable, match="needs a GPU with 24 GiB.*up to cuda-8g"):
        validate_tiers(["cuda-24g"], cap(vram=(8.0,)))
    with pytest.raises(TierUnavailable, match="not a tier"):
        validate_tiers(["gpu"], cap())
    assert validate_tiers(["cuda", "cpu", "cuda"], cap(vram=(8.0,))) == ("cuda", "cpu")


# The earlier system's eligibility cases, now as subscription rules.
def test_require_cuda():
    qc = QueueClass.for_job(job(require_cuda=True, min_vram_gib=2.0))
    assert "no CUDA" in ineligibility(qc, cap(), None, ["cpu"])
    assert ineligibility(qc, cap(vram=(4.0,)), None, ["cuda"]) is None


def test_min_vram():
    qc = QueueClass.for_job(job(require_cuda=True, min_vram_gib=8.0))
    assert "needs 8 GiB VRAM" in ineligibility(qc, cap(vram=(2.0,)), None, ["cuda"])


def test_allow_jobs_whitelist_and_deny_jobs():
    pi = HostSpec("pi", allow_jobs=("gbt",))
    assert ineligibility(QueueClass.for_job(job()), cap("pi"), pi, ["cpu"]) is None
    assert "whitelist" in ineligibility(QueueClass.for_job(job(model="transformer")), cap("pi"), pi, ["cpu"])
    no_mlp = HostSpec("h", deny_jobs=("mlp",))
    assert "deny_jobs" in ineligibility(QueueClass.for_job(job(model="mlp")), cap("h"), no_mlp, ["cpu"])


def test_allowed_and_denied_hosts():
    only_a = QueueClass.for_job(job(allowed_hosts=("a",)))
    assert ineligibility(only_a, cap("a"), None, ["cpu"]) is None
    assert "allowed_hosts" in ineligibility(only_a, cap("b"), None, ["cpu"])
    not_b = QueueClass.for_job(job(denied_hosts=("b",)))
    assert "denied_hosts" in ineligibility(not_b, cap("b"), None, ["cpu"])
    assert ineligibility(not_b, cap("a"), None, ["cpu"]) is None


def test_ram_and_cores():
    assert "RAM" in ineligibility(QueueClass.for_job(job(min_ram_gib=32.0)), cap(ram=16.0), None, ["cpu"])
    assert "cores" in ineligibility(QueueClass.for_job(job(min_cores=8)), cap(cores=4), None, ["cpu"])


def test_cpu_job_needs_the_cpu_tier():
    assert "-Q cpu" in ineligibility(QueueClass.for_job(job()), cap(vram=(8.0,)), None, ["cuda"])


def test_broker_priorities_keep_manifest_order():
    levels = broker_priorities([100, 1, 50, 50, -3])
    assert levels[100] < levels[50] < levels[1] < levels[-3]
    wide = broker_priorities(range(40))
    assert min(wide.values()) == 0 and max(wide.values()) == 9
    ordered = [wide[p] for p in sorted(wide, reverse=True)]
    assert ordered == sorted(ordered)


def test_a_class_queue_name_parses_back_to_its_parts():
    narrowed = QueueClass.for_job(JobSpec(name="x", model="gbt", allowed_hosts=("a",)))
    parsed = QueueClass.parse(narrowed.name)
    assert (parsed.tier, parsed.model, len(parsed.digest), parsed.cuda) == ("cpu", "gbt", 8, False)
    assert QueueClass.parse("cuda-8g.mlp") == QueueName("cuda-8g", "mlp") and QueueClass.parse("cuda.lstm").cuda
    for other in ("cpu", "celery", "x.gbt", "cpu.gbt.a.b", "cuda-0g.mlp", "reply.celery.pidbox", "cpu."):
        assert QueueClass.parse(other) is None, other
