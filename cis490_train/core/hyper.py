"""Hyperparameter schemas of the nine models, as plain data.

The manifest validates `hyper` tables against these when it is loaded, so a
typo fails at enqueue instead of hours later on a worker; the trainer resolves
the same schemas to fill in defaults. Importing this module never imports
torch or xgboost.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from ..errors import HyperparameterError, UnknownModelError


@dataclass(frozen=True)
class HyperParam:
    name: str
    type: type
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()

    def check(self, value: Any) -> str | None:
        """Return why `value` is not acceptable, or None."""
        if self.type is bool:
            if not isinstance(value, bool):
                return f"must be true or false, got {value!r}"
            return None
        if self.type is int:
            if isinstance(value, bool) or not isinstance(value, int):
                return f"must be an integer, got {value!r}"
        elif self.type is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return f"must be a number, got {value!r}"
            if value != value:
                return "must be a number, got nan"
        elif self.type is str:
            if not isinstance(value, str):
                return f"must be a string, got {value!r}"
            if self.choices and value not in self.choices:
                return f"must be one of {list(self.choices)}, got {value!r}"
            return None
        if self.low is not None and value < self.low:
            return f"must be >= {self.low:g}, got {value!r}"
        if self.high is not None and value > self.high:
            return f"must be <= {self.high:g}, got {value!r}"
        return None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type.__name__,
            "default": self.default,
            "low": self.low,
            "high": self.high,
            "choices": list(self.choices),
            "help": self.help,
        }


def _p(name, type_, default, help_, low=None, high=None, choices=()):
    return HyperParam(name, type_, default, help_, low, high, tuple(choices))


_TORCH_COMMON = (
    _p("epochs", int, 0, "passes over the training windows (0: auto, enough for `steps` optimiser steps, 3 to 500)", 0, 100_000),
    _p("steps", int, 2000, "optimiser steps the auto epoch count aims at", 1, 10_000_000),
    _p("batch_size", int, 0, "windows per optimiser step (0: auto, a tenth of the training windows, 8 to 128)", 0, 1_000_000),
    _p("lr", float, 1e-3, "AdamW peak learning rate", 1e-7, 10.0),
    _p("schedule", str, "cosine", "learning rate over the planned steps", choices=("cosine", "constant")),
    _p("weight_decay", float, 1e-4, "AdamW weight decay", 0.0, 10.0),
    _p("dropout", float, 0.1, "dropout probability", 0.0, 0.95),
    _p("early_stopping", bool, True, "keep the weights that scored best on the validation split, and stop once `patience` epochs bring no gain"),
    _p("patience", int, 0, "epochs without validation gain before stopping (0: auto, a fifth of the epochs, at least 10)", 0, 100_000),
    _p("amp", bool, True, "mixed precision (bf16, else fp16) autocast; used on CUDA only"),
)

_SEQUENCE_COMMON = (
    _p("scaling", str, "channel", "z-scores per channel over the training windows, or per window and channel", choices=("channel", "series")),
)

_KNN = (
    _p("n_neighbors", int, 1, "neighbours that vote", 1, 10_000),
    _p("weights", str, "uniform", "vote weighting", choices=("uniform", "distance")),
    _p("metric", str, "euclidean", "distance between standardised inputs", choices=("euclidean", "manhattan", "cosine")),
    _p("space", str, "sequence", "what distances compare: the whole window (each step of each channel) or its summary features", choices=("sequence", "features")),
)

_TOKENS = (
    _p("patch", int, 0, "time steps per token (0: auto, so that a window is at most 32 tokens)", 0, 100_000),
)

_RECURRENT = _TORCH_COMMON + _SEQUENCE_COMMON + _TOKENS + (
    _p("hidden_dim", int, 64, "recurrent state size", 1, 65_536),
    _p("n_layers", int, 1, "stacked recurrent layers", 1, 16),
    _p("bidirectional", bool, True, "read the window both ways"),
)

_TRANSFORMER = _TORCH_COMMON + _SEQUENCE_COMMON + _TOKENS + (
    _p("d_model", int, 64, "embedding width", 8, 8192),
    _p("n_heads", int, 4, "attention heads (must divide d_model)", 1, 128),
    _p("n_layers", int, 2, "encoder layers", 1, 64),
    _p("dim_feedforward", int, 128, "feed-forward width", 8, 65_536),
)

SCHEMAS: dict[str, tuple[HyperParam, ...]] = {
    "gbt": (
        _p("n_estimators", int, 500, "boosting rounds (at most)", 1, 100_000),
        _p("max_depth", int, 6, "maximum tree depth", 1, 64),
        _p("learning_rate", float, 0.1, "shrinkage per round", 1e-6, 1.0),
        _p("subsample", float, 1.0, "row fraction per tree", 0.01, 1.0),
        _p("colsample_bytree", float, 1.0, "feature fraction per tree", 0.01, 1.0),
        _p("min_child_weight", float, 1.0, "minimum hessian in a leaf", 0.0, 1e6),
        _p("reg_lambda", float, 1.0, "L2 regularisation", 0.0, 1e6),
        _p("early_stopping_rounds", int, 50, "stop after this many rounds without validation gain, keeping the best round (0: never)", 0, 100_000),
    ),
    "knn": _KNN,
    "knn_semi": _KNN
    + (
        _p("confidence", float, 0.9, "minimum vote share for a pseudo-label", 0.0, 1.0),
        _p("rounds", int, 1, "pseudo-labelling rounds", 1, 100),
    ),
    "mlp": _TORCH_COMMON
    + (
        _p("hidden_dim", int, 128, "width of each hidden layer", 1, 65_536),
        _p("n_layers", int, 2, "hidden layers", 1, 64),
    ),
    "cnn": _TORCH_COMMON
    + _SEQUENCE_COMMON
    + (
        _p("channels", int, 128, "filters of the outer convolution blocks (the inner ones have twice as many)", 1, 4096),
        _p("kernel_size", int, 8, "kernel width of the first block (the next ones shrink to 5/8 and 3/8 of it)", 1, 255),
        _p("n_layers", int, 3, "convolution blocks (convolution, batch norm, ReLU)", 1, 64),
    ),
    "gru": _RECURRENT,
    "lstm": _RECURRENT,
    "transformer": _TRANSFORMER,
    "transformer_ssl": _TRANSFORMER
    + (
        _p("pretrain", bool, True, "learn the encoder first by reconstructing masked time steps"),
        _p("pretrain_epochs", int, 0, "self-supervised epochs on train and unlabelled windows (0: auto, like `epochs`)", 0, 100_000),
        _p("pretrain_lr", float, 1e-3, "learning rate of the pre-training phase", 1e-7, 10.0),
        _p("mask_ratio", float, 0.15, "share of time steps masked for reconstruction", 0.01, 0.9),
    ),
}

MODELS: tuple[str, ...] = tuple(SCHEMAS)


def schema(model: str) -> tuple[HyperParam, ...]:
    try:
        return SCHEMAS[model]
    except KeyError:
        raise UnknownModelError(f"unknown model {model!r}; valid models: {', '.join(MODELS)}") from None


def problems(model: str, hyper: dict[str, Any]) -> list[str]:
    """Every reason `hyper` does not fit `model`'s schema (empty when it does)."""
    params = {p.name: p for p in schema(model)}
    found = []
    for key, value in hyper.items():
        param = params.get(key)
        if param is None:
            hint = difflib.get_close_matches(key, params, n=1)
            did = f" (did you mean {hint[0]!r}?)" if hint else ""
            found.append(f"unknown {model} hyperparameter {key!r}{did}; valid keys: {', '.join(sorted(params))}")
            continue
        why = param.check(value)
        if why:
            found.append(f"{model} hyperparameter {key!r} {why}")
    if model in ("transformer", "transformer_ssl"):
        d_model = hyper.get("d_model", params["d_model"].default)
        heads = hyper.get("n_heads", params["n_heads"].default)
        if isinstance(d_model, int) and isinstance(heads, int) and heads > 0 and d_model % heads:
            found.append(f"{model} hyperparameter 'n_heads' ({heads}) must divide 'd_model' ({d_model})")
    return found


def resolve(model: str, hyper: dict[str, Any]) -> dict[str, Any]:
    """The full hyperparameters: schema defaults overlaid with `hyper`, validated."""
    bad = problems(model, hyper)
    if bad:
        raise HyperparameterError("; ".join(bad))
    resolved = {p.name: p.default for p in schema(model)}
    resolved.update(hyper)
    for p in schema(model):
        if p.type is float:
            resolved[p.name] = float(resolved[p.name])
    return resolved
