"""The trainer subprocess as the worker runs it: its own process group, its output read line by
line, its exit code typed, and stopped with everything it started."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..core.events import parse_event
from ..core.lifecycle import Failure
from ..trainer import EXIT_OOM

TAIL_LINES = 50
KILL_GRACE_S = 1.0

LineSink = Callable[[str, dict[str, Any] | None], None]


def exit_failure(rc: int) -> tuple[str, str]:
    """Type a trainer's non-zero exit: out of memory (its own report, or the kernel's SIGKILL) or its error."""
    if rc == EXIT_OOM:
        return Failure.OOM, f"trainer ran out of memory (exit code {rc})"
    if rc == -signal.SIGKILL:
        return Failure.OOM, "trainer was killed by SIGKILL (the kernel's OOM killer, most likely)"
    if rc < 0:
        return Failure.TRAINER_ERROR, f"trainer was killed by signal {-rc}"
    return Failure.TRAINER_ERROR, f"trainer exited with code {rc}"


class OutputReader(threading.Thread):
    """Reads the trainer's output: progress lines become the latest progress, the rest a tail; every
    line goes to the local log and to `sink` (the attempt's stream in Redis)."""

    def __init__(self, proc: subprocess.Popen, log_path: Path, wake: threading.Event, sink: LineSink | None = None):
        super().__init__(name="cis490-trainer-output", daemon=True)
        self.proc = proc
        self.log_path = log_path
        self.wake = wake
        self.sink = sink
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.progress: dict[str, Any] | None = None
        self.finished = threading.Event()
        self.started = time.monotonic()  # made right after the trainer is spawned
        self.wall_s = 0.0

    def run(self) -> None:
        try:
            with self.log_path.open("w", encoding="utf-8") as logf:
                for raw in iter(self.proc.stdout.readline, b""):
                    line = raw.decode("utf-8", "replace").rstrip("\n")
                    logf.write(line + "\n")
                    logf.flush()
                    event = parse_event(line)
                    if self.sink is not None:
                        self.sink(line, event)
                    if event is not None and event.get("event") == "progress":
                        self.progress = event
                        self.wake.set()
                    elif event is None:
                        self.tail.append(line)
        finally:
            self.proc.stdout.close()
            self.proc.wait()
            self.wall_s = time.monotonic() - self.started
            self.finished.set()
            self.wake.set()


def new_process_group() -> dict[str, Any]:
    if os.name == "nt":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


def stop(proc: subprocess.Popen, reader: OutputReader) -> None:
    _kill_group(proc)
    reader.join()


def _kill_group(proc: subprocess.Popen) -> None:
    """Stop the trainer and everything it started: SIGTERM to the group, SIGKILL after a grace period."""
    if proc.poll() is not None:
        return
    if os.name == "nt":
        proc.kill()
        proc.wait()
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=KILL_GRACE_S)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
