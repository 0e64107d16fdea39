"""Score a trained checkpoint again on a dataset: the same split recipe, train hosts and seed it was
trained with, so on the same data the figures match the report, and on newer data they say how the
model holds up. A dataset with another feature schema is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .checkpoint import load_checkpoint
from .evaluate import evaluate


def rescore(checkpoint_dir: Path, data_dir: Path, *, n_resamples: int = 1000, threads: int = 1) -> dict[str, Any]:
    ckpt = load_checkpoint(checkpoint_dir, data=data_dir, threads=threads)
    meta = ckpt.meta
    dataset = ckpt.load_data(data_dir)
    test = ckpt.test_rows(dataset)
    classes = list(meta["classes"])
    predicted = ckpt.predict(dataset, test)
    results = evaluate(
        dataset.label[test],
        predicted,
        len(classes),
        baseline_class=classes.index(meta["baseline_class"]),
        n_resamples=n_resamples,
        seed=meta["seed"],
    ).to_json()
    return {
        "job_id": meta["job_id"],
        "model": meta["model"],
        "mode": meta["mode"],
        "split_recipe": meta["split_recipe"],
        "n_test": int(len(test)),
        "same_data": dataset.fingerprint() == meta["data_fingerprint"],
        "metrics": results["metrics"],
        "baseline": results["baseline"],
        "recorded": meta["metrics"],
        "confusion_matrix": results["confusion_matrix"],
    }
