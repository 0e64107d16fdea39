"""Shared helpers for the trainer tests: job specs and real trainer subprocesses."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from helpers.fleet import ROOT

TRAIN_HOST = "elliott-thinkpad"

# Small enough for a few seconds on two cores, big enough to learn the synthetic signal. A fixed
# number of epochs or rounds (no early stopping), so the progress tests know how many to expect;
# tests/trainer/test_trainer_real_data.py trains every model at its defaults.
_FIXED = {"early_stopping": False}
FAST_HYPER: dict[str, dict[str, Any]] = {
    "gbt": {"n_estimators": 60, "max_depth": 4, "early_stopping_rounds": 0},
    "mlp": {"epochs": 40, "batch_size": 128, "lr": 3e-3, "hidden_dim": 64, **_FIXED},
    "knn": {"n_neighbors": 15},
    "knn_semi": {"n_neighbors": 15, "confidence": 0.8, "rounds": 2},
    "cnn": {"epochs": 12, "batch_size": 64, "lr": 3e-3, "channels": 16, **_FIXED},
    "gru": {"epochs": 12, "batch_size": 64, "lr": 3e-3, "hidden_dim": 32, **_FIXED},
    "lstm": {"epochs": 12, "batch_size": 64, "lr": 3e-3, "hidden_dim": 32, **_FIXED},
    "transformer": {"epochs": 12, "batch_size": 64, "lr": 3e-3, "d_model": 32, "n_layers": 1, "dim_feedforward": 64, **_FIXED},
    "transformer_ssl": {
        "epochs": 12,
        "batch_size": 64,
        "lr": 3e-3,
        "d_model": 32,
        "n_layers": 1,
        "dim_feedforward": 64,
        "pretrain_epochs": 4,
        "pretrain_lr": 3e-3,
        "mask_ratio": 0.25,
        **_FIXED,
    },
}


def job_id(spec: dict[str, Any]) -> str:
    payload = {k: spec[k] for k in ("model", "mode", "hyper", "split_recipe", "train_hosts", "seed")}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def make_spec(
    model: str = "gbt",
    mode: str = "realistic",
    split_recipe: str = "sample",
    *,
    hyper: dict[str, Any] | None = None,
    seed: int = 0,
    n_resamples: int = 500,
    train_hosts: tuple[str, ...] = (TRAIN_HOST,),
) -> dict[str, Any]:
    spec = {
        "name": f"{model}-{mode}-{split_recipe}",
        "model": model,
        "mode": mode,
        "hyper": dict(FAST_HYPER.get(model, {}) if hyper is None else hyper),
        "split_recipe": split_recipe,
        "train_hosts": list(train_hosts),
        "seed": seed,
        "n_resamples": n_resamples,
        "priority": 0,
        "require_cuda": False,
    }
    spec["job_id"] = job_id(spec)
    return spec


@dataclass(frozen=True)
class TrainerRun:
    returncode: int
    stdout: str
    stderr: str
    out: Path

    @property
    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines()]

    @property
    def report(self) -> dict[str, Any]:
        return json.loads((self.out / "report.json").read_text())

    @property
    def ckpt(self) -> dict[str, Any]:
        return json.loads((self.out / "ckpt.json").read_text())


def run_trainer(
    spec: dict[str, Any] | str,
    out: Path,
    data: Path | None,
    *args: str,
    env: dict[str, str] | None = None,
    threads: int | None = 1,
    timeout: float = 120,
) -> TrainerRun:
    """Run `python -m cis490_train.trainer` for real; `spec` may be raw text to test bad specs."""
    out.mkdir(parents=True, exist_ok=True)
    spec_file = out.parent / f"{out.name}.spec.json"
    spec_file.write_text(spec if isinstance(spec, str) else json.dumps(spec))
    cmd = [sys.executable, "-m", "cis490_train.trainer", "--spec", str(spec_file), "--out", str(out)]
    if data is not None:
        cmd += ["--data", str(data)]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    cmd += args
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CIS490_")}
    full_env.update(env or {})
    proc = subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout)
    return TrainerRun(proc.returncode, proc.stdout, proc.stderr, out)
