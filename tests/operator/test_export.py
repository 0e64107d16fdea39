"""`cis490-train export`: the rows of `cis490-train results`, as Parquet or CSV, read back."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from cis490_train.operator.export import columns, flat_rows
from cis490_train.core.lifecycle import Lease
from cis490_train.core.specs import JobSpec
from cis490_train.core.routing import QueueClass
from cis490_train.core.scores import METRICS
from helpers.fleet import cli

pytestmark = pytest.mark.integration


def estimate(value: float) -> dict[str, float]:
    return {"value": value, "ci_low": round(value - 0.05, 4), "ci_high": round(value + 0.04, 4)}


DATA = {"name": "synth-small", "fingerprint": "3f2a9c1e" * 8, "schema_hash": "ab" * 32}


def finish(registry, name: str, model: str, score: float, host: str, dataset: dict | None = None) -> None:
    """A job taken through claim, start and complete by the registry, with a trainer-shaped result
    (without `dataset`, one from before results named their data)."""
    spec = JobSpec(name=name, model=model, split_recipe="sample", seed=len(name))
    registry.apply([(spec, QueueClass.for_job(spec).name, 0)], "export")
    lease = Lease.new(1, f"w@{host}", host)
    assert registry.claim(spec.job_id, lease).ok and registry.start(spec.job_id, lease).ok
    result = {
        "metrics": {m: estimate(score - i / 100) for i, m in enumerate(METRICS)},
        "baseline": {m: estimate(0.4 - i / 100) for i, m in enumerate(METRICS)},
        "host": host,
    }
    if dataset is not None:
        result["dataset"] = dataset
    assert registry.complete(spec.job_id, lease, f"{len(name):x}".rjust(64, "a"), result).ok


@pytest.fixture
def finished(registry):
    finish(registry, "gbt-a", "gbt", 0.91, "lab-ws1", DATA)
    finish(registry, "mlp-b", "mlp", 0.83, "lab-ws2")
    pending = JobSpec(name="still-waiting", model="knn")
    registry.apply([(pending, QueueClass.for_job(pending).name, 0)], "export")
    return registry


def expected(fleet_env) -> list[dict]:
    rows = json.loads(cli(fleet_env, "results", "--json").stdout)
    flat = []
    for row in rows:
        out = {k: row[k] for k in ("job", "job_id", "model", "mode", "split", "host", "duration_s", "artifact_id")}
        for prefix, source in (("", row["metrics"]), ("baseline_", row["baseline"])):
            for m in METRICS:
                out[f"{prefix}{m}"] = source[m]["value"]
                out[f"{prefix}{m}_ci_low"] = source[m]["ci_low"]
                out[f"{prefix}{m}_ci_high"] = source[m]["ci_high"]
        data = row["dataset"] or {}
        out.update(dataset=data.get("name"), data_fingerprint=data.get("fingerprint"), schema_hash=data.get("schema_hash"))
        flat.append(out)
    return flat


def test_parquet_export_holds_the_results_rows(fleet_env, finished, tmp_path):
    here = tmp_path / "here"
    here.mkdir()
    out = subprocess.run([sys.executable, "-m", "cis490_train", "export"], env=fleet_env, cwd=here, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "wrote 2 rows to results.parquet" in out.stdout
    table = pq.read_table(here / "results.parquet")
    assert table.column_names == [name for name, _ in columns()]
    rows = table.to_pylist()
    want = expected(fleet_env)
    assert [r["job"] for r in want] == ["gbt-a", "mlp-b"]  # best macro-F1 first, the pending job left out
    assert rows == want
    assert (rows[0]["dataset"], rows[0]["data_fingerprint"], rows[0]["schema_hash"]) == (DATA["name"], DATA["fingerprint"], DATA["schema_hash"])
    assert (rows[1]["dataset"], rows[1]["data_fingerprint"], rows[1]["schema_hash"]) == (None, None, None)  # an older result
    assert [p.name for p in here.iterdir()] == ["results.parquet"]  # no temporary file left behind


def test_csv_export_to_a_named_file(fleet_env, finished, tmp_path):
    target = tmp_path / "out" / "board.csv"
    out = cli(fleet_env, "export", "--format", "csv", "-o", str(target))
    assert out.returncode == 0, out.stderr
    with target.open(newline="") as f:
        rows = list(csv.DictReader(f))
    want = expected(fleet_env)
    assert len(rows) == len(want) == 2
    for got, row in zip(rows, want):
        assert list(got) == [name for name, _ in columns()]
        for key, value in row.items():
            if isinstance(value, float):
                assert float(got[key]) == pytest.approx(value)
            else:
                assert got[key] == ("" if value is None else str(value))


def test_the_data_columns_come_last_and_a_missing_part_is_null():
    names = [name for name, _ in columns()]
    assert names[-6:] == ["host", "duration_s", "artifact_id", "dataset", "data_fingerprint", "schema_hash"]
    assert dict(columns())["data_fingerprint"] == "string"
    rows = [
        {"job": "a", "dataset": DATA},
        {"job": "b", "dataset": {"name": "", "fingerprint": DATA["fingerprint"], "schema_hash": ""}},
        {"job": "c", "dataset": None},
    ]
    flat = flat_rows(rows)
    assert [(r["dataset"], r["data_fingerprint"], r["schema_hash"]) for r in flat] == [
        (DATA["name"], DATA["fingerprint"], DATA["schema_hash"]),
        (None, DATA["fingerprint"], None),
        (None, None, None),
    ]
    assert all(list(r) == names for r in flat)


def test_export_of_nothing_and_bad_arguments(fleet_env, registry, tmp_path):
    target = tmp_path / "empty.parquet"
    assert cli(fleet_env, "export", "-o", str(target)).returncode == 0
    empty = pq.read_table(target)
    assert empty.num_rows == 0 and empty.column_names == [name for name, _ in columns()]
    bad = cli(fleet_env, "export", "--format", "xlsx")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
    into_dir = cli(fleet_env, "export", "-o", str(tmp_path))
    assert into_dir.returncode == 2 and "is a directory" in into_dir.stderr and "Traceback" not in into_dir.stderr
