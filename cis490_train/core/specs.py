"""What a manifest declares, as typed values: a job's spec (and its id), a host's policy.

The job id formula is the earlier system's, bit for bit, so existing job ids and
artifact indexes carry over.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

MODES = ("realistic", "oracle")
SPLIT_RECIPES = ("host", "sample", "time")
# The manifest format's default train host. A job's id hashes its train hosts, so this default
# keeps every existing job id only as long as it stays exactly this.
SEED_TRAIN_HOSTS = ("elliott-thinkpad",)
DEFAULT_MAX_ATTEMPTS = 3  # tries in all, the first included; also what a record without the field gets


@dataclass(frozen=True)
class HostSpec:
    """A host's policy: which models it may train. Capability is probed, not declared."""

    name: str
    description: str = ""
    priority: int = 0
    allow_jobs: tuple[str, ...] = ()
    deny_jobs: tuple[str, ...] = ()

    def refuses(self, model: str) -> str | None:
        """Why this host's policy refuses `model` (deny_jobs wins over allow_jobs), or None when it may train it."""
        if model in self.deny_jobs:
            return f"host {self.name} denies {model} (deny_jobs)"
        if self.allow_jobs and model not in self.allow_jobs:
            return f"{model} is not in host {self.name}'s allow_jobs whitelist {list(self.allow_jobs)}"
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "priority": self.priority,
            "allow_jobs": list(self.allow_jobs),
            "deny_jobs": list(self.deny_jobs),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HostSpec:
        return cls(
            name=d["name"],
            description=d.get("description", ""),
            priority=d.get("priority", 0),
            allow_jobs=tuple(d.get("allow_jobs", ())),
            deny_jobs=tuple(d.get("deny_jobs", ())),
        )


@dataclass(frozen=True)
class JobSpec:
    name: str
    model: str
    mode: str = "realistic"
    priority: int = 0
    require_cuda: bool = False
    prefer_cuda: bool = False
    min_vram_gib: float = 0.0
    min_ram_gib: float = 4.0
    min_cores: int = 1
    allowed_hosts: tuple[str, ...] = ()
    denied_hosts: tuple[str, ...] = ()
    hyper: dict[str, Any] = field(default_factory=dict)
    split_recipe: str = "host"
    train_hosts: tuple[str, ...] = SEED_TRAIN_HOSTS
    seed: int = 0
    n_resamples: int = 1000
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    retry_on_error: bool = False
    max_runtime_s: float = 0.0
    prefer_cuda_grace_s: float = 300.0

    @cached_property
    def job_id(self) -> str:
        """What the job *is*: scheduling fields (priority, CUDA wishes, limits) are left out."""
        payload = {
            "model": self.model,
            "mode": self.mode,
            "hyper": self.hyper,
            "split_recipe": self.split_recipe,
            "train_hosts": list(self.train_hosts),
            "seed": self.seed,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "job_id": self.job_id,
            "model": self.model,
            "mode": self.mode,
            "priority": self.priority,
            "require_cuda": self.require_cuda,
            "prefer_cuda": self.prefer_cuda,
            "min_vram_gib": self.min_vram_gib,
            "min_ram_gib": self.min_ram_gib,
            "min_cores": self.min_cores,
            "allowed_hosts": list(self.allowed_hosts),
            "denied_hosts": list(self.denied_hosts),
            "hyper": dict(self.hyper),
            "split_recipe": self.split_recipe,
            "train_hosts": list(self.train_hosts),
            "seed": self.seed,
            "n_resamples": self.n_resamples,
            "max_attempts": self.max_attempts,
            "retry_on_error": self.retry_on_error,
            "max_runtime_s": self.max_runtime_s,
            "prefer_cuda_grace_s": self.prefer_cuda_grace_s,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JobSpec:
        """Rebuild a spec the registry stored (already validated when it was enqueued)."""
        names = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in d.items() if k in names}
        for key in ("allowed_hosts", "denied_hosts", "train_hosts"):
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key])
        return cls(**kwargs)
