"""A stand-in trainer for the makespan figure, run through CIS490_TRAINER_WRAPPER.

It gets the real trainer's command line, reads the spec, and instead of training sleeps for a duration
derived from the job's size, printing progress lines like the trainer; so three workers can stand in for
three hosts on a 2-core machine without fighting over the cores.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

# Seconds per unit of work (tree, epoch or whole fit) at full scale: the relative costs of the models.
COST = {"gbt": 0.5, "knn": 60.0, "knn_semi": 120.0, "mlp": 2.0, "cnn": 6.0, "gru": 8.0, "lstm": 8.0, "transformer": 10.0, "transformer_ssl": 10.0}
SCALE_ENV = "SIMTRAINER_SCALE"  # bench seconds per full-scale second


def units(spec: dict) -> float:
    hyper = spec.get("hyper", {})
    model = spec["model"]
    if model == "gbt":
        return hyper.get("n_estimators", 200)
    if model in ("knn", "knn_semi"):
        return 1
    return hyper.get("epochs", 20) + hyper.get("pretrain_epochs", 0)


def duration_s(spec: dict) -> float:
    return COST[spec["model"]] * units(spec) * float(os.environ.get(SCALE_ENV, "0.01"))


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[argv.index("--spec") + 1]).read_text())
    out = Path(argv[argv.index("--out") + 1])
    total, steps = duration_s(spec), 10
    start = time.monotonic()
    for step in range(1, steps + 1):
        time.sleep(max(0.0, start + total * step / steps - time.monotonic()))
        print(json.dumps({"event": "progress", "phase": "train", "step": step, "steps": steps, "elapsed_s": round(time.monotonic() - start, 3)}), flush=True)
    # A commit needs a report with metrics; a stand-in's are zeros and say nothing.
    zero = {"value": 0.0, "ci_low": 0.0, "ci_high": 0.0}
    report = {"name": spec["name"], "spec": spec, "simulated_s": total, "metrics": {"accuracy": zero, "macro_f1": zero, "balanced_accuracy": zero}}
    (out / "report.json").write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
