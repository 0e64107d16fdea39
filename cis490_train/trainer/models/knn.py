"""k-nearest neighbours (torch distances) on standardised per-window summary features, and its
semi-supervised variant that grows the training set with confident pseudo-labels.

Distances run in torch so that the same code uses a GPU where there is one;
ties in distance keep the earlier training row, so predictions never depend
on the sort kernel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import ModelConfig, Part, Progress, ProgressCallback
from .torch_loop import Scaler, TorchModel, load_payload, macro_f1, save_payload, setup, torch

FORMAT = 1
QUERY_BATCH = 1024  # query rows per distance block: the block is QUERY_BATCH x training rows
METRICS = ("euclidean", "manhattan", "cosine")
WEIGHTS = ("uniform", "distance")


class KNNModel(TorchModel):
    name = "knn"
    inputs = "summary"
    weights_file = "model.pt"

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        self.scaler: Scaler | None = None
        self.x = None
        self.y = None

    def _settings(self) -> tuple[int, str, str]:
        h = self.config.hyper
        return h["n_neighbors"], h["weights"], h["metric"]

    def fit(self, train: Part, val: Part, progress: ProgressCallback, unlabelled: Part | None = None) -> None:
        setup(self.config)
        self.scaler = Scaler.fit(train.features)
        self._memorise(train.features, train.y)
        score = macro_f1(val, self.predict, self.config.n_classes)
        progress(_boundary(1, 1, score))
        self.info = {"n_memorised": int(train.n)}

    def _memorise(self, features: np.ndarray, y: np.ndarray) -> None:
        self.x = self.scaler.tensor(features, self.config.device)
        self.y = torch.from_numpy(y.astype(np.int64)).to(self.config.device)

    def votes(self, features: np.ndarray) -> np.ndarray:
        """Per-row class vote shares, [n, n_classes], summing to 1."""
        k, weighting, metric = self._settings()
        k = min(k, len(self.y))
        out = []
        for start in range(0, len(features), QUERY_BATCH):
            q = self.scaler.tensor(features[start : start + QUERY_BATCH], self.config.device)
            d = _distances(q, self.x, metric)
            d, idx = torch.sort(d, dim=1, stable=True)
            d, idx = d[:, :k], idx[:, :k]
            if weighting == "uniform":
                w = torch.ones_like(d)
            else:
                exact = d <= 0
                w = torch.where(exact.any(dim=1, keepdim=True), exact.to(d.dtype), 1.0 / d.clamp_min(1e-12))
            share = torch.zeros(len(q), self.config.n_classes, dtype=torch.float64, device=q.device)
            share.scatter_add_(1, self.y[idx], w.to(torch.float64))
            out.append((share / share.sum(dim=1, keepdim=True)).cpu().numpy())
        return np.concatenate(out) if out else np.empty((0, self.config.n_classes))

    def predict(self, part: Part) -> np.ndarray:
        return self.votes(part.features).argmax(axis=1).astype(np.int64)

    def save(self, directory: Path) -> None:
        k, weighting, metric = self._settings()
        payload = {
            "format": FORMAT,
            "arch": {
                "n_neighbors": k,
                "weights": WEIGHTS.index(weighting),
                "metric": METRICS.index(metric),
                "n_classes": self.config.n_classes,
            },
            "x": self.x.detach().cpu(),
            "y": self.y.detach().cpu(),
            **self.scaler.to_payload("features"),
        }
        save_payload(Path(directory) / self.weights_file, payload)

    @classmethod
    def load(cls, directory: Path, device: str = "cpu", threads: int = 1) -> KNNModel:
        payload = load_payload(Path(directory) / cls.weights_file, device, threads)
        arch = payload["arch"]
        hyper = {
            "n_neighbors": int(arch["n_neighbors"]),
            "weights": WEIGHTS[int(arch["weights"])],
            "metric": METRICS[int(arch["metric"])],
        }
        model = cls(ModelConfig(hyper=hyper, n_classes=int(arch["n_classes"]), seed=0, device=device, threads=threads))
        model.scaler = Scaler.from_payload(payload, "features")
        model.x, model.y = payload["x"].to(device), payload["y"].to(device)
        return model


class KNNSemiModel(KNNModel):
    """Self-training: each round, unlabelled windows whose vote share reaches `confidence`
    join the neighbours with the voted label; standardisation stays that of the labelled rows."""

    name = "knn_semi"

    def fit(self, train: Part, val: Part, progress: ProgressCallback, unlabelled: Part | None = None) -> None:
        h = self.config.hyper
        setup(self.config)
        self.scaler = Scaler.fit(train.features)
        has_pool = unlabelled is not None and unlabelled.n
        pool = unlabelled.features if has_pool else np.empty((0, train.features.shape[1]), dtype=np.float32)
        taken = np.zeros(len(pool), dtype=bool)
        pseudo = np.zeros(len(pool), dtype=np.int64)
        self._memorise(train.features, train.y)
        added: list[int] = []
        for round_ in range(1, h["rounds"] + 1):
            fresh = np.flatnonzero(~taken)
            new = 0
            if len(fresh):
                share = self.votes(pool[fresh])
                confident = share.max(axis=1) >= h["confidence"]
                pseudo[fresh[confident]] = share[confident].argmax(axis=1)
                taken[fresh[confident]] = True
                new = int(confident.sum())
            added.append(new)
            self._memorise(np.concatenate([train.features, pool[taken]]), np.concatenate([train.y, pseudo[taken]]))
            progress(_boundary(round_, h["rounds"], macro_f1(val, self.predict, self.config.n_classes)))
        self.info = {
            "n_memorised": int(len(self.y)),
            "n_unlabelled": int(len(pool)),
            "pseudo_labels": int(taken.sum()),
            "pseudo_labels_per_round": added,
        }


def _boundary(step: int, steps: int, score: float | None) -> Progress:
    return Progress(
        epoch=step,
        epochs=steps,
        step=step,
        steps=steps,
        metric=score,
        metric_name="val_macro_f1" if score is not None else None,
        boundary=True,
    )


def _distances(q, x, metric: str):
    if metric == "cosine":
        qn = q / q.norm(dim=1, keepdim=True).clamp_min(1e-12)
        xn = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return (1.0 - qn @ xn.T).clamp_min(0.0)
    return torch.cdist(q, x, p=1.0 if metric == "manhattan" else 2.0, compute_mode="donot_use_mm_for_euclid_dist")
