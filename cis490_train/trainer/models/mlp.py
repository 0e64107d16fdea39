"""A multilayer perceptron (torch) on standardised per-window summary features."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import ModelConfig, Part, ProgressCallback, steering
from .torch_loop import (
    Scaler,
    TorchModel,
    fit_loop,
    load_payload,
    logits_batches,
    predict_batches,
    save_payload,
    setup,
    state_dict_cpu,
    torch,
    validate,
)
from .recipe import Recipe

nn = torch.nn

FORMAT = 1


def _network(in_dim: int, hidden_dim: int, n_layers: int, dropout: float, n_classes: int):
    layers: list = []
    width = in_dim
    for _ in range(n_layers):
        layers += [nn.Linear(width, hidden_dim), nn.ReLU(), nn.Dropout(dropout)]
        width = hidden_dim
    layers.append(nn.Linear(width, n_classes))
    return nn.Sequential(*layers)


class MLPModel(TorchModel):
    name = "mlp"
    inputs = "summary"
    weights_file = "model.pt"

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        self.net = None
        self.arch: dict[str, int | float] = {}
        self.scaler: Scaler | None = None
        self.amp = bool(config.hyper.get("amp", False))

    def fit(self, train: Part, val: Part, progress: ProgressCallback, unlabelled: Part | None = None) -> None:
        h, device = self.config.hyper, self.config.device
        setup(self.config)
        train, val, validation = steering(train, val, h["early_stopping"])
        self.scaler = Scaler.fit(train.features)
        self.arch = {
            "in_dim": train.features.shape[1],
            "hidden_dim": h["hidden_dim"],
            "n_layers": h["n_layers"],
            "dropout": h["dropout"],
            "n_classes": self.config.n_classes,
        }
        self.net = _network(**self.arch).to(device)
        loss_fn = nn.CrossEntropyLoss()
        x = self.scaler.tensor(train.features, device)
        y = torch.from_numpy(train.y.astype(np.int64)).to(device)
        recipe = Recipe.for_rows(train.n, h)
        result = fit_loop(
            self.net,
            train.n,
            lambda idx: loss_fn(self.net(x[idx]), y[idx]),
            config=self.config,
            progress=progress,
            recipe=recipe,
            lr=h["lr"],
            score=lambda: validate(self._logits, val, self.config.n_classes),
        )
        self.info = {**result.info(recipe), "validation": validation}

    def _inputs(self, part: Part):
        return lambda rows: (self.scaler.tensor(part.features[rows], self.config.device),)

    def _logits(self, part: Part):
        return logits_batches(self.net, part.n, self._inputs(part), self.config.device, self.amp)

    def predict(self, part: Part) -> np.ndarray:
        return predict_batches(self.net, part.n, self._inputs(part), self.config.device, self.amp)

    def save(self, directory: Path) -> None:
        payload = {
            "format": FORMAT,
            "arch": dict(self.arch),
            "amp": self.amp,
            "state_dict": state_dict_cpu(self.net),
            "mean": torch.from_numpy(self.scaler.mean),
            "std": torch.from_numpy(self.scaler.std),
        }
        save_payload(Path(directory) / self.weights_file, payload)

    @classmethod
    def load(cls, directory: Path, device: str = "cpu", threads: int = 1) -> MLPModel:
        payload = load_payload(Path(directory) / cls.weights_file, device, threads, model=cls.name, fmt=FORMAT)
        arch = payload["arch"]
        hyper = {"amp": bool(payload["amp"])}
        config = ModelConfig(hyper=hyper, n_classes=int(arch["n_classes"]), seed=0, device=device, threads=threads)
        model = cls(config)
        model.arch = dict(arch)
        model.net = _network(**arch).to(device)
        model.net.load_state_dict(payload["state_dict"])
        model.scaler = Scaler(payload["mean"].cpu().numpy(), payload["std"].cpu().numpy())
        return model
