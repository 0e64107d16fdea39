"""One attempt, Celery-free and in process: `AttemptRunner` with a stand-in trainer, the real registry,
the real store and an in-process coordinator answering its requests."""

from __future__ import annotations

import sys
import threading

import pytest

from cis490_train.config import Settings
from cis490_train.coordinator.service import Coordinator
from cis490_train.core.capability import Capability
from cis490_train.core.lifecycle import AttemptOutcome, Status
from cis490_train.core.routing import QueueClass
from cis490_train.core.specs import JobSpec
from cis490_train.worker.attempt import AttemptRunner
from helpers.fleet import Sent, trainer_processes, wait_for, write_capability

pytestmark = pytest.mark.integration

# Run instead of the trainer (CIS490_TRAINER_WRAPPER gets the trainer's command line): it reads the
# spec, reports progress, writes a report with the metrics it is told and exits with the code it is told.
STANDIN = '''
import json, os, sys, time
from pathlib import Path
argv = sys.argv[1:]
spec = json.loads(Path(argv[argv.index("--spec") + 1]).read_text())
out = Path(argv[argv.index("--out") + 1])
for epoch in range(1, 4):
    print(json.dumps({"event": "progress", "phase": "train", "epoch": epoch, "epochs": 3, "loss": 1.0 / epoch}), flush=True)
    time.sleep(float(os.environ.get("STANDIN_EPOCH_S", "0.05")))
code = int(os.environ.get("STANDIN_EXIT", "0"))
if code == 0:
    est = {"value": 0.75, "ci_low": 0.7, "ci_high": 0.8}
    report = {"name": spec["name"], "split_recipe": spec["split_recipe"], "seed": spec["seed"], "device": "cpu",
              "n_train": 30, "n_val": 5, "n_test": 10, "duration_s": 0.2, "train_seconds": 0.15,
              "metrics": {"accuracy": est, "macro_f1": est, "balanced_accuracy": est}, "baseline": {"accuracy": est}}
    (out / "report.json").write_text(json.dumps(report))
else:
    print("stand-in failing on purpose", flush=True)
sys.exit(code)
'''


@pytest.fixture
def runner(fleet_env, store, registry, tmp_path, monkeypatch):
    """An AttemptRunner and the coordinator serving it from a thread; yields (runner, sent)."""
    standin = tmp_path / "standin.py"
    standin.write_text(STANDIN)
    env = dict(fleet_env, CIS490_TRAINER_WRAPPER=f"{sys.executable} {standin}")
    for key, value in env.items():
        monkeypatch.setenv(key, value)  # the trainer child inherits the test's environment
    settings = Settings.from_env(env)
    sent = Sent()
    coordinator = Coordinator(settings, name="in-process", messages=sent)
    coordinator.registry.load_functions()
    serving = threading.Event()

    def serve() -> None:
        while not serving.is_set():
            coordinator.serve_one(timeout=0.2)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    cap = Capability.load(write_capability(tmp_path / "cap.json", "box"), "box")
    progress: list[dict] = []
    r = AttemptRunner(registry=registry, settings=settings, capability=cap, worker="w@box", on_progress=progress.append, stopping=threading.Event())
    r.progress_seen = progress
    try:
        yield r, sent
    finally:
        serving.set()
        thread.join(timeout=5)
        coordinator.store.close()


def a_job(registry, **kw) -> JobSpec:
    spec = JobSpec(name="standin", model="gbt", split_recipe="sample", hyper={"n_estimators": 5}, **kw)
    registry.apply([(spec, QueueClass.for_job(spec).name, 0)], "attempt")
    return spec


def test_an_attempt_trains_uploads_and_commits_the_reports_metrics(runner, registry):
    r, sent = runner
    spec = a_job(registry)
    outcome = r.run(spec.job_id, 1, threading.Event(), "cpu.gbt")
    assert outcome.status == AttemptOutcome.COMPLETED, outcome
    job = registry.get(spec.job_id)
    assert job.status == Status.COMPLETED and job.artifact_id == outcome.artifact_id
    assert job.result["metrics"]["macro_f1"] == {"value": 0.75, "ci_low": 0.7, "ci_high": 0.8} and job.result["n_val"] == 5
    assert job.result["host"] == "box" and job.result["trainer_s"] > 0
    assert any(p.get("epoch") == 3 for p in r.progress_seen) and sent == []
    log = [f for _, f in registry.log_entries(spec.job_id, 1)]
    assert log[-1]["end"] == AttemptOutcome.COMPLETED


def test_a_failing_trainer_fails_the_attempt_with_its_output_and_no_retry(runner, registry, monkeypatch):
    r, sent = runner
    monkeypatch.setenv("STANDIN_EXIT", "1")
    spec = a_job(registry)
    outcome = r.run(spec.job_id, 1, threading.Event(), "cpu.gbt")
    assert outcome.status == AttemptOutcome.FAILED and "trainer_error" in outcome.detail
    job = registry.get(spec.job_id)
    assert job.status == Status.FAILED and "stand-in failing on purpose" in job.error and sent == []


def test_a_job_that_moves_on_stops_its_trainer_and_commits_nothing(runner, registry, monkeypatch, tmp_path):
    r, sent = runner
    monkeypatch.setenv("STANDIN_EPOCH_S", "30")
    spec = a_job(registry)
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(outcome=r.run(spec.job_id, 1, threading.Event(), "cpu.gbt")))
    thread.start()
    wait_for(lambda: registry.get(spec.job_id).status == Status.RUNNING, 30, "the attempt to start")
    assert registry.requeue(spec.job_id).ok  # an operator starts it again elsewhere
    thread.join(timeout=30)
    assert result["outcome"].status == AttemptOutcome.LEASE_LOST
    assert trainer_processes(f"{spec.job_id}-1") == [] and registry.get(spec.job_id).artifact_id == ""
