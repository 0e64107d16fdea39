"""A multilayer perceptron (torch) on standardised per-window summary features."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from ...atomic import atomic_path
from ..evaluate import confusion_matrix, metrics_from_confusion
from .base import Model, ModelConfig, Part, Progress, ProgressCallback, import_optional

torch = import_optional("torch", "pip install torch==2.13.0")
nn = torch.nn

FORMAT = 1
PREDICT_BATCH = 8192


def _network(in_dim: int, hidden_dim: int, n_layers: int, dropout: float, n_classes: int):
    layers: list = []
    width = in_dim
    for _ in range(n_layers):
        layers += [nn.Linear(width, hidden_dim), nn.ReLU(), nn.Dropout(dropout)]
        width = hidden_dim
    layers.append(nn.Linear(width, n_classes))
    return nn.Sequential(*layers)


class MLPModel(Model):
    name = "mlp"
    inputs = "summary"
    weights_file = "model.pt"

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        self.net = None
        self.arch: dict[str, int | float] = {}
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None

    def _standardise(self, features: np.ndarray):
        """Training-set z-scores; missing values land on the mean (0)."""
        x = (features - self.mean) / self.std
        return torch.from_numpy(np.nan_to_num(x, nan=0.0).astype(np.float32)).to(self.config.device)

    def fit(self, train: Part, val: Part, progress: ProgressCallback, unlabelled: Part | None = None) -> None:
        h, device = self.config.hyper, self.config.device
        torch.manual_seed(self.config.seed)
        torch.set_num_threads(self.config.threads)
        rng = np.random.default_rng(self.config.seed)
        with np.errstate(invalid="ignore"):
            self.mean = np.nan_to_num(np.nanmean(train.features, axis=0)).astype(np.float32)
            std = np.nan_to_num(np.nanstd(train.features, axis=0))
        self.std = np.where(std > 1e-12, std, 1.0).astype(np.float32)
        self.arch = {
            "in_dim": train.features.shape[1],
            "hidden_dim": h["hidden_dim"],
            "n_layers": h["n_layers"],
            "dropout": h["dropout"],
            "n_classes": self.config.n_classes,
        }
        self.net = _network(**self.arch).to(device)
        optimiser = torch.optim.AdamW(self.net.parameters(), lr=h["lr"], weight_decay=h["weight_decay"])
        loss_fn = nn.CrossEntropyLoss()
        x = self._standardise(train.features)
        y = torch.from_numpy(train.y.astype(np.int64)).to(device)
        epochs, batch = h["epochs"], min(h["batch_size"], train.n)
        per_epoch = -(-train.n // batch)
        best_score, best_state, stale = -1.0, None, 0
        for epoch in range(1, epochs + 1):
            self.net.train()
            order = torch.from_numpy(rng.permutation(train.n)).to(device)
            total = 0.0
            for i in range(per_epoch):
                idx = order[i * batch : (i + 1) * batch]
                optimiser.zero_grad(set_to_none=True)
                loss = loss_fn(self.net(x[idx]), y[idx])
                loss.backward()
                optimiser.step()
                batch_loss = loss.item()
                total += batch_loss * len(idx)
                step = (epoch - 1) * per_epoch + i + 1
                progress(Progress(epoch=epoch, epochs=epochs, step=step, steps=epochs * per_epoch, loss=batch_loss))
            score = self._score(val)
            progress(
                Progress(
                    epoch=epoch,
                    epochs=epochs,
                    step=epoch * per_epoch,
                    steps=epochs * per_epoch,
                    loss=total / train.n,
                    metric=score,
                    metric_name="val_macro_f1" if score is not None else None,
                    boundary=True,
                )
            )
            if score is None or not h["patience"]:
                continue
            if score > best_score:
                best_score, best_state, stale = score, copy.deepcopy(self.net.state_dict()), 0
            else:
                stale += 1
                if stale >= h["patience"]:
                    break
        if best_state is not None:
            self.net.load_state_dict(best_state)

    def _score(self, part: Part) -> float | None:
        if not part.n:
            return None
        cm = confusion_matrix(part.y, self.predict(part), self.config.n_classes)
        return float(metrics_from_confusion(cm)["macro_f1"])

    def predict(self, part: Part) -> np.ndarray:
        self.net.eval()
        out = []
        with torch.no_grad():
            for start in range(0, part.n, PREDICT_BATCH):
                logits = self.net(self._standardise(part.features[start : start + PREDICT_BATCH]))
                out.append(logits.argmax(dim=1).cpu().numpy())
        return np.concatenate(out).astype(np.int64) if out else np.empty(0, dtype=np.int64)

    def save(self, directory: Path) -> None:
        payload = {
            "format": FORMAT,
            "arch": dict(self.arch),
            "state_dict": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
            "mean": torch.from_numpy(self.mean),
            "std": torch.from_numpy(self.std),
        }
        with atomic_path(Path(directory) / self.weights_file) as tmp:
            torch.save(payload, tmp)

    @classmethod
    def load(cls, directory: Path, device: str = "cpu", threads: int = 1) -> MLPModel:
        payload = torch.load(Path(directory) / cls.weights_file, map_location=device, weights_only=True)
        arch = payload["arch"]
        torch.set_num_threads(threads)
        model = cls(ModelConfig(hyper={}, n_classes=int(arch["n_classes"]), seed=0, device=device, threads=threads))
        model.arch = dict(arch)
        model.net = _network(**arch).to(device)
        model.net.load_state_dict(payload["state_dict"])
        model.mean = payload["mean"].cpu().numpy()
        model.std = payload["std"].cpu().numpy()
        return model

    @classmethod
    def cuda_available(cls) -> bool:
        return bool(torch.cuda.is_available())
