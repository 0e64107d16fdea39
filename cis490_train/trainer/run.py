"""One training job, start to finish: spec → data → split → fit → evaluate → checkpoint + report.

Run as `python -m cis490_train.trainer --spec spec.json --out DIR`. Stdout
carries only the JSON progress protocol (see `progress`); everything else,
including whatever native libraries print, goes to stderr. Exit codes: 0 done,
2 a problem the user can fix (spec, hyperparameters, data, device, a model not
implemented yet), 1 anything unexpected.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from ..core import hyper as hyper_schemas
from ..errors import Cis490Error
from ..atomic import write_json
from .checkpoint import write_checkpoint
from .data import check_dataset, load_model_inputs
from .device import DEVICES, limit_native_threads, resolve_device, resolve_threads, seed_everything
from .evaluate import evaluate
from .models import ModelConfig, Part, check_implemented, model_class
from . import EXIT_OOM
from .progress import Reporter
from .spec import TrainSpec
from .split import make_split
from .watchdog import watch_parent

REPORT_FILE = "report.json"


def run_job(
    spec: TrainSpec,
    data_dir: Path,
    out: Path,
    *,
    reporter: Reporter,
    device: str = "auto",
    threads: int = 1,
    started: float | None = None,
) -> dict[str, Any]:
    """Train, evaluate and write one job's output into `out`; return the report.

    Everything a user can get wrong (hyperparameters, model, dataset) is
    checked before the start line and before torch or xgboost is imported.
    """
    started = time.monotonic() if started is None else started
    resolved = hyper_schemas.resolve(spec.model, spec.hyper)
    check_implemented(spec.model)
    check_dataset(data_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / REPORT_FILE).unlink(missing_ok=True)
    reporter.event(
        "start",
        job_id=spec.job_id,
        name=spec.name,
        model=spec.model,
        mode=spec.mode,
        split_recipe=spec.split_recipe,
        seed=spec.seed,
        threads=threads,
        pid=os.getpid(),
    )

    reporter.phase("data")
    cls = model_class(spec.model)
    device = resolve_device(device, cls)
    inputs = cls.inputs_for(resolved)
    dataset = load_model_inputs(data_dir, spec.mode, inputs)
    split = make_split(
        spec.split_recipe,
        dataset.host,
        dataset.window_start_ms,
        dataset.label,
        seed=spec.seed,
        train_hosts=spec.train_hosts,
        window_seconds=dataset.schema.window_seconds,
    )
    train, val, test, unlabelled = (
        Part.from_rows(dataset, rows) for rows in (split.train, split.val, split.test, split.unlabelled)
    )
    classes = list(dataset.schema.classes)

    reporter.phase("train")
    seed_everything(spec.seed)
    model = cls(ModelConfig(hyper=resolved, n_classes=len(classes), seed=spec.seed, device=device, threads=threads))
    fit_start = time.monotonic()
    reporter.start_ticker()
    try:
        model.fit(train, val, reporter, unlabelled)
    finally:
        reporter.stop_ticker()
    train_seconds = time.monotonic() - fit_start

    reporter.phase("evaluate")
    majority = int(np.bincount(train.y, minlength=len(classes)).argmax())
    results = evaluate(
        test.y, model.predict(test), len(classes), baseline_class=majority, n_resamples=spec.n_resamples, seed=spec.seed
    ).to_json()

    reporter.phase("save")
    data = dataset.identity()
    shared = {
        "job_id": spec.job_id,
        "model": spec.model,
        "mode": spec.mode,
        "split_recipe": spec.split_recipe,
        "seed": spec.seed,
        "device": device,
        "hyper": resolved,
        "n_train": train.n,
        "n_val": val.n,
        "n_test": test.n,
        "classes": classes,
        "metrics": results["metrics"],
        "baseline": results["baseline"],
        "fit": model.fit_info(),
    }
    write_checkpoint(
        out,
        model,
        {
            **shared,
            "name": spec.name,
            "train_hosts": list(spec.train_hosts),
            "inputs": inputs,
            "feature_columns": list(dataset.feature_names),
            "baseline_class": classes[majority],
            "schema_hash": data.schema_hash,
            "data_fingerprint": data.fingerprint,
            "data_name": data.name,
        },
    )
    report = {
        **shared,
        "name": spec.name,
        "dataset": data.to_json(),
        "curve": reporter.curve,
        "confusion_matrix": results["confusion_matrix"],
        "n_resamples": spec.n_resamples,
        "duration_s": round(time.monotonic() - started, 3),
        "train_seconds": round(train_seconds, 3),
    }
    write_json(out / REPORT_FILE, report)
    reporter.event("done", report=REPORT_FILE)
    return report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cis490_train.trainer", description="Train and evaluate one job of a manifest."
    )
    parser.add_argument("--spec", required=True, help="job spec JSON (the manifest job)")
    parser.add_argument("--out", required=True, help="directory for weights, ckpt.json and report.json")
    parser.add_argument("--data", help="dataset directory (default: CIS490_DATA_DIR or the synthetic dataset)")
    parser.add_argument("--device", choices=DEVICES, default="auto", help="auto: CUDA when the model can use it")
    parser.add_argument("--threads", type=int, help="CPU threads (default: CIS490_TRAINER_THREADS, else all cores)")
    return parser


def claim_stdout() -> TextIO:
    """Keep the real stdout for the protocol and point fd 1 (and sys.stdout) at stderr.

    Native code and some libraries print to stdout (xgboost's log callback
    does); that must not interleave with the JSON lines.
    """
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1, encoding="utf-8")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    return protocol


def main(argv: list[str] | None = None) -> int:
    started = time.monotonic()
    args = build_parser().parse_args(argv)
    reporter = Reporter(claim_stdout())
    watch_parent()
    try:
        threads = resolve_threads(args.threads)
        limit_native_threads(threads)
        spec = TrainSpec.from_file(Path(args.spec))
        if args.data:
            data_dir = Path(args.data)
        else:
            from ..config import Settings

            data_dir = Settings.from_env().data_dir
        run_job(spec, data_dir, Path(args.out), reporter=reporter, device=args.device, threads=threads, started=started)
        return 0
    except Cis490Error as exc:
        message = " ".join(str(exc).split())
        print(f"error: {message}", file=sys.stderr)
        reporter.event("error", error=message, exit_code=exc.exit_code)
        return exc.exit_code
    except Exception as exc:
        if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
            print(f"error: out of memory: {exc}", file=sys.stderr)
            reporter.event("error", error=f"out of memory: {exc}", exit_code=EXIT_OOM)
            return EXIT_OOM
        traceback.print_exc()
        reporter.event("error", error=f"{type(exc).__name__}: {exc}", exit_code=1)
        return 1
