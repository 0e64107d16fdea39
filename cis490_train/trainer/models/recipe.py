"""How long and in what batches a torch model trains, decided from the data's size.

A fixed epoch count and batch size fit one data size: 20 passes in batches of
256 give 45 windows 20 optimiser steps and a million windows 80,000. The auto
recipe aims at a budget of optimiser steps instead, in batches that shrink with
the data, so small and large training sets both get a sensible amount of
training; any value set in `hyper` wins. Plain arithmetic, no torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

MIN_BATCH = 8
MAX_AUTO_BATCH = 128
BATCH_SHARE = 10  # auto batch: a tenth of the training rows, within [MIN_BATCH, MAX_AUTO_BATCH]
MIN_AUTO_EPOCHS = 3
MAX_AUTO_EPOCHS = 500
MIN_PATIENCE = 10
PATIENCE_SHARE = 5  # auto patience: a fifth of the epochs, at least MIN_PATIENCE
WARMUP_SHARE = 0.05  # linear learning-rate warm-up over this share of the planned steps


@dataclass(frozen=True)
class Recipe:
    """Batch size, batches per epoch, epochs and patience (None: no early stopping) for `n` rows."""

    batch: int
    per_epoch: int
    epochs: int
    patience: int | None
    schedule: str
    warmup_steps: int

    @property
    def steps(self) -> int:
        return self.per_epoch * self.epochs

    @classmethod
    def for_rows(cls, n: int, hyper: dict[str, Any], *, epochs_key: str = "epochs") -> Recipe:
        """`epochs = 0` and `batch_size = 0` mean auto; `patience = 0` means a fifth of the epochs."""
        n = max(1, n)
        batch = hyper["batch_size"] or min(MAX_AUTO_BATCH, max(MIN_BATCH, n // BATCH_SHARE))
        batch = max(1, min(batch, n))
        per_epoch = math.ceil(n / batch)
        epochs = hyper[epochs_key] or min(MAX_AUTO_EPOCHS, max(MIN_AUTO_EPOCHS, math.ceil(hyper["steps"] / per_epoch)))
        patience = None
        if hyper.get("early_stopping", False):
            patience = hyper.get("patience") or max(MIN_PATIENCE, epochs // PATIENCE_SHARE)
        schedule = hyper.get("schedule", "constant")
        warmup = int(round(WARMUP_SHARE * per_epoch * epochs)) if schedule == "cosine" else 0
        return cls(batch, per_epoch, epochs, patience, schedule, warmup)

    def batches(self, order: list[int] | Any) -> list:
        """`order` cut into `per_epoch` batches of near-equal size: no one-row remainder batch."""
        n = len(order)
        bounds = [round(i * n / self.per_epoch) for i in range(self.per_epoch + 1)]
        return [order[bounds[i] : bounds[i + 1]] for i in range(self.per_epoch)]

    def lr_factor(self, step: int) -> float:
        """Learning-rate multiplier before optimiser step `step` (0-based): warm-up, then cosine to zero."""
        if self.schedule != "cosine":
            return 1.0
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        span = max(1, self.steps - self.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - self.warmup_steps) / span)))
