"""What every torch model shares: seeding, standardisation, one training loop, batched prediction,
and a base class.

One loop means one place that gets early stopping, progress lines, mixed
precision and CPU determinism right for all of them.
"""

from __future__ import annotations

import contextlib
import copy
import pickle
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ...atomic import atomic_path
from ...errors import DataError
from ..evaluate import macro_f1_score
from .base import Model, ModelConfig, Part, Progress, ProgressCallback, import_optional
from .recipe import Recipe

torch = import_optional("torch", "pip install torch==2.13.0")

PREDICT_BATCH = 8192


class TorchModel(Model):
    """A model on torch: it runs on CUDA wherever torch sees a card, and keeps what training did in `info`."""

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        self.info: dict = {}

    def fit_info(self) -> dict:
        return dict(self.info)

    @classmethod
    def cuda_available(cls) -> bool:
        return bool(torch.cuda.is_available())


def setup(config: ModelConfig) -> None:
    """Seed torch and cap its threads; on CPU also ask for deterministic kernels."""
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    if config.device == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)


@dataclass(frozen=True)
class Scaler:
    """Training-set z-scores over the last axis; missing values land on the mean (0)."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, values: np.ndarray) -> Scaler:
        flat = values.reshape(-1, values.shape[-1])
        with np.errstate(invalid="ignore"):
            mean = np.nan_to_num(np.nanmean(flat, axis=0)).astype(np.float32)
            std = np.nan_to_num(np.nanstd(flat, axis=0))
        return cls(mean, np.where(std > 1e-12, std, 1.0).astype(np.float32))

    def tensor(self, values: np.ndarray, device: str):
        x = (values - self.mean) / self.std
        return torch.from_numpy(np.nan_to_num(x, nan=0.0).astype(np.float32)).to(device)

    def to_payload(self, prefix: str) -> dict:
        return {f"{prefix}_mean": torch.from_numpy(self.mean), f"{prefix}_std": torch.from_numpy(self.std)}

    @classmethod
    def from_payload(cls, payload: dict, prefix: str) -> Scaler:
        return cls(payload[f"{prefix}_mean"].cpu().numpy(), payload[f"{prefix}_std"].cpu().numpy())


def autocast(device: str, enabled: bool):
    """bf16 autocast on CUDA where the card has it, fp16 otherwise; a no-op on CPU."""
    if device != "cuda" or not enabled:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def macro_f1(part: Part, predict: Callable[[Part], np.ndarray], n_classes: int) -> float | None:
    if not part.n:
        return None
    return macro_f1_score(part.y, predict(part), n_classes)


@dataclass(frozen=True)
class Validation:
    """What one epoch scored on the validation split: macro-F1 first, mean cross-entropy to break ties.

    A small validation split gives few distinct F1 values, so the loss tells
    apart epochs that classify it equally well.
    """

    macro_f1: float
    loss: float

    def beats(self, other: Validation | None) -> bool:
        if other is None:
            return True
        return self.macro_f1 > other.macro_f1 or (self.macro_f1 == other.macro_f1 and self.loss < other.loss)


def validate(logits_of: Callable[[Part], object], part: Part, n_classes: int) -> Validation | None:
    """Score `part` from its logits; None when the split left no validation windows."""
    if not part.n:
        return None
    logits = logits_of(part).float()
    y = torch.from_numpy(part.y.astype(np.int64)).to(logits.device)
    loss = float(torch.nn.functional.cross_entropy(logits, y))
    return Validation(macro_f1_score(part.y, logits.argmax(dim=1).cpu().numpy(), n_classes), loss)


@dataclass(frozen=True)
class FitResult:
    epochs_run: int
    best_epoch: int | None
    final_loss: float

    def info(self, recipe: Recipe) -> dict:
        return {
            "epochs_run": self.epochs_run,
            "best_epoch": self.best_epoch,
            "epochs_planned": recipe.epochs,
            "batch_size": recipe.batch,
            "steps_run": self.epochs_run * recipe.per_epoch,
        }


def fit_loop(
    net,
    n: int,
    batch_loss: Callable,
    *,
    config: ModelConfig,
    progress: ProgressCallback,
    recipe: Recipe,
    lr: float,
    score: Callable[[], Validation | None] = lambda: None,
    phase: str | None = None,
    seed_offset: int = 0,
) -> FitResult:
    """AdamW over `n` rows in seeded shuffled batches, the learning rate following `recipe`;
    `batch_loss(idx)` returns one batch's loss.

    After each epoch `score()` (the validation split's, or None) goes into the
    boundary line; with the recipe's patience the best-scoring weights are kept
    and training stops once `patience` epochs pass without a gain.
    """
    h, device = config.hyper, config.device
    rng = np.random.default_rng([config.seed, seed_offset])
    optimiser = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=h["weight_decay"])
    amp = device == "cuda" and h["amp"]
    grad_scaler = torch.amp.GradScaler("cuda", enabled=amp and not torch.cuda.is_bf16_supported())
    epochs, per_epoch = recipe.epochs, recipe.per_epoch
    best, best_state, best_epoch, stale = None, None, None, 0
    epoch, mean_loss = 0, float("nan")
    for epoch in range(1, epochs + 1):
        net.train()
        order = torch.from_numpy(rng.permutation(n)).to(device)
        total = 0.0
        for i, idx in enumerate(recipe.batches(order)):
            step = (epoch - 1) * per_epoch + i
            for group in optimiser.param_groups:
                group["lr"] = lr * recipe.lr_factor(step)
            optimiser.zero_grad(set_to_none=True)
            with autocast(device, h["amp"]):
                loss = batch_loss(idx)
            grad_scaler.scale(loss).backward()
            grad_scaler.step(optimiser)
            grad_scaler.update()
            value = loss.item()
            total += value * len(idx)
            progress(
                Progress(epoch=epoch, epochs=epochs, step=step + 1, steps=recipe.steps, loss=value, phase=phase)
            )
        mean_loss = total / n
        current = score()
        progress(
            Progress(
                epoch=epoch,
                epochs=epochs,
                step=epoch * per_epoch,
                steps=recipe.steps,
                loss=mean_loss,
                metric=current.macro_f1 if current is not None else None,
                metric_name="val_macro_f1" if current is not None else None,
                boundary=True,
                phase=phase,
            )
        )
        if current is None or recipe.patience is None:
            continue
        if current.beats(best):
            best, best_state, best_epoch, stale = current, copy.deepcopy(net.state_dict()), epoch, 0
        else:
            stale += 1
            if stale >= recipe.patience:
                break
    if best_state is not None:
        net.load_state_dict(best_state)
    return FitResult(epochs_run=epoch, best_epoch=best_epoch, final_loss=mean_loss)


def logits_batches(net, n: int, inputs: Callable[[slice], tuple], device: str, amp: bool):
    """The network's outputs for `n` rows in batches of PREDICT_BATCH; `inputs(rows)` gives its arguments."""
    net.eval()
    out = []
    with torch.no_grad():
        for start in range(0, n, PREDICT_BATCH):
            with autocast(device, amp):
                out.append(net(*inputs(slice(start, start + PREDICT_BATCH))).float())
    return torch.cat(out) if out else torch.empty((0, 0))


def predict_batches(net, n: int, inputs: Callable[[slice], tuple], device: str, amp: bool) -> np.ndarray:
    """Arg-max classes, one per row."""
    if not n:
        return np.empty(0, dtype=np.int64)
    return logits_batches(net, n, inputs, device, amp).argmax(dim=1).cpu().numpy().astype(np.int64)


def save_payload(path, payload: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_payload(path, device: str, threads: int, *, model: str, fmt: int) -> dict:
    """Tensors and plain containers only: a weights file comes with a bundle, and a pickle may run code.
    A payload of another format than `fmt` was written by another trainer and is refused."""
    torch.set_num_threads(threads)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            payload = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        wanted = re.search(r"GLOBAL (\S+)", str(exc))
        asks = f"; it asks for {wanted.group(1)}" if wanted else ""
        raise DataError(
            f"refusing to load {path}: it is not plain weights (only tensors and plain containers are loaded{asks})"
        ) from None
    found = payload.get("format") if isinstance(payload, dict) else None
    if found is None:
        raise DataError(f"{path} cannot be loaded as {model} weights: it names no format")
    if found != fmt:
        raise DataError(
            f"{path} holds {model} weights of format {found!r}; this trainer reads format {fmt} "
            "(retrain the job to score it here)"
        )
    return payload


def state_dict_cpu(net) -> dict:
    return {k: v.detach().cpu() for k, v in net.state_dict().items()}
