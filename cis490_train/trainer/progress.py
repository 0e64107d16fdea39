"""The trainer's stdout protocol: one JSON object per line, flushed, nothing else.

The worker turns these lines into heartbeats and live progress, so a line must
come at least every couple of seconds even while a model sits inside one long
step (a background ticker repeats the last state), and a fast model must not
flood the pipe (boundary lines are capped at `max_rate_hz`). Every boundary,
sent or not, is kept as a point of the learning curve that goes into the report.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

from .models.base import Progress


class Reporter:
    def __init__(
        self,
        stream: TextIO,
        *,
        tick_s: float = 1.0,
        max_rate_hz: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._stream = stream
        self._tick_s = tick_s
        self._min_gap = 1.0 / max_rate_hz
        self._clock = clock
        self._lock = threading.Lock()
        self._last_line = float("-inf")
        self._phase = "start"
        self._phase_start = clock()
        self._state: Progress | None = None
        self._curve: list[dict[str, Any]] = []
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()

    def event(self, event: str, **fields: Any) -> None:
        with self._lock:
            self._write({"event": event, **fields})

    def phase(self, name: str) -> None:
        """Start a phase: its first line goes out at once, its elapsed time starts at zero."""
        with self._lock:
            self._phase, self._phase_start, self._state = name, self._clock(), None
            self._write(self._line(None))

    def __call__(self, progress: Progress) -> None:
        with self._lock:
            self._state = progress
            if progress.boundary and progress.epoch is not None:
                self._curve.append(self._point(progress))
            gap = self._clock() - self._last_line
            last = progress.boundary and progress.epoch is not None and progress.epoch == progress.epochs
            if last or gap >= self._tick_s or (progress.boundary and gap >= self._min_gap):
                self._write(self._line(progress))

    @property
    def curve(self) -> list[dict[str, Any]]:
        """One point per epoch (or boosting round) so far, in order: phase, epoch, loss, metric."""
        with self._lock:
            return [dict(point) for point in self._curve]

    def _point(self, p: Progress) -> dict[str, Any]:
        return {
            "phase": p.phase or self._phase,
            "epoch": p.epoch,
            "loss": _finite(p.loss),
            "metric": _finite(p.metric),
            "metric_name": p.metric_name,
        }

    def start_ticker(self) -> None:
        self._stop.clear()
        self._ticker = threading.Thread(target=self._tick, name="progress-ticker", daemon=True)
        self._ticker.start()

    def stop_ticker(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None

    def tick(self) -> None:
        """Repeat the last state if the model has been silent for a whole tick."""
        with self._lock:
            if self._clock() - self._last_line >= self._tick_s:
                self._write(self._line(self._state))

    def _tick(self) -> None:
        while not self._stop.wait(self._tick_s / 2):
            self.tick()

    def _line(self, p: Progress | None) -> dict[str, Any]:
        elapsed = self._clock() - self._phase_start
        p = p or Progress()
        return {
            "event": "progress",
            "phase": p.phase or self._phase,
            "epoch": p.epoch,
            "epochs": p.epochs,
            "step": p.step,
            "steps": p.steps,
            "loss": _finite(p.loss),
            "metric": _finite(p.metric),
            "metric_name": p.metric_name,
            "eta_s": _eta(p, elapsed),
            "elapsed_s": round(elapsed, 3),
        }

    def _write(self, obj: dict[str, Any]) -> None:
        self._stream.write(json.dumps(obj) + "\n")
        self._stream.flush()
        self._last_line = self._clock()


def _eta(p: Progress, elapsed: float) -> float | None:
    if p.steps and p.step:
        done = p.step / p.steps
    elif p.epochs and p.epoch:
        done = p.epoch / p.epochs
    else:
        return None
    return round(elapsed * (1 - done) / done, 3)


def _finite(value: float | None) -> float | None:
    """A diverged loss is reported as null: NaN is not JSON."""
    return float(value) if value is not None and math.isfinite(value) else None
