"""The job spec the worker hands the trainer (the manifest job, serialised as JSON)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SpecError
from ..core.hyper import MODELS
from .contract import MODES
from .split import RECIPES

MAX_SEED = 2**32 - 1  # what every RNG the trainer seeds accepts


@dataclass(frozen=True)
class TrainSpec:
    job_id: str
    name: str
    model: str
    mode: str
    hyper: dict[str, Any]
    split_recipe: str
    train_hosts: tuple[str, ...]
    seed: int
    n_resamples: int

    @classmethod
    def from_file(cls, path: Path) -> TrainSpec:
        try:
            raw = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise SpecError(f"spec file {path} does not exist") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SpecError(f"spec file {path} is not readable JSON: {exc}") from None
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: Any) -> TrainSpec:
        """Validate every field at once; keys the trainer does not use (priority, …) are ignored."""
        if not isinstance(raw, dict):
            raise SpecError("bad spec: it must be a JSON object")
        problems = []
        required = ("job_id", "model", "mode", "hyper", "split_recipe", "train_hosts", "seed", "n_resamples")
        for key in required:
            if key not in raw:
                problems.append(f"missing {key!r}")
        if problems:
            raise SpecError("bad spec: " + "; ".join(problems))

        def is_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        if not (isinstance(raw["job_id"], str) and raw["job_id"]):
            problems.append("'job_id' must be a non-empty string")
        if raw["model"] not in MODELS:
            problems.append(f"unknown model {raw['model']!r}; valid models: {', '.join(MODELS)}")
        if raw["mode"] not in MODES:
            problems.append(f"'mode' must be one of {list(MODES)}, got {raw['mode']!r}")
        if not isinstance(raw["hyper"], dict):
            problems.append("'hyper' must be an object")
        if raw["split_recipe"] not in RECIPES:
            problems.append(f"'split_recipe' must be one of {list(RECIPES)}, got {raw['split_recipe']!r}")
        hosts = raw["train_hosts"]
        if not (isinstance(hosts, list) and all(isinstance(h, str) for h in hosts)):
            problems.append("'train_hosts' must be a list of host names")
        if not (is_int(raw["seed"]) and 0 <= raw["seed"] <= MAX_SEED):
            problems.append(f"'seed' must be an integer from 0 to {MAX_SEED}, got {raw['seed']!r}")
        if not (is_int(raw["n_resamples"]) and 1 <= raw["n_resamples"] <= 1_000_000):
            problems.append(f"'n_resamples' must be an integer in 1..1000000, got {raw['n_resamples']!r}")
        if problems:
            raise SpecError("bad spec: " + "; ".join(problems))
        return cls(
            job_id=raw["job_id"],
            name=str(raw.get("name") or raw["job_id"]),
            model=raw["model"],
            mode=raw["mode"],
            hyper=dict(raw["hyper"]),
            split_recipe=raw["split_recipe"],
            train_hosts=tuple(hosts),
            seed=raw["seed"],
            n_resamples=raw["n_resamples"],
        )
