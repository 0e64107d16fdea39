"""Sequence models (torch) on the per-window tensors: cnn, gru, lstm, transformer, transformer_ssl.

Each encodes a standardised [seq_len, n_channels] window into per-step states,
pools them over time and classifies with one linear layer. The cnn is the
fully convolutional network of the time-series literature (three blocks of
convolution, batch norm and ReLU, global average pooling); the recurrent and
attention encoders read the window as tokens of `patch` steps, so a long
window is a short sequence for them (at most 32 tokens by default) and they
pool mean and max over the tokens. In oracle mode the standardised oracle
features join the pooled representation before the head, the same way for
every encoder. transformer_ssl first learns its encoder by reconstructing
masked tokens of windows it needs no labels for.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .base import ModelConfig, Part, ProgressCallback, steering
from .recipe import Recipe
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

nn = torch.nn

FORMAT = 2
MAX_TOKENS = 32


def patch_length(hyper_patch: int, seq_len: int) -> int:
    """Steps per token: the setting, or the fewest that keep a window within MAX_TOKENS tokens."""
    return hyper_patch or max(1, math.ceil(seq_len / MAX_TOKENS))


def fcn_blocks(channels: int, kernel_size: int, n_layers: int) -> list[tuple[int, int]]:
    """(filters, kernel) per block: the outer blocks `channels`, the inner ones twice that; the kernel
    shrinks from `kernel_size` to 3/8 of it (8, 5, 3 for the defaults)."""
    blocks = []
    for i in range(n_layers):
        width = channels if i in (0, n_layers - 1) else 2 * channels
        share = 1.0 - (5 / 8) * (i / (n_layers - 1)) if n_layers > 1 else 1.0
        blocks.append((width, max(1, int(kernel_size * share))))
    return blocks


def series_scaled(values: np.ndarray) -> np.ndarray:
    """Each window and channel z-scored over its own time steps (a constant channel becomes 0)."""
    values = np.asarray(values, dtype=np.float32)
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(values, axis=1, keepdims=True)
        std = np.nanstd(values, axis=1, keepdims=True)
    mean, std = np.nan_to_num(mean), np.nan_to_num(std)
    return (values - mean) / np.where(std > 1e-8, std, 1.0)


class _ConvEncoder(nn.Module):
    pools = ("mean",)

    def __init__(self, arch: dict[str, Any]):
        super().__init__()
        layers: list = []
        width = arch["n_channels"]
        for filters, kernel in fcn_blocks(arch["channels"], arch["kernel_size"], arch["n_layers"]):
            layers += [
                nn.ConstantPad1d(((kernel - 1) // 2, kernel // 2), 0.0),  # "same" length, even kernels too
                nn.Conv1d(width, filters, kernel),
                nn.BatchNorm1d(filters),
                nn.ReLU(),
            ]
            width = filters
        self.body = nn.Sequential(*layers)
        self.width = width

    def forward(self, x):
        return self.body(x.transpose(1, 2)).transpose(1, 2)


class _Tokens(nn.Module):
    """[batch, seq_len, channels] → [batch, tokens, patch * channels], the last token padded with zeros."""

    def __init__(self, arch: dict[str, Any]):
        super().__init__()
        self.patch = arch["patch"]
        self.tokens = math.ceil(arch["seq_len"] / self.patch)
        self.width = self.patch * arch["n_channels"]

    def forward(self, x):
        pad = self.tokens * self.patch - x.shape[1]
        if pad:
            x = nn.functional.pad(x, (0, 0, 0, pad))
        return x.reshape(x.shape[0], self.tokens, self.width)


class _RecurrentEncoder(nn.Module):
    pools = ("mean", "max")

    def __init__(self, arch: dict[str, Any]):
        super().__init__()
        self.tokens = _Tokens(arch)
        cell = nn.GRU if arch["kind"] == "gru" else nn.LSTM
        self.rnn = cell(
            self.tokens.width,
            arch["hidden_dim"],
            num_layers=arch["n_layers"],
            batch_first=True,
            dropout=arch["dropout"] if arch["n_layers"] > 1 else 0.0,
            bidirectional=bool(arch["bidirectional"]),
        )
        self.width = arch["hidden_dim"] * (2 if arch["bidirectional"] else 1)

    def forward(self, x):
        return self.rnn(self.tokens(x))[0]


class _TransformerEncoder(nn.Module):
    """Linear token embedding plus a learned position embedding, pre-norm layers; `mask` swaps tokens
    for a mask token."""

    pools = ("mean", "max")

    def __init__(self, arch: dict[str, Any]):
        super().__init__()
        d = arch["d_model"]
        self.tokens = _Tokens(arch)
        self.embed = nn.Linear(self.tokens.width, d)
        self.position = nn.Parameter(torch.randn(1, self.tokens.tokens, d) * 0.02)
        self.mask_token = nn.Parameter(torch.zeros(d))
        layer = nn.TransformerEncoderLayer(
            d, arch["n_heads"], arch["dim_feedforward"], arch["dropout"], batch_first=True, norm_first=True
        )
        self.body = nn.TransformerEncoder(layer, arch["n_layers"], norm=nn.LayerNorm(d), enable_nested_tensor=False)
        self.width = d

    def forward(self, x, mask=None):
        z = self.embed(self.tokens(x))
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
    """Encoder, pooling over time, optional extra features, a linear head."""

    def __init__(self, arch: dict[str, Any]):
        super().__init__()
        self.encoder = _ENCODERS[arch["kind"]](arch)
        width = len(self.encoder.pools) * self.encoder.width + arch["n_extra"]
        self.head = nn.Sequential(nn.Dropout(arch["dropout"]), nn.Linear(width, arch["n_classes"]))
        if arch["kind"] == "transformer_ssl":
            self.reconstruct = nn.Linear(self.encoder.width, self.encoder.tokens.width)

    def forward(self, seq, extra=None):
        states = self.encoder(seq)
        pooled = [states.mean(dim=1) if pool == "mean" else states.amax(dim=1) for pool in self.encoder.pools]
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

    def _scaled(self, sequences: np.ndarray) -> np.ndarray:
        return series_scaled(sequences) if self.arch["scaling"] == "series" else sequences

    def _tensors(self, part: Part, rows: slice | None = None):
        rows = slice(None) if rows is None else rows
        device = self.config.device
        seq = self.seq_scaler.tensor(self._scaled(part.sequences[rows]), device)
        extra = self.extra_scaler.tensor(part.features[rows], device) if self.extra_scaler is not None else None
        return seq, extra

    def _logits(self, part: Part):
        return logits_batches(self.net, part.n, lambda rows: self._tensors(part, rows), self.config.device, self.amp)

    def fit(self, train: Part, val: Part, progress: ProgressCallback, unlabelled: Part | None = None) -> None:
        h, device = self.config.hyper, self.config.device
        setup(self.config)
        train, val, validation = steering(train, val, h["early_stopping"])
        has_extra = train.features is not None and train.features.shape[1] > 0
        seq_len = train.sequences.shape[1]
        self.arch = {
            "kind": self.name,
            "seq_len": seq_len,
            "n_channels": train.sequences.shape[2],
            "n_extra": train.features.shape[1] if has_extra else 0,
            "n_classes": self.config.n_classes,
            "dropout": h["dropout"],
            "scaling": h["scaling"],
            **({"patch": patch_length(h["patch"], seq_len)} if "patch" in h else {}),
            **{key: h[key] for key in self.arch_keys},
        }
        self.seq_scaler = Scaler.fit(self._scaled(train.sequences))
        self.extra_scaler = Scaler.fit(train.features) if has_extra else None
        self.net = SequenceNet(self.arch).to(device)
        self._pretrain(train, unlabelled, progress)
        seq, extra = self._tensors(train)
        y = torch.from_numpy(train.y.astype(np.int64)).to(device)
        loss_fn = nn.CrossEntropyLoss()

        def batch_loss(idx):
            return loss_fn(self.net(seq[idx], extra[idx] if extra is not None else None), y[idx])

        recipe = Recipe.for_rows(train.n, h)
        result = fit_loop(
            self.net,
            train.n,
            batch_loss,
            config=self.config,
            progress=progress,
            recipe=recipe,
            lr=h["lr"],
            score=lambda: validate(self._logits, val, self.config.n_classes),
            phase=self._train_phase,
        )
        self.info.update(result.info(recipe), validation=validation)

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
        path = Path(directory) / cls.weights_file
        payload = load_payload(path, device, threads, model=cls.name, fmt=FORMAT)
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
    """Masked token reconstruction on train plus unlabelled windows (never val or test), then fine-tuning."""

    name = "transformer_ssl"
    _train_phase = "train"

    def _pretrain(self, train: Part, unlabelled: Part | None, progress: ProgressCallback) -> None:
        h, device = self.config.hyper, self.config.device
        windows = train.sequences
        if unlabelled is not None and unlabelled.n:
            windows = np.concatenate([windows, unlabelled.sequences])
        recipe = Recipe.for_rows(len(windows), {**h, "early_stopping": False}, epochs_key="pretrain_epochs")
        self.info = {"pretrain_windows": int(len(windows)), "pretrain_epochs": recipe.epochs if h["pretrain"] else 0}
        if not h["pretrain"]:
            self.info["pretrain_final_loss"] = None
            return
        x = self.seq_scaler.tensor(self._scaled(windows), device)
        encoder, reconstruct = self.net.encoder, self.net.reconstruct
        n_tokens = encoder.tokens.tokens
        n_masked = max(1, int(round(h["mask_ratio"] * n_tokens)))
        generator = torch.Generator().manual_seed(self.config.seed)

        def batch_loss(idx):
            order = torch.rand((len(idx), n_tokens), generator=generator).argsort(dim=1)[:, :n_masked]
            mask = torch.zeros((len(idx), n_tokens), dtype=torch.bool).scatter_(1, order, True).to(device)
            target = encoder.tokens(x[idx])
            recon = reconstruct(encoder(x[idx], mask))
            return nn.functional.mse_loss(recon[mask].float(), target[mask])

        result = fit_loop(
            self.net,
            len(windows),
            batch_loss,
            config=self.config,
            progress=progress,
            recipe=recipe,
            lr=h["pretrain_lr"],
            phase="pretrain",
            seed_offset=1,
        )
        self.info["pretrain_final_loss"] = result.final_loss
