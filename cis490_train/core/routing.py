"""Which queue a job goes to, and which queues a host may consume. Pure: no Redis, no Celery.

Eligibility is enforced by subscription: a job's queue encodes everything that
decides who may run it (tier, model, host lists, RAM, cores), and a worker
consumes exactly the queues whose constraints its host meets, so an ineligible
host never receives the message.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .capability import Capability
from ..errors import TierUnavailable
from .specs import HostSpec, JobSpec

CPU = "cpu"
CUDA = "cuda"
_CUDA_N = re.compile(r"^cuda-([1-9][0-9]{0,4})g$")
# The earlier system's defaults: a job that asks for no more than these has no constraint hash.
_BASE_RAM_GIB = 4.0
_BASE_CORES = 1
BROKER_PRIORITIES = 10


def job_tier(spec: JobSpec) -> str:
    """`cuda-<N>g` for CUDA with a VRAM floor, `cuda` without one, `cpu` otherwise.

    A `prefer_cuda` job starts on the CUDA tier; it moves to `cpu` only when no
    CUDA host has started it within its grace period.
    """
    if spec.require_cuda or spec.prefer_cuda:
        if spec.min_vram_gib > 0:
            return f"cuda-{math.ceil(spec.min_vram_gib)}g"
        return CUDA
    return CPU


def fallback_queue(spec: JobSpec) -> str:
    """Where a prefer_cuda job may also go once its grace period passes ('' for every other job)."""
    if spec.prefer_cuda and not spec.require_cuda:
        return QueueClass.for_job(spec, tier=CPU).name
    return ""


def tier_vram_gib(tier: str) -> int:
    match = _CUDA_N.match(tier)
    return int(match.group(1)) if match else 0


def is_tier(name: str) -> bool:
    return name in (CPU, CUDA) or bool(_CUDA_N.match(name))


@dataclass(frozen=True)
class QueueName:
    tier: str
    model: str
    digest: str = ""  # of the extra constraints, when the job narrows who may run it

    @property
    def cuda(self) -> bool:
        return self.tier != CPU


@dataclass(frozen=True)
class QueueClass:
    """One class queue and the constraints a host must meet to consume it."""

    tier: str
    model: str
    allowed_hosts: tuple[str, ...] = ()
    denied_hosts: tuple[str, ...] = ()
    min_ram_gib: float = _BASE_RAM_GIB
    min_cores: int = _BASE_CORES

    @classmethod
    def for_job(cls, spec: JobSpec, tier: str | None = None) -> QueueClass:
        return cls(
            tier=tier or job_tier(spec),
            model=spec.model,
            allowed_hosts=tuple(sorted(set(spec.allowed_hosts))),
            denied_hosts=tuple(sorted(set(spec.denied_hosts))),
            min_ram_gib=float(spec.min_ram_gib),
            min_cores=int(spec.min_cores),
        )

    @staticmethod
    def parse(name: str) -> QueueName | None:
        """The parts of a class queue's name (`cpu.gbt`, `cuda-8g.mlp.1b05314a`); None for any other queue."""
        tier, _, rest = name.partition(".")
        model, _, digest = rest.partition(".")
        if not (tier in (CPU, CUDA) or _CUDA_N.match(tier)) or not model or "." in digest:
            return None
        return QueueName(tier, model, digest)

    @property
    def name(self) -> str:
        base = f"{self.tier}.{self.model}"
        extra = self._extra()
        if not extra:
            return base
        digest = hashlib.sha256(json.dumps(extra, sort_keys=True).encode()).hexdigest()[:8]
        return f"{base}.{digest}"

    def _extra(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self.allowed_hosts:
            extra["allowed_hosts"] = list(self.allowed_hosts)
        if self.denied_hosts:
            extra["denied_hosts"] = list(self.denied_hosts)
        if self.min_ram_gib != _BASE_RAM_GIB:
            extra["min_ram_gib"] = self.min_ram_gib
        if self.min_cores != _BASE_CORES:
            extra["min_cores"] = self.min_cores
        return extra

    def to_dict(self) -> dict[str, Any]:
        return {
            "tier": self.tier,
            "model": self.model,
            "allowed_hosts": list(self.allowed_hosts),
            "denied_hosts": list(self.denied_hosts),
            "min_ram_gib": self.min_ram_gib,
            "min_cores": self.min_cores,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QueueClass:
        return cls(
            tier=d["tier"],
            model=d["model"],
            allowed_hosts=tuple(d.get("allowed_hosts", ())),
            denied_hosts=tuple(d.get("denied_hosts", ())),
            min_ram_gib=float(d.get("min_ram_gib", _BASE_RAM_GIB)),
            min_cores=int(d.get("min_cores", _BASE_CORES)),
        )


def validate_tiers(requested: Iterable[str], cap: Capability) -> tuple[str, ...]:
    """The tiers a worker was asked for, checked against its hardware; raises with one line."""
    tiers = tuple(dict.fromkeys(requested))
    if not tiers:
        raise TierUnavailable("no tier given; use -Q cpu, -Q cuda, -Q cuda-<N>g or a comma-separated mix")
    for tier in tiers:
        if not is_tier(tier):
            raise TierUnavailable(f"-Q {tier}: not a tier; valid tiers: cpu, cuda, cuda-<N>g (e.g. cuda-8g)")
        if tier == CPU:
            continue
        if not cap.cuda_available:
            raise TierUnavailable(f"-Q {tier}: host {cap.host_id} has no CUDA device; start it with -Q cpu")
        need = tier_vram_gib(tier)
        if need > cap.max_vram_total_gib:
            raise TierUnavailable(
                f"-Q {tier}: needs a GPU with {need} GiB, host {cap.host_id} has at most "
                f"{cap.max_vram_total_gib:g} GiB; it can serve up to cuda-{math.floor(cap.max_vram_total_gib)}g"
            )
    return tiers


def serves_tier(tiers: Iterable[str], cap: Capability, tier: str) -> bool:
    """`cuda` serves every CUDA tier the card satisfies; `cuda-<N>g` and `cpu` serve themselves."""
    tiers = set(tiers)
    if tier == CPU:
        return CPU in tiers
    if not cap.cuda_available or tier_vram_gib(tier) > cap.max_vram_total_gib:
        return False
    return CUDA in tiers or tier in tiers


def ineligibility(qc: QueueClass, cap: Capability, policy: HostSpec | None, tiers: Iterable[str]) -> str | None:
    """Why a worker with these tiers on this host may not consume `qc`, or None when it may."""
    host = cap.host_id
    if not serves_tier(tiers, cap, qc.tier):
        if qc.tier != CPU and not cap.cuda_available:
            return f"tier {qc.tier}: host {host} has no CUDA"
        if qc.tier != CPU and tier_vram_gib(qc.tier) > cap.max_vram_total_gib:
            return f"tier {qc.tier}: needs {tier_vram_gib(qc.tier)} GiB VRAM, host {host} has {cap.max_vram_total_gib:g} GiB"
        return f"tier {qc.tier}: worker was not started with -Q {CPU if qc.tier == CPU else CUDA}"
    if policy is not None:
        refused = policy.refuses(qc.model)
        if refused:
            return refused
    if qc.allowed_hosts and host not in qc.allowed_hosts:
        return f"host {host} is not in the job's allowed_hosts {list(qc.allowed_hosts)}"
    if host in qc.denied_hosts:
        return f"host {host} is in the job's denied_hosts"
    if cap.ram_total_gib < qc.min_ram_gib:
        return f"needs {qc.min_ram_gib:g} GiB RAM, host {host} has {cap.ram_total_gib:g} GiB"
    if cap.cpu_cores < qc.min_cores:
        return f"needs {qc.min_cores} cores, host {host} has {cap.cpu_cores}"
    return None


def subscriptions(
    classes: Iterable[QueueClass],
    cap: Capability,
    policy: HostSpec | None,
    tiers: Iterable[str],
) -> list[str]:
    """The class queues a worker with these tiers on this host must consume, sorted."""
    tiers = tuple(tiers)
    return sorted({qc.name for qc in classes if ineligibility(qc, cap, policy, tiers) is None})


def broker_priorities(priorities: Iterable[int]) -> dict[int, int]:
    """Map manifest priorities (higher runs first, any integer) onto the broker's 0..9 (0 first).

    Distinct priorities are ranked; with more than ten, neighbouring ranks share a level.
    """
    ranked = sorted(set(priorities), reverse=True)
    if not ranked:
        return {}
    if len(ranked) <= BROKER_PRIORITIES:
        return {p: i for i, p in enumerate(ranked)}
    return {p: i * BROKER_PRIORITIES // len(ranked) for i, p in enumerate(ranked)}
