"""The store's results page, rendered by headless chromium after real jobs ran through a real worker."""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
from pathlib import Path

import httpx
import pytest
import zstandard

from cis490_train.artifacts.bundle import make_bundle
from cis490_train.artifacts.client import StoreClient
from cis490_train.artifacts.results import BAR_WIDTH
from cis490_train.core.scores import METRICS
from helpers.browser import artifacts_dir
from helpers.fleet import cli, wait_for

pytestmark = pytest.mark.integration

HOSTILE = """<img src=x onerror="document.title='owned'"><script>document.title='owned'</script>&amp;"""
MANIFEST = f"""
schema_version = 1
name = "results"

[defaults]
split_recipe = "sample"
n_resamples = 200

[[jobs]]
name = "gbt-small"
model = "gbt"
hyper = {{ n_estimators = 12 }}

[[jobs]]
name = "mlp-small"
model = "mlp"
mode = "oracle"
split_recipe = "time"
hyper = {{ epochs = 6 }}

[[jobs]]
name = {json.dumps(HOSTILE)}
model = "knn"
"""


def read_report(bundle: bytes) -> dict:
    with zstandard.ZstdDecompressor().stream_reader(bundle) as raw, tarfile.open(fileobj=raw, mode="r|") as tar:
        first = next(iter(tar))
        assert first.name == "report.json"
        return json.loads(tar.extractfile(first).read())


def upload_old_style_bundle(fleet_env, store, tmp_path: Path) -> str:
    """A bundle without a report, as stores held before summaries: its row must still render."""
    out = tmp_path / "old-out"
    out.mkdir()
    (out / "model.pt").write_bytes(b"weights" * 100)
    info = make_bundle(out, tmp_path / "old.tar.zst")
    with StoreClient(store.url, fleet_env["CIS490_WORKER_TOKEN"]) as client:
        client.upload(info.path, info.sha256, model="cnn", mode="realistic", job_id="0123456789abcdef", attempt=1, host="old-host")
    return info.sha256


def test_results_page_shows_every_artifact_with_its_metrics_cis_curves_and_download(
    browser, fleet_env, registry, store, start_worker, tmp_path
):
    old_id = upload_old_style_bundle(fleet_env, store, tmp_path)
    start_worker("box", "cpu")
    manifest = tmp_path / "results.toml"
    manifest.write_text(MANIFEST)
    assert cli(fleet_env, "enqueue", str(manifest)).returncode == 0
    names = ("gbt-small", "mlp-small", HOSTILE)
    wait_for(lambda: all(registry.find(n).status == "completed" for n in names), 180, "the three jobs to complete")
    jobs = {n: registry.find(n) for n in names}

    raw = httpx.get(f"{store.url}/results", timeout=10)
    assert raw.status_code == 200 and raw.headers["content-type"].startswith("text/html")
    assert "script-src" not in raw.headers["content-security-policy"] and "default-src 'none'" in raw.headers["content-security-policy"]
    assert "&lt;script&gt;document.title=&#x27;owned&#x27;&lt;/script&gt;&amp;amp;" in raw.text

    dom = browser.dom(f"{store.url}/")  # `/` redirects to the page
    assert dom.title.get_text() == "cis490 results"
    assert dom.find("script") is None and dom.find("img") is None and dom.select("[onerror]") == []

    rows = dom.select("#leaderboard tbody tr.result")
    assert [r["data-artifact"] for r in rows][-1] == old_id  # no summary: listed after the scored rows
    scored = rows[:-1]
    assert {r["data-artifact"] for r in scored} == {j.artifact_id for j in jobs.values()}
    f1 = [float(r.select_one('td[data-metric="macro_f1"] .value').get_text()) for r in scored]
    assert f1 == sorted(f1, reverse=True)

    old = rows[-1]
    assert old.select_one(".name").get_text() == "0123456789abcdef" and old.select_one(".host").get_text() == "old-host"
    assert [td.get_text(strip=True) for td in old.select("td.metric")] == ["—"] * 3
    assert old.select_one(".bundle a")["href"] == f"/v1/artifacts/{old_id}"

    for name, job in jobs.items():
        row = dom.find("tr", attrs={"data-artifact": job.artifact_id})
        href = row.select_one(".bundle a")["href"]
        assert href == f"/v1/artifacts/{job.artifact_id}"
        bundle = httpx.get(f"{store.url}{href}", timeout=30)  # downloads stay open, as the API's GET is
        assert bundle.status_code == 200 and hashlib.sha256(bundle.content).hexdigest() == job.artifact_id
        report = read_report(bundle.content)

        assert row.select_one(".name").get_text() == name == report["name"]
        assert row["data-job"] == job.job_id
        assert (row.select_one(".model").get_text(), row.select_one(".mode").get_text()) == (report["model"], report["mode"])
        assert row.select_one(".split").get_text() == report["split_recipe"]
        assert row.select_one(".host").get_text() == job.host == "box"
        assert row.select_one(".duration").get_text() == f"{report['duration_s']:.1f} s"
        for metric in METRICS:
            est, base = report["metrics"][metric], report["baseline"][metric]
            cell = row.select_one(f'td[data-metric="{metric}"]')
            assert cell.select_one(".value").get_text() == f"{est['value']:.3f}"
            assert cell.select_one(".ci-low").get_text() == f"{est['ci_low']:.3f}"
            assert cell.select_one(".ci-high").get_text() == f"{est['ci_high']:.3f}"
            ci = cell.select_one("svg.bar rect.ci")
            assert float(ci["x"]) == pytest.approx(est["ci_low"] * BAR_WIDTH, abs=0.06)
            assert float(ci["x"]) + float(ci["width"]) == pytest.approx(max(est["ci_high"] * BAR_WIDTH, float(ci["x"]) + 1), abs=0.11)
            assert float(cell.select_one("svg.bar line.value")["x1"]) == pytest.approx(est["value"] * BAR_WIDTH, abs=0.06)
            assert float(cell.select_one("svg.bar line.baseline")["x1"]) == pytest.approx(base["value"] * BAR_WIDTH, abs=0.06)
            assert row.select_one(f'td.baseline [data-metric="{metric}"]').get_text().endswith(f"{base['value']:.3f}")

        curves = dom.find("section", attrs={"data-artifact": job.artifact_id})
        charts = curves.select("figure.chart")
        assert [c["data-phase"] for c in charts] == ["train"]
        epochs = [p["epoch"] for p in report["curve"]]
        losses = [p["loss"] for p in report["curve"] if p["loss"] is not None]
        metric_points = charts[0].select("circle.pt.metric")
        assert [int(c["data-epoch"]) for c in metric_points] == epochs
        assert [float(c["data-value"]) for c in metric_points] == pytest.approx([p["metric"] for p in report["curve"]], abs=1e-5)
        assert len(charts[0].select("circle.pt.loss")) == len(losses)
        polyline = charts[0].select_one("polyline.metric")["points"].split()
        assert len(polyline) == len(epochs)

    expected_epochs = {"gbt-small": 12, "mlp-small": 6, HOSTILE: 1}
    for name, count in expected_epochs.items():
        curves = dom.find("section", attrs={"data-artifact": jobs[name].artifact_id})
        assert len(curves.select("circle.pt.metric")) == count
    assert dom.find("section", attrs={"data-artifact": old_id}) is None

    shot = browser.screenshot(f"{store.url}/results", artifacts_dir(tmp_path / "artifacts") / "results-page.png", size=(1400, 1000))
    assert shot.stat().st_size > 10_000
    assert re.search(r"4 stored artifacts", dom.select_one(".lede").get_text())
