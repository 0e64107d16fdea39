"""Threads, device and seeds: the knobs that make a run reproducible and a good neighbour."""

from __future__ import annotations

import os
import random

import numpy as np

from ..errors import ConfigError, DeviceUnavailable
from .models import Model

THREADS_ENV = "CIS490_TRAINER_THREADS"
DEVICES = ("auto", "cpu", "cuda")


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def resolve_threads(requested: int | None, env: dict[str, str] | None = None) -> int:
    """--threads, else CIS490_TRAINER_THREADS, else every core this process may use."""
    env = os.environ if env is None else env
    if requested is None:
        raw = env.get(THREADS_ENV, "")
        if not raw:
            return available_cores()
        try:
            requested = int(raw)
        except ValueError:
            raise ConfigError(f"{THREADS_ENV}={raw!r} is not an integer") from None
    if requested < 1:
        raise ConfigError(f"threads must be >= 1, got {requested}")
    return requested


def limit_native_threads(threads: int) -> None:
    """Cap OpenMP code that no setting reaches; it reads this once, so call it before torch or xgboost loads."""
    os.environ["OMP_NUM_THREADS"] = str(threads)


def resolve_device(requested: str, model: type[Model]) -> str:
    if requested not in DEVICES:
        raise DeviceUnavailable(f"device must be one of {list(DEVICES)}, got {requested!r}")
    if requested == "cpu":
        return "cpu"
    if model.cuda_available():
        return "cuda"
    if requested == "cuda":
        raise DeviceUnavailable(
            f"--device cuda: {model.name} cannot use CUDA on this host (no GPU or a CPU-only build)"
        )
    return "cpu"


def seed_everything(seed: int) -> None:
    """Models seed their own generators; this covers any library that reaches for the global ones."""
    random.seed(seed)
    np.random.seed(seed)
