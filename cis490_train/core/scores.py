"""The scores every report carries, in the order they are shown, and their names for people."""

from __future__ import annotations

METRICS = ("accuracy", "macro_f1", "balanced_accuracy")
LABELS = {"accuracy": "accuracy", "macro_f1": "macro-F1", "balanced_accuracy": "balanced acc."}
