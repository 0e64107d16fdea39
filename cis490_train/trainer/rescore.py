"""Score a trained checkpoint again on a dataset: the same split recipe, train hosts and seed it was
trained with, so on the same data the figures match the report, and on newer data they say how the
model holds up. A dataset with another feature schema is refused; one with other rows is scored,
and the result names both datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.provenance import DataIdentity
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
    given = dataset.identity()
    trained_on = DataIdentity.from_json(
        {"name": meta.get("data_name"), "fingerprint": meta["data_fingerprint"], "schema_hash": meta["schema_hash"]}
    )
    return {
        "job_id": meta["job_id"],
        "model": meta["model"],
        "mode": meta["mode"],
        "split_recipe": meta["split_recipe"],
        "n_test": int(len(test)),
        "same_data": given.fingerprint == meta["data_fingerprint"],
        "dataset": given.to_json(),
        "trained_on": trained_on.to_json() if trained_on else None,
        "metrics": results["metrics"],
        "baseline": results["baseline"],
        "recorded": meta["metrics"],
        "confusion_matrix": results["confusion_matrix"],
    }
