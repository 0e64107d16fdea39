"""The reference classifier of `bench/quality.py`: aeon's MiniRocket on one problem's official split.

Run by the reference environment's Python (aeon and its numba stack live apart from the fleet's
venv, whose numpy they would pin); prints one JSON line per problem. One process for all of them,
so numba compiles once (the first problem's seconds include the compile).

    python bench/minirocket_ref.py TRAIN.ts TEST.ts [TRAIN.ts TEST.ts ...]
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
from aeon.classification.convolution_based import MiniRocketClassifier
from aeon.datasets import load_from_ts_file
from sklearn.metrics import accuracy_score, f1_score


def score(train_file: str, test_file: str) -> dict:
    x_train, y_train = load_from_ts_file(train_file)
    x_test, y_test = load_from_ts_file(test_file)
    started = time.perf_counter()
    model = MiniRocketClassifier(random_state=0).fit(x_train, y_train)
    predicted = model.predict(x_test)
    seconds = time.perf_counter() - started
    labels = np.unique(np.concatenate([y_train, y_test]))
    return {
        "train": train_file,
        "accuracy": float(accuracy_score(y_test, predicted)),
        "macro_f1": float(f1_score(y_test, predicted, average="macro", labels=labels)),
        "seconds": round(seconds, 3),
    }


def main(files: list[str]) -> int:
    for train_file, test_file in zip(files[::2], files[1::2], strict=True):
        print(json.dumps(score(train_file, test_file)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
