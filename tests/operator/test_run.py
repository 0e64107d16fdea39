"""`cis490-train run`: the embedded default that `make demo` runs, end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from helpers.fleet import ROOT

pytestmark = pytest.mark.integration


def run_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIS490_")}
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / "data"), XDG_CACHE_HOME=str(home / "cache"), **extra)
    return env


def leftovers(marker: str) -> list[str]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or ())
        if marker in cmd:
            found.append(cmd)
    return found


def test_demo_manifest_runs_end_to_end_on_a_fresh_home(home):
    proc = subprocess.run(
        [sys.executable, "-m", "cis490_train", "run", str(ROOT / "manifests" / "demo.toml")],
        env=run_env(home),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no dataset configured: writing the synthetic one" in proc.stdout
    assert "7 completed jobs" in proc.stdout and "7 of 7 runnable job(s) completed" in proc.stdout
    bundles = list((home / "data" / "cis490" / "store" / "models").glob("*/*/bundle.tar.zst"))
    assert len(bundles) == 7
    assert leftovers(str(home)) == []


def test_run_exits_nonzero_when_a_runnable_job_fails_and_skips_what_it_cannot_run(home, dataset, tmp_path):
    manifest = tmp_path / "mixed.toml"
    manifest.write_text(
        'schema_version = 1\nname = "mixed"\n[defaults]\nsplit_recipe = "sample"\nn_resamples = 100\n'
        '[[jobs]]\nname = "ok"\nmodel = "gbt"\nhyper = { n_estimators = 10 }\n'
        '[[jobs]]\nname = "unknown-host"\nmodel = "gbt"\nsplit_recipe = "host"\ntrain_hosts = ["nobody-laptop"]\n'
        '[[jobs]]\nname = "needs-gpu"\nmodel = "mlp"\nrequire_cuda = true\n'
    )
    proc = subprocess.run(
        [sys.executable, "-m", "cis490_train", "run", str(manifest)],
        env=run_env(home, CIS490_DATA_DIR=str(dataset), CIS490_HOST_ID="laptop"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "not runnable on this machine: needs-gpu: tier cuda: host laptop has no CUDA" in proc.stdout
    assert "1 of 2 runnable job(s) completed" in proc.stdout
    assert "unknown-host: failed [trainer_error] trainer exited with code 2" in proc.stdout
    assert leftovers(str(home)) == []


def test_run_refuses_a_bad_manifest_before_starting_anything(home, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('schema_version = 1\n[[jobs]]\nname = "x"\nmodel = "gbt"\nhyper = { trees = 5 }\n')
    proc = subprocess.run(
        [sys.executable, "-m", "cis490_train", "run", str(bad)], env=run_env(home), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert "unknown gbt hyperparameter 'trees'" in proc.stderr and "Traceback" not in proc.stderr
    assert not (home / "cache").exists()
