"""Two jobs trained by real workers on two datasets: every view of their results says which data each saw."""

from __future__ import annotations

import csv
import json

import httpx
import pyarrow.parquet as pq
import pytest

from cis490_train.trainer.data import load_dataset
from helpers.fleet import cli, wait_for

pytestmark = pytest.mark.integration

MANIFEST = """
schema_version = 1
name = "provenance"

[defaults]
split_recipe = "sample"
n_resamples = 100

[[jobs]]
name = "gbt-on-a"
model = "gbt"
seed = 1
allowed_hosts = ["box-a"]
hyper = { n_estimators = 10 }

[[jobs]]
name = "gbt-on-b"
model = "gbt"
seed = 2
allowed_hosts = ["box-b"]
hyper = { n_estimators = 10 }
"""


def test_results_export_show_and_the_page_tell_two_datasets_apart(browser, fleet_env, dataset, registry, store, start_worker, tmp_path):
    reseeded = tmp_path / "reseeded"
    made = cli(fleet_env, "data", "synth", "--out", str(reseeded), "--small", "--seed", "1")
    assert made.returncode == 0, made.stderr
    start_worker("box-a", "cpu")  # trains on the session's dataset (CIS490_DATA_DIR)
    fleet_env["CIS490_DATA_DIR"] = str(reseeded)
    start_worker("box-b", "cpu")
    manifest = tmp_path / "provenance.toml"
    manifest.write_text(MANIFEST)
    assert cli(fleet_env, "enqueue", str(manifest)).returncode == 0
    wait_for(lambda: all(registry.find(n).status in ("completed", "failed") for n in ("gbt-on-a", "gbt-on-b")), 180, "both jobs to end")

    data = {"gbt-on-a": load_dataset(dataset, summary=False).identity(), "gbt-on-b": load_dataset(reseeded, summary=False).identity()}
    assert data["gbt-on-a"].fingerprint != data["gbt-on-b"].fingerprint
    assert data["gbt-on-a"].name == data["gbt-on-b"].name == "synth-small"  # same preset: only the fingerprint differs
    jobs = {name: registry.find(name) for name in data}
    assert all(job.status == "completed" for job in jobs.values()), {n: j.error for n, j in jobs.items()}
    assert (jobs["gbt-on-a"].host, jobs["gbt-on-b"].host) == ("box-a", "box-b")

    results = json.loads(cli(fleet_env, "results", "--json").stdout)
    assert {row["job"]: row["dataset"] for row in results} == {name: identity.to_json() for name, identity in data.items()}
    table = cli(fleet_env, "results").stdout
    assert all(f"synth-small {identity.fingerprint[:8]}" in table for identity in data.values())

    for name, identity in data.items():
        shown = cli(fleet_env, "show", name)
        assert shown.returncode == 0 and f"fingerprint {identity.fingerprint}" in shown.stdout.splitlines()
        assert json.loads(cli(fleet_env, "show", name, "--json").stdout)["result"]["dataset"] == identity.to_json()
        meta = httpx.get(f"{store.url}/v1/artifacts/{jobs[name].artifact_id}/meta", timeout=10).json()
        assert meta["summary"]["dataset"] == identity.to_json()

    assert cli(fleet_env, "export", "-o", str(tmp_path / "results.parquet")).returncode == 0
    assert cli(fleet_env, "export", "--format", "csv", "-o", str(tmp_path / "results.csv")).returncode == 0
    with (tmp_path / "results.csv").open(newline="") as f:
        from_csv = list(csv.DictReader(f))
    for rows in (pq.read_table(tmp_path / "results.parquet").to_pylist(), from_csv):
        exported = {row["job"]: (row["dataset"], row["data_fingerprint"], row["schema_hash"]) for row in rows}
        assert exported == {name: (i.name, i.fingerprint, i.schema_hash) for name, i in data.items()}

    dom = browser.dom(f"{store.url}/results")
    shown = {}
    for name, identity in data.items():
        row = dom.find("tr", attrs={"data-artifact": jobs[name].artifact_id})
        assert row.select_one(".model").get_text() == "gbt" and row["data-fingerprint"] == identity.fingerprint
        cell = row.select_one("td.data")
        assert cell.select_one(".data-name").get_text() == "synth-small"
        shown[name] = cell.select_one(".fingerprint").get_text()
        assert shown[name] == identity.fingerprint[:8]
        heading = dom.find("section", attrs={"data-artifact": jobs[name].artifact_id}).select_one("h3 .data")
        assert heading.get_text() == f"synth-small {identity.fingerprint[:8]}"
    assert shown["gbt-on-a"] != shown["gbt-on-b"]
