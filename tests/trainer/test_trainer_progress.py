"""The progress protocol's pacing, with a fake clock."""

from __future__ import annotations

import io
import json
import time

from cis490_train.trainer.models import Progress
from cis490_train.trainer.progress import Reporter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def make() -> tuple[Reporter, io.StringIO, Clock]:
    stream, clock = io.StringIO(), Clock()
    return Reporter(stream, tick_s=1.0, max_rate_hz=10.0, clock=clock), stream, clock


def test_steps_inside_an_epoch_are_reported_at_most_once_a_tick():
    reporter, stream, clock = make()
    reporter.phase("train")
    for step in range(1, 21):
        clock.now += 0.25
        reporter(Progress(epoch=1, epochs=2, step=step, steps=40, loss=1.0))
    steps = [e["step"] for e in lines(stream)[1:]]
    assert steps == [4, 8, 12, 16, 20]


def test_every_epoch_boundary_is_reported_unless_they_come_faster_than_the_rate_cap():
    reporter, stream, clock = make()
    reporter.phase("train")
    for epoch in range(1, 6):
        clock.now += 0.5
        reporter(Progress(epoch=epoch, epochs=100, boundary=True))
    for epoch in range(6, 101):
        clock.now += 0.01
        reporter(Progress(epoch=epoch, epochs=100, boundary=True))
    epochs = [e["epoch"] for e in lines(stream)[1:]]
    assert epochs[:5] == [1, 2, 3, 4, 5]
    assert 5 < len(epochs) < 20
    assert epochs[-1] == 100  # the last boundary always goes out


def test_the_curve_keeps_every_boundary_even_when_lines_are_capped():
    reporter, stream, clock = make()
    reporter.phase("train")
    for epoch in range(1, 51):
        clock.now += 0.01
        reporter(Progress(epoch=epoch, epochs=50, step=epoch, steps=50, loss=1.0 / epoch))
        reporter(Progress(epoch=epoch, epochs=50, loss=2.0 / epoch, metric=epoch / 50, metric_name="val_macro_f1", boundary=True))
    reporter(Progress(epoch=1, epochs=2, loss=float("nan"), boundary=True, phase="pretrain"))
    assert len(lines(stream)) < 20
    curve = reporter.curve
    assert [p["epoch"] for p in curve[:50]] == list(range(1, 51))
    assert curve[9] == {"phase": "train", "epoch": 10, "loss": 0.2, "metric": 0.2, "metric_name": "val_macro_f1"}
    assert curve[50] == {"phase": "pretrain", "epoch": 1, "loss": None, "metric": None, "metric_name": None}


def test_eta_and_elapsed_follow_the_phase_clock():
    reporter, stream, clock = make()
    clock.now = 50.0
    reporter.phase("train")
    clock.now = 60.0
    reporter(Progress(epoch=1, epochs=4, step=25, steps=100, loss=0.5, metric=0.8, metric_name="val_macro_f1"))
    line = lines(stream)[-1]
    assert line["elapsed_s"] == 10.0 and line["eta_s"] == 30.0
    assert (line["loss"], line["metric"], line["metric_name"]) == (0.5, 0.8, "val_macro_f1")


def test_a_silent_model_still_produces_a_line_every_tick():
    reporter, stream, clock = make()
    reporter.phase("train")
    reporter(Progress(epoch=1, epochs=3, step=1, steps=30, loss=2.0, boundary=True))
    count = len(lines(stream))
    clock.now += 0.4
    reporter.tick()
    assert len(lines(stream)) == count
    clock.now += 0.7
    reporter.tick()
    repeat = lines(stream)[-1]
    assert len(lines(stream)) == count + 1
    assert repeat["step"] == 1 and repeat["elapsed_s"] == 1.1


def test_non_finite_losses_become_null_and_events_pass_through():
    reporter, stream, _ = make()
    reporter.phase("train")
    reporter(Progress(epoch=1, epochs=1, loss=float("nan"), metric=float("inf"), boundary=True))
    reporter.event("done", report="report.json")
    *_, progress, done = lines(stream)
    assert progress["loss"] is None and progress["metric"] is None
    assert done == {"event": "done", "report": "report.json"}


def test_ticker_thread_repeats_the_state_while_the_model_is_silent_until_stopped():
    reporter, stream, clock = make()
    reporter.phase("train")
    reporter.start_ticker()
    clock.now += 5.0  # a whole tick of silence
    deadline = time.monotonic() + 10
    while len(lines(stream)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    reporter.stop_ticker()
    assert len(lines(stream)) == 2 and lines(stream)[1]["phase"] == "train"
    reporter.stop_ticker()  # stopping twice is harmless
    clock.now += 5.0
    reporter.tick()  # a tick by hand still works once the thread is gone
    assert len(lines(stream)) == 3
