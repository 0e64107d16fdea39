"""Sequence models (torch) on the per-window tensors: cnn, gru, lstm, transformer, transformer_ssl.

Each encodes a standardised [seq_len, n_channels] window into per-step states,
pools them (mean and max over time) and classifies. In oracle mode the
standardised oracle features join the pooled representation before the head,
so privileged information reaches the classifier the same way for every
encoder. transformer_ssl first learns its encoder by reconstructing masked
time steps of windows it needs no labels for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .base import ModelConfig, Part, ProgressCallback
from .torch_loop import (
    Scaler,
    TorchModel,
    fit_loop,
    load_payload,
    macro_f1,
    predict_batches,
    save_payload,
    setup,
    state_dict_cpu,
    torch,
)

nn = torch.nn

FORMAT = 1


class _ConvEncoder(nn.Module):
    def __init__(self, arch: dict[str, Any]):
        super().__init__()
        layers: list = []
        width = arch["n_channels"]
        for _ in range(arch["n_layers"]):
            layers += [
                nn.Conv1d(width, arch["channels"], arch["kernel_size"], padding="same"),
                nn.ReLU(),
                nn.Dropout(arch["dropout"]),
            ]
            width = arch["channels"]
        self.body = nn.Sequential(*layers)
        self.width = width

    def forward(self, x):
        return self.body(x.transpose(1, 2)).transpose(1, 2)


class _RecurrentEncoder(nn.Module):
    def __init__(self, arch: dict[str, Any]):
        super().__init__()
        cell = nn.GRU if arch["kind"] == "gru" else nn.LSTM
        self.rnn = cell(
            arch["n_channels"],
            arch["hidden_dim"],
            num_layers=arch["n_layers"],
            batch_first=True,
            dropout=arch["dropout"] if arch["n_layers"] > 1 else 0.0,
            bidirectional=bool(arch["bidirectional"]),
        )
        self.width = arch["hidden_dim"] * (2 if arch["bidirectional"] else 1)

    def forward(self, x):
        return self.rnn(x)[0]


class _TransformerEncoder(nn.Module):
    """Linear step embedding plus a learned position embedding; `mask` swaps steps for a mask token."""

    def __init__(self, arch: dict[str, Any]):
        super().__init__()
        d = arch["d_model"]
        self.embed = nn.Linear(arch["n_channels"], d)
        self.position = nn.Parameter(torch.randn(1, arch["seq_len"], d) * 0.02)
        self.mask_token = nn.Parameter(torch.zeros(d))
        layer = nn.TransformerEncoderLayer(
            d, arch["n_heads"], arch["dim_feedforward"], arch["dropout"], batch_first=True
        )
        self.body = nn.TransformerEncoder(layer, arch["n_layers"], enable_nested_tensor=False)
        self.width = d

    def forward(self, x, mask=None):
        z = self.embed(x)
        if mask is not None:
            z = torch.where(mask[..., None], self.mask_token.to(z.dtype), z)
        return self.body(z + self.position)


_ENCODERS = {
    "cnn": _ConvEncoder,
    "gru": _RecurrentEncoder,
    "lstm": _RecurrentEncoder,
    "transformer": _TransformerEncoder,
    "transformer_ssl": _TransformerEncoder,
}


class SequenceNet(nn.Module):
    """Encoder, mean+max pooling over time, optional extra features, a two-layer head."""

    def __init__(self, arch: dict[str, Any]):
        super().__init__()
        self.encoder = _ENCODERS[arch["kind"]](arch)
        width = 2 * self.encoder.width + arch["n_extra"]
        self.head = nn.Sequential(
            nn.Linear(width, self.encoder.width),
            nn.ReLU(),
            nn.Dropout(arch["dropout"]),
            nn.Linear(self.encoder.width, arch["n_classes"]),
        )
        if arch["kind"] == "transformer_ssl":
            self.reconstruct = nn.Linear(self.encoder.width, arch["n_channels"])

    def forward(self, seq, extra=None):
        states = self.encoder(seq)
        pooled = [states.mean(dim=1), states.amax(dim=1)]
        if extra is not None:
            pooled.append(extra.to(states.dtype))
        return self.head(torch.cat(pooled, dim=1))


class SequenceModel(TorchModel):
    inputs = "sequence"
    weights_file = "model.pt"
    arch_keys: ClassVar[tuple[str, ...]]
    _train_phase: ClassVar[str | None] = None  # named only where training has more than one phase

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        self.net = None
        self.arch: dict[str, Any] = {}
        self.seq_scaler: Scaler | None = None
        self.extra_scaler: Scaler | None = None
        self.amp = bool(config.hyper.get("amp", False))

    def _tensors(self, part: Part, rows: slice | None = None):
        rows = slice(None) if rows is None else rows
        device = self.config.device
        seq = self.seq_scaler.tensor(part.sequences[rows], device)
        extra = self.extra_scaler.tensor(part.features[rows], device) if self.extra_scaler is not None else None
        return seq, extra

    def fit(self, train: Part, val: Part, progress: ProgressCallback, unlabelled: Part | None = None) -> None:
        h, device = self.config.hyper, self.config.device
        setup(self.config)
        self.seq_scaler = Scaler.fit(train.sequences)
        has_extra = train.features is not None and train.features.shape[1] > 0
        self.extra_scaler = Scaler.fit(train.features) if has_extra else None
        self.arch = {
            "kind": self.name,
            "seq_len": train.sequences.shape[1],
            "n_channels": train.sequences.shape[2],
            "n_extra": train.features.shape[1] if has_extra else 0,
            "n_classes": self.config.n_classes,
            "dropout": h["dropout"],
            **{key: h[key] for key in self.arch_keys},
        }
        self.net = SequenceNet(self.arch).to(device)
        self._pretrain(train, unlabelled, progress)
        seq, extra = self._tensors(train)
        y = torch.from_numpy(train.y.astype(np.int64)).to(device)
        loss_fn = nn.CrossEntropyLoss()

        def batch_loss(idx):
            return loss_fn(self.net(seq[idx], extra[idx] if extra is not None else None), y[idx])

        result = fit_loop(
            self.net,
            train.n,
            batch_loss,
            config=self.config,
            progress=progress,
            epochs=h["epochs"],
            lr=h["lr"],
            score=lambda: macro_f1(val, self.predict, self.config.n_classes),
            phase=self._train_phase,
        )
        self.info.update(epochs_run=result.epochs_run, best_epoch=result.best_epoch)

    def _pretrain(self, train: Part, unlabelled: Part | None, progress: ProgressCallback) -> None:
        """Nothing for purely supervised models."""

    def predict(self, part: Part) -> np.ndarray:
        return predict_batches(self.net, part.n, lambda rows: self._tensors(part, rows), self.config.device, self.amp)

    def save(self, directory: Path) -> None:
        payload = {
            "format": FORMAT,
            "arch": dict(self.arch),
            "amp": self.amp,
            "state_dict": state_dict_cpu(self.net),
            **self.seq_scaler.to_payload("sequences"),
            **(self.extra_scaler.to_payload("features") if self.extra_scaler is not None else {}),
        }
        save_payload(Path(directory) / self.weights_file, payload)

    @classmethod
    def load(cls, directory: Path, device: str = "cpu", threads: int = 1) -> SequenceModel:
        payload = load_payload(Path(directory) / cls.weights_file, device, threads)
        arch = payload["arch"]
        hyper = {"amp": bool(payload["amp"])}
        config = ModelConfig(hyper=hyper, n_classes=int(arch["n_classes"]), seed=0, device=device, threads=threads)
        model = cls(config)
        model.arch = dict(arch)
        model.net = SequenceNet(arch).to(device)
        model.net.load_state_dict(payload["state_dict"])
        model.seq_scaler = Scaler.from_payload(payload, "sequences")
        model.extra_scaler = Scaler.from_payload(payload, "features") if arch["n_extra"] else None
        return model


class CNNModel(SequenceModel):
    name = "cnn"
    arch_keys = ("channels", "kernel_size", "n_layers")


class GRUModel(SequenceModel):
    name = "gru"
    arch_keys = ("hidden_dim", "n_layers", "bidirectional")


class LSTMModel(SequenceModel):
    name = "lstm"
    arch_keys = ("hidden_dim", "n_layers", "bidirectional")


class TransformerModel(SequenceModel):
    name = "transformer"
    arch_keys = ("d_model", "n_heads", "n_layers", "dim_feedforward")


class TransformerSSLModel(TransformerModel):
    """Masked time-step reconstruction on train plus unlabelled windows (never val or test), then fine-tuning."""

    name = "transformer_ssl"
    _train_phase = "train"

    def _pretrain(self, train: Part, unlabelled: Part | None, progress: ProgressCallback) -> None:
        h, device = self.config.hyper, self.config.device
        windows = train.sequences
        if unlabelled is not None and unlabelled.n:
            windows = np.concatenate([windows, unlabelled.sequences])
        self.info = {"pretrain_windows": int(len(windows)), "pretrain_epochs": h["pretrain_epochs"]}
        if not h["pretrain_epochs"]:
            self.info["pretrain_final_loss"] = None
            return
        x = self.seq_scaler.tensor(windows, device)
        seq_len = x.shape[1]
        n_masked = max(1, int(round(h["mask_ratio"] * seq_len)))
        generator = torch.Generator().manual_seed(self.config.seed)
        encoder, reconstruct = self.net.encoder, self.net.reconstruct

        def batch_loss(idx):
            order = torch.rand((len(idx), seq_len), generator=generator).argsort(dim=1)[:, :n_masked]
            mask = torch.zeros((len(idx), seq_len), dtype=torch.bool).scatter_(1, order, True).to(device)
            target = x[idx]
            recon = reconstruct(encoder(target, mask))
            return nn.functional.mse_loss(recon[mask].float(), target[mask])

        result = fit_loop(
            self.net,
            len(windows),
            batch_loss,
            config=self.config,
            progress=progress,
            epochs=h["pretrain_epochs"],
            lr=h["pretrain_lr"],
            phase="pretrain",
            seed_offset=1,
        )
        self.info["pretrain_final_loss"] = result.final_loss
