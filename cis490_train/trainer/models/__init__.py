"""The model registry: every model name the schemas know, and the class that trains it.

Looking a name up imports only that model's module (and its framework).
"""

from __future__ import annotations

import importlib

from ...errors import ModelNotImplemented
from ...core.hyper import MODELS, schema
from .base import Model, ModelConfig, Part, Progress, ProgressCallback

__all__ = [
    "IMPLEMENTATIONS",
    "Model",
    "ModelConfig",
    "ModelNotImplemented",
    "Part",
    "Progress",
    "ProgressCallback",
    "check_implemented",
    "implemented",
    "model_class",
]

# Model name -> "module:Class", or None where this trainer has no implementation yet.
IMPLEMENTATIONS: dict[str, str | None] = {name: None for name in MODELS}
IMPLEMENTATIONS.update(
    {
        "gbt": "cis490_train.trainer.models.gbt:GBTModel",
        "mlp": "cis490_train.trainer.models.mlp:MLPModel",
        "knn": "cis490_train.trainer.models.knn:KNNModel",
        "knn_semi": "cis490_train.trainer.models.knn:KNNSemiModel",
        "cnn": "cis490_train.trainer.models.sequence:CNNModel",
        "gru": "cis490_train.trainer.models.sequence:GRUModel",
        "lstm": "cis490_train.trainer.models.sequence:LSTMModel",
        "transformer": "cis490_train.trainer.models.sequence:TransformerModel",
        "transformer_ssl": "cis490_train.trainer.models.sequence:TransformerSSLModel",
    }
)


def implemented() -> tuple[str, ...]:
    return tuple(name for name, target in IMPLEMENTATIONS.items() if target)


def check_implemented(name: str) -> None:
    """Fail fast, before any heavy import, for names this trainer cannot train."""
    schema(name)  # unknown names fail with the list of valid ones
    if IMPLEMENTATIONS.get(name) is None:
        raise ModelNotImplemented(
            f"model {name} is not implemented by this trainer yet (implemented: {', '.join(implemented())})"
        )


def model_class(name: str) -> type[Model]:
    check_implemented(name)
    module, _, cls = IMPLEMENTATIONS[name].partition(":")
    return getattr(importlib.import_module(module), cls)
