"""Time per training epoch inside the trainer against a plain, hand-written PyTorch loop.

For mlp, lstm and transformer: the same tensors, the same network and the same optimiser, in the
same run. The trainer's epoch also scores the validation split and reports progress; the target is
that this costs at most 10 %. The first epoch of each loop is a warm-up and is left out; the figure
is the median of the rest.

    python bench/epoch_overhead.py [--epochs N] [--threads N] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cis490_train.core.hyper import resolve
from cis490_train.trainer.data import load_model_inputs, synthesize
from cis490_train.trainer.models import ModelConfig, Part, model_class
from cis490_train.trainer.models.recipe import Recipe
from cis490_train.trainer.models.torch_loop import Scaler
from cis490_train.trainer.split import make_split
from report import save

MODELS = ("mlp", "lstm", "transformer")
TARGET = 1.10


def trainer_epochs(cls, config: ModelConfig, train: Part, val: Part) -> tuple[list[float], object]:
    """Seconds per epoch as the trainer runs it, from its own epoch-boundary progress lines."""
    marks = [time.perf_counter()]

    def progress(p) -> None:
        if p.boundary:
            marks.append(time.perf_counter())

    model = cls(config)
    model.fit(train, val, progress)
    return list(np.diff(marks)), model


def plain_epochs(net, inputs: tuple, y: torch.Tensor, config: ModelConfig) -> list[float]:
    """The loop one writes by hand: shuffle, forward, loss, backward, step."""
    h = config.hyper
    optimiser = torch.optim.AdamW(net.parameters(), lr=h["lr"], weight_decay=h["weight_decay"])
    loss_fn = torch.nn.CrossEntropyLoss()
    n, batch = len(y), h["batch_size"]
    times = []
    for _ in range(h["epochs"]):
        start = time.perf_counter()
        net.train()
        order = torch.randperm(n)
        total = 0.0
        for i in range(0, n, batch):
            idx = order[i : i + batch]
            optimiser.zero_grad(set_to_none=True)
            loss = loss_fn(net(*(t[idx] for t in inputs)), y[idx])
            loss.backward()
            optimiser.step()
            total += loss.item() * len(idx)
        times.append(time.perf_counter() - start)
    return times


def bench_model(name: str, data: Path, epochs: int, threads: int) -> dict:
    cls = model_class(name)
    dataset = load_model_inputs(data, "realistic", cls.inputs)
    split = make_split("sample", dataset.host, dataset.window_start_ms, dataset.label, seed=0, train_hosts=(), window_seconds=dataset.schema.window_seconds)
    train, val = Part.from_rows(dataset, split.train), Part.from_rows(dataset, split.val)
    # The auto batch size for this data, fixed for both loops; no early stopping, so every epoch runs.
    batch = Recipe.for_rows(train.n, resolve(name, {})).batch
    hyper = resolve(name, {"epochs": epochs, "batch_size": batch, "early_stopping": False})
    config = ModelConfig(hyper=hyper, n_classes=len(dataset.schema.classes), seed=0, device="cpu", threads=threads)
    fleet, model = trainer_epochs(cls, config, train, val)
    net = copy.deepcopy(model.net)
    if cls.inputs == "sequence":
        inputs = (Scaler.fit(train.sequences).tensor(train.sequences, "cpu"),)
    else:
        inputs = (Scaler.fit(train.features).tensor(train.features, "cpu"),)
    plain = plain_epochs(net, inputs, torch.from_numpy(train.y.astype(np.int64)), config)
    f, p = statistics.median(fleet[1:]), statistics.median(plain[1:])
    return {"model": name, "train_windows": train.n, "val_windows": val.n, "batch_size": batch, "epochs": epochs, "trainer_epoch_s": f, "plain_epoch_s": p, "ratio": f / p}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="small data, 3 epochs: checks the harness, not the numbers")
    args = parser.parse_args(argv)
    epochs = 3 if args.quick else args.epochs
    torch.set_num_threads(args.threads)
    print(f"{platform.node()}: {os.cpu_count()} cores, python {platform.python_version()}, torch {torch.__version__}, {args.threads} thread(s)")
    print(f"first epoch of each loop left out as warm-up; medians of the other {epochs - 1}")
    with tempfile.TemporaryDirectory() as tmp:
        data = synthesize(Path(tmp) / "data", small=args.quick)
        rows = [bench_model(name, data, epochs, args.threads) for name in MODELS]
    print(f"{'model':<12}{'train windows':>14}{'trainer s/epoch':>17}{'plain s/epoch':>15}{'ratio':>8}{'target':>9}")
    for r in rows:
        mark = "" if r["ratio"] <= TARGET else "  MISSED"
        print(f"{r['model']:<12}{r['train_windows']:>14}{r['trainer_epoch_s']:>17.4f}{r['plain_epoch_s']:>15.4f}{r['ratio']:>8.3f}{'<= ' + format(TARGET, '.2f'):>9}{mark}")
    if not args.quick:
        save("epoch_overhead", {"threads": args.threads, "torch": torch.__version__, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
