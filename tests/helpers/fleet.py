"""What the tests share besides fixtures: the repository root, stand-in capability files, the CLI
as a subprocess, stopping processes, finding trainers, polling with a deadline, and skipping what
cannot be checked here (a failure in CI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def write_capability(path: Path, host_id: str, *, cores: int = 2, ram: float = 16.0, gpus: list[float] = ()) -> Path:
    path.write_text(
        json.dumps(
            {
                "host_id": host_id,
                "cpu_cores": cores,
                "ram_total_gib": ram,
                "ram_available_gib": ram,
                "cuda_devices": [{"index": i, "name": "test-gpu", "vram_total_gib": v, "vram_free_gib": v} for i, v in enumerate(gpus)],
            }
        )
    )
    return path


def skip_locally(reason: str) -> None:
    """What a test cannot check here: skipped on a laptop, a failure in CI (CI=true), which must check it."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cis490_train", *args], env=env, capture_output=True, text=True, timeout=timeout)


def stop(proc: subprocess.Popen, timeout: float = 15) -> None:
    """Stop a process the test started: SIGTERM, then SIGKILL if it is still there after `timeout`."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def trainer_processes(marker: str) -> list:
    """Live trainer processes whose command line mentions `marker` (a job id, a work directory)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if "cis490_train.trainer" in cmd and any(marker in part for part in cmd):
            found.append(proc)
    return found


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    """Poll until `predicate()` is truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Sent(list):
    """Records what the coordinator or the reaper would send, in place of the broker."""

    def dispatch(self, registry, job) -> None:
        self.append(("dispatch", job.job_id, job.attempt))

    def send(self, job_id, attempt, queue, priority) -> None:
        self.append(("send", job_id, attempt, queue))
