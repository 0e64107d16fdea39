"""`make bench` harness smoke runs: each script runs and prints its table (the numbers are for `make bench`)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from helpers.fleet import ROOT


def test_epoch_overhead_quick_run_prints_a_row_per_model():
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "epoch_overhead.py"), "--quick"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    rows = {m.group(1): float(m.group(2)) for m in re.finditer(r"^(mlp|lstm|transformer)\s+\d+\s+[\d.]+\s+[\d.]+\s+([\d.]+)", out.stdout, re.M)}
    assert set(rows) == {"mlp", "lstm", "transformer"}
    assert all(r > 0 for r in rows.values())


def test_fleet_bench_quick_run_compares_against_raw_celery():
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "fleet.py"), "--quick"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert re.search(r"raw task round trip p50 / p99\s+[\d.]+ / [\d.]+ ms", out.stdout)
    for figure in ("dispatch latency p50 / p99 (5 jobs)", "enqueue 500 jobs, first apply", "the same against raw sends in kombu batches", "re-apply unchanged", "status with 500 pending", "explain with 500 pending", "metrics scrape, 500 pending"):
        assert figure in out.stdout
    assert "0 messages" in out.stdout


def test_artifacts_bench_quick_run_measures_bundle_upload_and_disk():
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "artifacts.py"), "--quick"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    for figure in ("bundle (tar + zstd level 3", "fsync'd write of the bundle", "streamed upload to the store", "store RSS growth"):
        assert figure in out.stdout
    assert re.search(r"streamed upload to the store\s+\d+ MB/s \(\d+% of disk\)", out.stdout)


@pytest.mark.slow  # waits out real recoveries at the default settings
def test_jobs_bench_quick_run_measures_overhead_recovery_cancel_and_memory():
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "jobs.py"), "--quick"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert re.search(r"fleet overhead per job p50 / p99 \(3 jobs\)\s+\d+ / \d+ ms", out.stdout)
    assert re.search(r"lost-worker recovery, lowest \(median of 1\)\s+heartbeat 0.5 s, stale 2 s\s+[\d.]+ s", out.stdout)
    assert re.search(r"cancel -> trainer gone \(median of 1\)\s+[\d.]+ s", out.stdout)
    assert re.search(r"idle worker RSS\s+\d+ MiB bare Celery\s+\d+ MiB\s+[\d.]+", out.stdout)


def test_quality_bench_quick_run_scores_all_nine_models_beside_one_nn_ed():
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "quality.py"), "--quick"], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr
    one_nn = re.search(r"^1-NN-ED\s+([\d.]+) / ([\d.]+)$", out.stdout, re.M)
    assert one_nn and 0.5 < float(one_nn.group(1)) <= 1.0
    rows = dict(re.findall(r"^(\w+)\s+([\d.]+) / [\d.]+ \(\d+\)\*?$", out.stdout, re.M))
    assert set(rows) == {"gbt", "knn", "knn_semi", "mlp", "cnn", "gru", "lstm", "transformer", "transformer_ssl"}
    assert all(0.0 <= float(v) <= 1.0 for v in rows.values())
    assert re.search(r"^best / 1-NN-ED\s+[\d.]+ \w+$", out.stdout, re.M)
    assert "ItalyPowerDemand: best of nine" in out.stdout
