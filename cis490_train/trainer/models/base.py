"""What every model implements, and the data it is handed.

The trainer only talks to this interface, so adding a model means one module
and one registry entry; torch and xgboost are imported by the model modules
alone, so the rest of the trainer starts without them.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ...errors import TrainerError

if TYPE_CHECKING:
    from ..data import Dataset


@dataclass(frozen=True, eq=False)
class Part:
    """One side of a split: labels plus whichever inputs the model reads."""

    y: np.ndarray
    features: np.ndarray | None = None
    sequences: np.ndarray | None = None

    @property
    def n(self) -> int:
        return len(self.y)

    def join(self, other: Part) -> Part:
        def both(a, b):
            return None if a is None else np.concatenate([a, b])

        return Part(
            y=np.concatenate([self.y, other.y]),
            features=both(self.features, other.features),
            sequences=both(self.sequences, other.sequences),
        )

    def empty(self) -> Part:
        return Part(
            y=self.y[:0],
            features=None if self.features is None else self.features[:0],
            sequences=None if self.sequences is None else self.sequences[:0],
        )

    @classmethod
    def from_rows(cls, dataset: Dataset, rows: np.ndarray) -> Part:
        return cls(
            y=dataset.label[rows],
            features=dataset.features[rows] if dataset.features is not None else None,
            sequences=np.ascontiguousarray(dataset.sequences[rows]) if dataset.sequences is not None else None,
        )


MIN_VALIDATION = 30


def steering(train: Part, val: Part, stops: bool) -> tuple[Part, Part, str]:
    """The windows to train on, the ones to score, and what the validation split was used for
    (`stops`: whether the model stops early on it).

    Below MIN_VALIDATION windows a validation score is mostly noise: stopping or
    keeping weights on it loses more than it saves, so those few windows are
    trained on instead and the full recipe runs.
    """
    if val.n >= MIN_VALIDATION:
        return train, val, "early stopping" if stops else "progress only"
    if not val.n:
        return train, val, "none (the split left no validation windows)"
    return train.join(val), val.empty(), f"training ({val.n} windows, fewer than {MIN_VALIDATION} to steer by)"


@dataclass(frozen=True)
class Progress:
    """A training status; `boundary` marks the end of an epoch or boosting round.

    `phase` names a stage inside training (pre-training, say); None keeps the trainer's phase.
    """

    epoch: int | None = None
    epochs: int | None = None
    step: int | None = None
    steps: int | None = None
    loss: float | None = None
    metric: float | None = None
    metric_name: str | None = None
    boundary: bool = False
    phase: str | None = None


ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True)
class ModelConfig:
    hyper: dict[str, Any]
    n_classes: int
    seed: int
    device: str = "cpu"
    threads: int = 1


class Model(ABC):
    name: ClassVar[str]
    inputs: ClassVar[str]  # "summary" (per-window features) or "sequence" (tensors)
    weights_file: ClassVar[str]

    def __init__(self, config: ModelConfig):
        self.config = config

    @abstractmethod
    def fit(self, train: Part, val: Part, progress: ProgressCallback, unlabelled: Part | None = None) -> None:
        """Train on `train`; `val` (possibly empty) drives progress metrics and early stopping."""

    @abstractmethod
    def predict(self, part: Part) -> np.ndarray:
        """Class indices, one per row of `part`."""

    @abstractmethod
    def save(self, directory: Path) -> None:
        """Write `weights_file` (atomically) with everything `load` needs to predict."""

    @classmethod
    def inputs_for(cls, hyper: dict[str, Any]) -> str:
        """What the model reads with these hyperparameters; most models read one kind whatever they are."""
        return cls.inputs

    def fit_info(self) -> dict[str, Any]:
        """What training did beyond the metrics (epochs run, pseudo-labels added), for report and ckpt."""
        return {}

    @classmethod
    @abstractmethod
    def load(cls, directory: Path, device: str = "cpu", threads: int = 1) -> Model:
        """Rebuild a model that predicts exactly what the saved one did."""

    @classmethod
    @abstractmethod
    def cuda_available(cls) -> bool:
        """Whether this model can run on CUDA on this host."""


def import_optional(module: str, install: str) -> ModuleType:
    """Import a heavy dependency, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise TrainerError(f"{module} cannot be imported ({exc}); install it with `{install}`") from None
