"""k-nearest neighbours (torch distances), and its semi-supervised variant that grows the training
set with confident pseudo-labels.

Distances compare either the whole window (every step of every channel,
standardised per channel: with k = 1 and the Euclidean metric this is the
1-NN-ED baseline of the time-series literature) or its standardised summary
features; in oracle mode the oracle features join the window. Distances run in
torch so that the same code uses a GPU where there is one; ties in distance
keep the earlier training row, so predictions never depend on the sort kernel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .base import ModelConfig, Part, Progress, ProgressCallback
from .torch_loop import Scaler, TorchModel, load_payload, macro_f1, save_payload, setup, torch

FORMAT = 2
QUERY_BATCH = 1024  # query rows per distance block: the block is QUERY_BATCH x training rows
METRICS = ("euclidean", "manhattan", "cosine")
WEIGHTS = ("uniform", "distance")
SPACES = ("sequence", "features")
SCALED = ("sequences", "features")  # the Part fields a knn may read, in the order they join


class KNNModel(TorchModel):
    name = "knn"
    inputs = "summary"
    weights_file = "model.pt"

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        self.inputs = self.inputs_for(config.hyper)
        self.scalers: dict[str, Scaler] = {}
        self.feature_weight = 1.0
        self.x = None
        self.y = None

    @classmethod
    def inputs_for(cls, hyper: dict[str, Any]) -> str:
        return "sequence" if hyper.get("space") == "sequence" else "summary"

    def _settings(self) -> tuple[int, str, str]:
        h = self.config.hyper
        return h["n_neighbors"], h["weights"], h["metric"]

    def _fit_scalers(self, train: Part) -> None:
        """Per-channel z-scores for the window, per-column ones for the features. Beside a window the
        (oracle) features are weighted so that their block counts as much in a distance as the whole
        window's, not as a few columns among its steps times channels."""
        self.scalers = {}
        self.feature_weight = 1.0
        if self.inputs == "sequence":
            self.scalers["sequences"] = Scaler.fit(train.sequences)
        if train.features is not None and train.features.shape[1]:
            self.scalers["features"] = Scaler.fit(train.features)
            if self.inputs == "sequence":
                self.feature_weight = float(np.sqrt(train.sequences[0].size / train.features.shape[1]))

    def vectors(self, part: Part, rows: slice = slice(None)):
        """One standardised row vector per window: its flattened sequence and/or its weighted features."""
        device = self.config.device
        pieces = []
        for field in SCALED:
            if field in self.scalers:
                block = self.scalers[field].tensor(getattr(part, field)[rows], device)
                block = block.reshape(block.shape[0], -1)
                pieces.append(block * self.feature_weight if field == "features" else block)
        return torch.cat(pieces, dim=1)

    def fit(self, train: Part, val: Part, progress: ProgressCallback, unlabelled: Part | None = None) -> None:
        setup(self.config)
        self._fit_scalers(train)
        self._memorise(self.vectors(train), train.y)
        score = macro_f1(val, self.predict, self.config.n_classes)
        progress(_boundary(1, 1, score))
        self._keep_validation(val)
        self.info = {"n_memorised": int(len(self.y))}

    def _keep_validation(self, val: Part) -> None:
        """Once scored, the validation windows become neighbours too: a knn has nothing to tune on them."""
        if val.n:
            self._memorise(torch.cat([self.x, self.vectors(val)]), np.concatenate([self.y.cpu().numpy(), val.y]))

    def _memorise(self, x, y: np.ndarray) -> None:
        self.x = x
        self.y = torch.from_numpy(y.astype(np.int64)).to(self.config.device)

    def votes(self, queries) -> np.ndarray:
        """Per-row class vote shares of the query vectors, [n, n_classes], summing to 1."""
        k, weighting, metric = self._settings()
        k = min(k, len(self.y))
        out = []
        for start in range(0, len(queries), QUERY_BATCH):
            q = queries[start : start + QUERY_BATCH]
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
        if not part.n:
            return np.empty(0, dtype=np.int64)
        return self.votes(self.vectors(part)).argmax(axis=1).astype(np.int64)

    def save(self, directory: Path) -> None:
        k, weighting, metric = self._settings()
        payload = {
            "format": FORMAT,
            "arch": {
                "n_neighbors": k,
                "weights": WEIGHTS.index(weighting),
                "metric": METRICS.index(metric),
                "space": SPACES.index(self.config.hyper["space"]),
                "n_classes": self.config.n_classes,
                "scaled": [SCALED.index(field) for field in self.scalers],
                "feature_weight": self.feature_weight,
            },
            "x": self.x.detach().cpu(),
            "y": self.y.detach().cpu(),
            **{k: v for field, scaler in self.scalers.items() for k, v in scaler.to_payload(field).items()},
        }
        save_payload(Path(directory) / self.weights_file, payload)

    @classmethod
    def load(cls, directory: Path, device: str = "cpu", threads: int = 1) -> KNNModel:
        path = Path(directory) / cls.weights_file
        payload = load_payload(path, device, threads, model=cls.name, fmt=FORMAT)
        arch = payload["arch"]
        hyper = {
            "n_neighbors": int(arch["n_neighbors"]),
            "weights": WEIGHTS[int(arch["weights"])],
            "metric": METRICS[int(arch["metric"])],
            "space": SPACES[int(arch["space"])],
        }
        model = cls(ModelConfig(hyper=hyper, n_classes=int(arch["n_classes"]), seed=0, device=device, threads=threads))
        model.scalers = {SCALED[int(i)]: Scaler.from_payload(payload, SCALED[int(i)]) for i in arch["scaled"]}
        model.feature_weight = float(arch["feature_weight"])
        model.x, model.y = payload["x"].to(device), payload["y"].to(device)
        return model


class KNNSemiModel(KNNModel):
    """Self-training: each round, unlabelled windows whose vote share reaches `confidence`
    join the neighbours with the voted label; standardisation stays that of the labelled rows,
    and the validation windows join after the last round."""

    name = "knn_semi"

    def fit(self, train: Part, val: Part, progress: ProgressCallback, unlabelled: Part | None = None) -> None:
        h = self.config.hyper
        setup(self.config)
        self._fit_scalers(train)
        labelled = self.vectors(train)
        has_pool = unlabelled is not None and unlabelled.n
        pool = self.vectors(unlabelled) if has_pool else labelled[:0]
        taken = np.zeros(len(pool), dtype=bool)
        pseudo = np.zeros(len(pool), dtype=np.int64)
        self._memorise(labelled, train.y)
        added: list[int] = []
        for round_ in range(1, h["rounds"] + 1):
            fresh = np.flatnonzero(~taken)
            new = 0
            if len(fresh):
                share = self.votes(pool[torch.from_numpy(fresh).to(pool.device)])
                confident = share.max(axis=1) >= h["confidence"]
                pseudo[fresh[confident]] = share[confident].argmax(axis=1)
                taken[fresh[confident]] = True
                new = int(confident.sum())
            added.append(new)
            chosen = torch.from_numpy(np.flatnonzero(taken)).to(pool.device)
            self._memorise(torch.cat([labelled, pool[chosen]]), np.concatenate([train.y, pseudo[taken]]))
            progress(_boundary(round_, h["rounds"], macro_f1(val, self.predict, self.config.n_classes)))
        self._keep_validation(val)
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
