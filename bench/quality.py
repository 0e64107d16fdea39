"""Model quality on public time-series problems: the nine models, at their defaults, against
1-NN-ED on the same official split in the same run, and aeon's MiniRocket where it installs.

Each problem is brought in with `cis490-train data import` (TRAIN rows host `train`, TEST rows host
`test`) and each job is a real trainer process (`python -m cis490_train.trainer`) with the host
split on `train`, so the figures are what a fleet job reports. 1-NN-ED is computed here, in numpy,
on the raw series; the FCN column is the published mean accuracy of Fawaz et al. (2019), "Deep
learning for time series classification: a review", for the univariate problems. Problems come
from the UCR/UEA archive as the aeon wheel ships them (downloaded once into bench/.cache), the
vendored ones under tests/data/ucr when they are there.

    python bench/quality.py [--quick] [--problems A,B] [--models m,n] [--threads N] [--no-reference]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

from cis490_train.core.hyper import MODELS, schema
from cis490_train.trainer.data import load_dataset
from cis490_train.trainer.evaluate import confusion_matrix, metrics_from_confusion
from report import save

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CACHE = HERE / ".cache"
VENDORED = ROOT / "tests" / "data" / "ucr"
AEON = "aeon==1.6.0"
# Chosen to differ in size, length, classes and channels, and to train in minutes on two cores.
PROBLEMS = ("GunPoint", "ArrowHead", "ItalyPowerDemand", "BasicMotions", "JapaneseVowels_eq")
QUICK_PROBLEMS = ("ItalyPowerDemand",)
QUICK_HYPER = {"steps": 40}  # --quick checks the harness, not the numbers
FCN_PUBLISHED = {"GunPoint": 1.000, "ArrowHead": 0.843, "ItalyPowerDemand": 0.963, "OSULeaf": 0.979}
SEQUENCE_MODELS = ("cnn", "gru", "lstm", "transformer", "transformer_ssl")
FCN_MARGIN = 0.05


def problem_files(name: str) -> tuple[Path, Path]:
    """The problem's TRAIN and TEST `.ts` files: vendored, cached, or taken from the aeon wheel."""
    folder = name.removesuffix("_eq")
    for base in (VENDORED / folder, CACHE / "ucr" / folder):
        train, test = base / f"{name}_TRAIN.ts", base / f"{name}_TEST.ts"
        if train.is_file() and test.is_file():
            return train, test
    wheel = aeon_wheel()
    target = CACHE / "ucr" / folder
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as z:
        for part in ("TRAIN", "TEST"):
            member = f"aeon/datasets/data/{folder}/{name}_{part}.ts"
            (target / f"{name}_{part}.ts").write_bytes(z.read(member))
    return target / f"{name}_TRAIN.ts", target / f"{name}_TEST.ts"


def aeon_wheel() -> Path:
    found = sorted((CACHE / "wheels").glob("aeon-*.whl"))
    if not found:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", AEON, "-d", str(CACHE / "wheels")],
            check=True,
        )
        found = sorted((CACHE / "wheels").glob("aeon-*.whl"))
    return found[-1]


def import_problem(name: str, train: Path, out: Path) -> Path:
    done = subprocess.run(
        [sys.executable, "-m", "cis490_train", "data", "import", str(train), "--out", str(out), "--name", name],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise SystemExit(f"importing {name} failed: {done.stderr.strip()}")
    return out


def scores(y: np.ndarray, predicted: np.ndarray, n_classes: int) -> dict:
    m = metrics_from_confusion(confusion_matrix(y, predicted, n_classes))
    return {"accuracy": float(m["accuracy"]), "macro_f1": float(m["macro_f1"])}


def one_nn_ed(data: Path) -> dict:
    """1-nearest-neighbour, Euclidean distance on the raw series (NaN as 0), train rows against test rows."""
    d = load_dataset(data, summary=False, sequences=True)
    train, test = np.flatnonzero(d.host == "train"), np.flatnonzero(d.host == "test")
    a = np.nan_to_num(np.asarray(d.sequences[train], dtype=np.float64)).reshape(len(train), -1)
    b = np.nan_to_num(np.asarray(d.sequences[test], dtype=np.float64)).reshape(len(test), -1)
    distance = (b**2).sum(1)[:, None] - 2 * b @ a.T + (a**2).sum(1)[None, :]
    predicted = d.label[train][distance.argmin(axis=1)]
    shape = d.sequences.shape
    return {
        **scores(d.label[test], predicted, len(d.schema.classes)),
        "n_train": int(len(train)),
        "n_test": int(len(test)),
        "length": int(shape[1]),
        "channels": int(shape[2]),
        "classes": len(d.schema.classes),
    }


def train_job(model: str, data: Path, work: Path, threads: int, hyper: dict) -> dict:
    spec = {
        "job_id": f"quality-{model}",
        "name": f"quality-{model}",
        "model": model,
        "mode": "realistic",
        "hyper": dict(hyper),
        "split_recipe": "host",
        "train_hosts": ["train"],
        "seed": 0,
        "n_resamples": 200,
    }
    out = work / model
    spec_file = work / f"{model}.spec.json"
    spec_file.write_text(json.dumps(spec))
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "cis490_train.trainer", "--spec", str(spec_file), "--out", str(out), "--data", str(data), "--device", "cpu", "--threads", str(threads)],
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    if done.returncode:
        return {"model": model, "error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    report = json.loads((out / "report.json").read_text())
    m, b = report["metrics"], report["baseline"]
    return {
        "model": model,
        "accuracy": m["accuracy"]["value"],
        "accuracy_ci": [m["accuracy"]["ci_low"], m["accuracy"]["ci_high"]],
        "macro_f1": m["macro_f1"]["value"],
        "majority": b["accuracy"]["value"],
        "wall_s": round(wall, 2),
        "fit": report["fit"],
    }


def reference_python() -> Path | None:
    """A venv of its own for aeon (it pins numpy below the fleet's); None where it will not install."""
    venv = CACHE / "reference-venv"
    python = venv / "bin" / "python"
    if not (venv / ".installed").is_file():
        try:
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
            subprocess.run([str(python), "-m", "pip", "install", "--quiet", AEON], check=True, capture_output=True, timeout=1800)
        except (subprocess.SubprocessError, OSError) as exc:
            print(f"reference: aeon does not install here ({type(exc).__name__}); the MiniRocket column stays empty")
            return None
        (venv / ".installed").touch()
    return python


def minirocket(python: Path, files: dict[str, tuple[Path, Path]]) -> dict[str, dict]:
    args = [str(p) for pair in files.values() for p in pair]
    done = subprocess.run([str(python), str(HERE / "minirocket_ref.py"), *args], capture_output=True, text=True)
    if done.returncode:
        print(f"reference: MiniRocket failed: {done.stderr.strip().splitlines()[-1:]}")
        return {}
    by_train = {str(pair[0]): name for name, pair in files.items()}
    return {by_train[row["train"]]: row for row in map(json.loads, done.stdout.splitlines())}


def at_chance(row: dict) -> bool:
    """The accuracy interval reaches down to the majority baseline."""
    return row["accuracy_ci"][0] <= row["majority"]


def verdicts(problem: str, baseline: dict, rows: list[dict]) -> dict:
    ok = [r for r in rows if "error" not in r]
    best = max(ok, key=lambda r: r["accuracy"]) if ok else None
    cnn = next((r for r in ok if r["model"] == "cnn"), None)
    fcn = FCN_PUBLISHED.get(problem)
    chance = [r["model"] for r in ok if r["model"] in SEQUENCE_MODELS and at_chance(r)] if baseline["accuracy"] > 0.8 else []
    return {
        "best_model": best["model"] if best else None,
        "best_accuracy": best["accuracy"] if best else None,
        "best_over_1nn": best["accuracy"] / baseline["accuracy"] if best and baseline["accuracy"] else None,
        "best_at_or_above_1nn": bool(best and best["accuracy"] >= baseline["accuracy"]),
        "cnn_within_fcn": None if fcn is None or cnn is None else cnn["accuracy"] >= fcn - FCN_MARGIN,
        "sequence_models_at_chance": chance,
    }


def print_tables(results: list[dict], models: tuple[str, ...]) -> None:
    names = [r["problem"] for r in results]
    width = max(12, *(len(n) + 2 for n in names))
    print("\naccuracy / macro-F1 on the official test split (realistic mode, defaults); wall seconds per job in brackets")
    print(f"{'':<16}" + "".join(f"{n:>{width + 10}}" for n in names))

    def line(label: str, cells: list[str]) -> None:
        print(f"{label:<16}" + "".join(f"{c:>{width + 10}}" for c in cells))

    line("shape", [f"{r['1nn']['n_train']}/{r['1nn']['n_test']} x{r['1nn']['length']}x{r['1nn']['channels']}, {r['1nn']['classes']}cl" for r in results])
    line("1-NN-ED", [f"{r['1nn']['accuracy']:.3f} / {r['1nn']['macro_f1']:.3f}" for r in results])
    line("MiniRocket", [f"{r['minirocket']['accuracy']:.3f} / {r['minirocket']['macro_f1']:.3f}" if r.get("minirocket") else "-" for r in results])
    line("FCN published", [f"{FCN_PUBLISHED[r['problem']]:.3f}" if r["problem"] in FCN_PUBLISHED else "-" for r in results])
    for model in models:
        cells = []
        for r in results:
            row = next(x for x in r["models"] if x["model"] == model)
            if "error" in row:
                cells.append("error")
            else:
                mark = "*" if at_chance(row) else ""
                cells.append(f"{row['accuracy']:.3f} / {row['macro_f1']:.3f} ({row['wall_s']:.0f}){mark}")
        line(model, cells)
    line("best / 1-NN-ED", [f"{r['verdict']['best_over_1nn']:.3f} {r['verdict']['best_model']}" if r["verdict"]["best_over_1nn"] else "-" for r in results])
    print("* accuracy CI reaches the majority baseline")
    print("\ngoals:")
    for r in results:
        v = r["verdict"]
        cnn = {None: "no published FCN figure", True: "cnn within 5 points of FCN", False: "cnn MORE than 5 points below FCN"}[v["cnn_within_fcn"]]
        chance = "no sequence model at chance" if not v["sequence_models_at_chance"] else f"AT CHANCE: {', '.join(v['sequence_models_at_chance'])}"
        best = "best of nine >= 1-NN-ED" if v["best_at_or_above_1nn"] else "best of nine BELOW 1-NN-ED"
        print(f"  {r['problem']}: {best}; {cnn}; {chance}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one small problem and a tiny step budget: checks the harness, not the numbers")
    parser.add_argument("--problems", help=f"comma-separated (default: {','.join(PROBLEMS)})")
    parser.add_argument("--models", help="comma-separated (default: all nine)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-reference", action="store_true", help="leave out MiniRocket (it needs its own venv with aeon)")
    args = parser.parse_args(argv)
    problems = tuple(args.problems.split(",")) if args.problems else (QUICK_PROBLEMS if args.quick else PROBLEMS)
    models = tuple(args.models.split(",")) if args.models else MODELS
    hyper = QUICK_HYPER if args.quick else {}
    print(f"{platform.node()}: {os.cpu_count()} cores, python {platform.python_version()}, {args.threads} trainer thread(s)")
    files = {name: problem_files(name) for name in problems}
    reference = {}
    if not (args.quick or args.no_reference):
        python = reference_python()
        reference = minirocket(python, files) if python else {}
    results = []
    with tempfile.TemporaryDirectory(prefix="cis490-quality-") as tmp:
        for name, (train, _test) in files.items():
            data = import_problem(name, train, Path(tmp) / name / "data")
            baseline = one_nn_ed(data)
            work = Path(tmp) / name / "jobs"
            work.mkdir()
            rows = []
            for model in models:
                keys = {p.name for p in schema(model)}
                rows.append(train_job(model, data, work, args.threads, {k: v for k, v in hyper.items() if k in keys}))
                print(f"  {name} {model}: {rows[-1].get('accuracy', rows[-1].get('error'))}", flush=True)
            results.append({"problem": name, "1nn": baseline, "minirocket": reference.get(name), "models": rows, "verdict": verdicts(name, baseline, rows)})
    print_tables(results, models)
    if not args.quick:
        save("quality", {"threads": args.threads, "problems": list(problems), "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
