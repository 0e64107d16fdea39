"""`models`, `data synth|check` and `evaluate`: the dataset and model tooling of the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cis490_train.artifacts.bundle import make_bundle
from cis490_train.artifacts.client import StoreClient
from cis490_train.core.hyper import SCHEMAS
from helpers.fleet import cli


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cis490_train", *args], capture_output=True, text=True, timeout=300)


def test_models_lists_every_model_with_its_schema():
    out = run_cli("models", "--json")
    rows = json.loads(out.stdout)
    assert [r["model"] for r in rows] == list(SCHEMAS)
    assert all(r["implemented"] for r in rows)
    for r in rows:
        assert [p["name"] for p in r["hyper"]] == [p.name for p in SCHEMAS[r["model"]]]
    assert "n_estimators" in run_cli("models").stdout


def test_synth_sizes_and_check(tmp_path):
    target = tmp_path / "custom"
    made = run_cli("data", "synth", "--out", str(target), "--hosts", "h1,h2,h3", "--windows", "40", "--features", "5", "--oracle-features", "2", "--seq-len", "8", "--channels", "7")
    assert made.returncode == 0, made.stderr
    report = json.loads(run_cli("data", "check", str(target), "--json").stdout)
    assert report["windows"] == 120 and report["hosts"] == ["h1", "h2", "h3"]
    assert len(report["features"]["realistic"]) == 5 and len(report["features"]["oracle"]) == 2
    assert report["sequence"]["seq_len"] == 8 and len(report["sequence"]["channels"]) == 7
    (target / "sequences.npy").unlink()
    broken = run_cli("data", "check", str(target))
    assert broken.returncode == 2 and "sequences.npy" in broken.stderr and "Traceback" not in broken.stderr


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    """One real trainer run and its bundle."""
    work = tmp_path_factory.mktemp("trained")
    spec = {"job_id": "0123456789abcdef", "name": "g", "model": "gbt", "mode": "oracle", "hyper": {"n_estimators": 20},
            "split_recipe": "host", "train_hosts": ["elliott-thinkpad", "lab-ws1"], "seed": 3, "n_resamples": 300}
    (work / "spec.json").write_text(json.dumps(spec))
    subprocess.run([sys.executable, "-m", "cis490_train.trainer", "--spec", str(work / "spec.json"), "--out", str(work / "out"),
                    "--data", str(dataset), "--threads", "1"], check=True, capture_output=True, timeout=300)
    report = json.loads((work / "out" / "report.json").read_text())
    return make_bundle(work / "out", work / "bundle.tar.zst"), report


def test_evaluate_a_bundle_reproduces_the_report_and_refuses_another_schema(trained, dataset, tmp_path):
    bundle, report = trained
    out = run_cli("evaluate", str(bundle.path), "--data", str(dataset), "--n-resamples", "300", "--json")
    assert out.returncode == 0, out.stderr
    again = json.loads(out.stdout)
    assert again["same_data"] and again["n_test"] == report["n_test"]
    assert again["dataset"] == again["trained_on"] == report["dataset"]
    same = run_cli("evaluate", str(bundle.path), "--data", str(dataset), "--n-resamples", "100").stdout.splitlines()
    assert same[0].endswith("of the data it was trained on") and not any(line.startswith(("trained on", "given")) for line in same)
    assert again["metrics"] == report["metrics"] and again["recorded"] == report["metrics"]
    other = tmp_path / "other"
    assert run_cli("data", "synth", "--out", str(other), "--small", "--features", "7").returncode == 0
    refused = run_cli("evaluate", str(bundle.path), "--data", str(other))
    assert refused.returncode == 2 and "schema" in refused.stderr and "Traceback" not in refused.stderr


def test_evaluate_on_other_data_of_the_same_schema_names_both_datasets(trained, dataset, tmp_path):
    from cis490_train.trainer.data import load_dataset

    bundle, report = trained
    other = tmp_path / "reseeded"
    assert run_cli("data", "synth", "--out", str(other), "--small", "--seed", "1").returncode == 0
    given = load_dataset(other, summary=False).identity()
    assert given.fingerprint != report["dataset"]["fingerprint"]
    out = run_cli("evaluate", str(bundle.path), "--data", str(other), "--n-resamples", "100")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "different data (same schema)" in lines[0]
    assert lines[1].split() == ["trained", "on", "synth-small", report["dataset"]["fingerprint"][:8]]
    assert lines[2].split() == ["given", "synth-small", given.fingerprint[:8]]
    again = json.loads(run_cli("evaluate", str(bundle.path), "--data", str(other), "--n-resamples", "100", "--json").stdout)
    assert not again["same_data"] and again["trained_on"] == report["dataset"] and again["dataset"] == given.to_json()


@pytest.mark.integration
def test_evaluate_downloads_from_the_store_by_id_prefix(trained, dataset, fleet_env, store):
    bundle, report = trained
    with StoreClient(store.url, fleet_env["CIS490_WORKER_TOKEN"]) as client:
        client.upload(bundle.path, bundle.sha256, model="gbt", mode="oracle", job_id="0123456789abcdef", attempt=1, host="h")
    out = cli(fleet_env, "evaluate", bundle.sha256[:10], "--data", str(dataset), "--n-resamples", "300")
    assert out.returncode == 0, out.stderr
    assert "gbt / oracle / split host" in out.stdout and "recorded" in out.stdout
    missing = cli(fleet_env, "evaluate", "ffffffffff", "--data", str(dataset))
    assert missing.returncode == 2 and "names no artifact" in missing.stderr
