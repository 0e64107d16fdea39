"""What the store takes from a bundle's report for the results page, and how the page lays it out."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest
import zstandard

from cis490_train.artifacts.bundle import make_bundle
from cis490_train.artifacts.records import ArtifactMeta, ArtifactRecord
from cis490_train.artifacts.results import CHART_HEIGHT, CHART_PAD, CHART_WIDTH, build_page, render
from cis490_train.artifacts.store import ArtifactStore
from cis490_train.core.provenance import DataIdentity
from cis490_train.artifacts.summary import (
    MAX_CURVE_POINTS,
    MAX_TEXT,
    SUMMARY_NAME,
    Summary,
    load_summary,
    read_report,
    summarise_bundle,
)

JOB = "0123456789abcdef"
DATA = {"name": "synth-small", "fingerprint": "3f2a9c1e" * 8, "schema_hash": "ab" * 32}


def report(**over) -> dict:
    est = {"value": 0.8, "ci_low": 0.75, "ci_high": 0.85}
    base = {"value": 0.2, "ci_low": 0.18, "ci_high": 0.22}
    out = {
        "name": "mlp-a",
        "model": "mlp",
        "mode": "realistic",
        "split_recipe": "host",
        "device": "cpu",
        "seed": 3,
        "n_train": 900,
        "n_val": 100,
        "n_test": 300,
        "duration_s": 12.5,
        "train_seconds": 10.0,
        "dataset": dict(DATA),
        "metrics": {m: dict(est) for m in ("accuracy", "macro_f1", "balanced_accuracy")},
        "baseline": {m: dict(base) for m in ("accuracy", "macro_f1", "balanced_accuracy")},
        "curve": [
            {"phase": "train", "epoch": e, "loss": 1.0 / e, "metric": 0.5 + e / 100, "metric_name": "val_macro_f1"}
            for e in range(1, 6)
        ],
    }
    out.update(over)
    return out


def trainer_bundle(tmp_path: Path, rep: dict | bytes, weights: bytes = b"w" * 1000, name: str = "b") -> Path:
    out = tmp_path / f"out-{name}"
    out.mkdir()
    (out / "model.pt").write_bytes(weights)
    (out / "report.json").write_bytes(rep if isinstance(rep, bytes) else json.dumps(rep).encode())
    return make_bundle(out, tmp_path / f"{name}.tar.zst").path


def hand_bundle(path: Path, members: list[tuple[str, bytes]]) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(zstandard.ZstdCompressor(level=1).compress(buf.getvalue()))
    return path


def test_a_trainer_bundle_yields_its_summary(tmp_path):
    summary = summarise_bundle(trainer_bundle(tmp_path, report()))
    assert summary is not None
    assert (summary.name, summary.split_recipe, summary.device, summary.seed) == ("mlp-a", "host", "cpu", 3)
    assert (summary.n_train, summary.n_val, summary.n_test, summary.duration_s) == (900, 100, 300, 12.5)
    assert summary.metric("macro_f1").ci_low == 0.75 and summary.baseline_of("accuracy").value == 0.2
    assert [p.epoch for p in summary.curve] == [1, 2, 3, 4, 5] and summary.metric_name == "val_macro_f1"
    assert summary.dataset == DataIdentity(**DATA) and summary.to_json()["dataset"] == DATA
    assert Summary.from_report(json.loads(json.dumps(summary.to_json()))) == summary


def test_a_report_from_before_reports_named_their_data_still_summarises(tmp_path):
    old = report()
    del old["dataset"]
    summary = summarise_bundle(trainer_bundle(tmp_path, old))
    assert summary is not None and summary.dataset is None and summary.to_json()["dataset"] is None
    assert summary.metric("macro_f1").value == 0.8
    assert Summary.from_report(json.loads(json.dumps(summary.to_json()))) == summary


@pytest.mark.parametrize(
    ("dataset", "kept"),
    [
        ({**DATA, "name": "<b>" + "x" * 100}, {**DATA, "name": ""}),
        ({**DATA, "name": "evil\x1b]0;owned\x07"}, {**DATA, "name": ""}),
        ({**DATA, "fingerprint": "../" * 22}, {**DATA, "fingerprint": ""}),
        ({**DATA, "fingerprint": DATA["fingerprint"].upper(), "schema_hash": 12}, {**DATA, "fingerprint": "", "schema_hash": ""}),
        ({"name": None, "fingerprint": "no", "schema_hash": []}, None),
        ("synth-small", None),
        ([DATA], None),
    ],
)
def test_a_dataset_field_that_is_not_well_formed_is_dropped_not_trusted(dataset, kept):
    summary = Summary.from_report(report(dataset=dataset))
    assert summary is not None and summary.metric("accuracy").value == 0.8  # the rest of the report still counts
    assert summary.to_json()["dataset"] == kept


def test_a_summary_kept_before_n_val_was_recorded_still_loads(tmp_path):
    kept = summarise_bundle(trainer_bundle(tmp_path, report())).to_json()
    del kept["n_val"]
    (tmp_path / SUMMARY_NAME).write_text(json.dumps(kept))
    old = load_summary(tmp_path / SUMMARY_NAME)
    assert old is not None and old.n_val is None and (old.n_train, old.n_test) == (900, 300)


def test_what_is_not_a_report_gives_no_summary(tmp_path):
    random = tmp_path / "random.tar.zst"
    random.write_bytes(os.urandom(5000))
    assert read_report(random) is None
    no_report = hand_bundle(tmp_path / "none.tar.zst", [("model.pt", b"x" * 100)])
    assert read_report(no_report) is None
    assert summarise_bundle(trainer_bundle(tmp_path, b"{not json", name="bad")) is None
    assert summarise_bundle(trainer_bundle(tmp_path, b"[" * 100_000 + b"]" * 100_000, name="deep")) is None
    assert summarise_bundle(trainer_bundle(tmp_path, report(metrics={"accuracy": "high"}), name="nometrics")) is None


def test_the_report_is_read_only_from_the_first_members_and_within_size_limits(tmp_path):
    late = hand_bundle(tmp_path / "late.tar.zst", [("model.pt", os.urandom(17 << 20)), ("report.json", json.dumps(report()).encode())])
    assert read_report(late) is None  # behind 17 MiB of weights: not worth decompressing them
    early = hand_bundle(tmp_path / "early.tar.zst", [("ckpt.json", b"{}"), ("report.json", json.dumps(report()).encode())])
    assert read_report(early)["name"] == "mlp-a"
    padded = report(padding="x" * (5 << 20))
    assert read_report(trainer_bundle(tmp_path, padded, name="big")) is None
    many = hand_bundle(tmp_path / "many.tar.zst", [(f"f{i}", b"") for i in range(10)] + [("report.json", b"{}")])
    assert read_report(many) is None


def test_every_field_is_checked_and_a_hostile_report_names_no_path(tmp_path):
    hostile = report(
        name="<script>" + "x" * 500,
        split_recipe="../../etc",
        device="cuda; rm -rf /",
        seed=True,
        n_train=-5,
        duration_s=float("nan"),
        metrics={
            "accuracy": {"value": 1.5, "ci_low": 0.1, "ci_high": 0.2},
            "macro_f1": {"value": 0.5, "ci_low": 0.4, "ci_high": 0.6},
            "balanced_accuracy": {"value": "0.5", "ci_low": 0.4, "ci_high": 0.6},
        },
        baseline=[1, 2],
        curve=[{"epoch": 1, "loss": "x", "metric": 7}, {"epoch": -1}, "junk", {"epoch": 2, "phase": "../x", "loss": 0.5}],
    )
    summary = Summary.from_report(hostile)
    assert len(summary.name) == MAX_TEXT and summary.name.startswith("<script>")
    assert (summary.split_recipe, summary.device, summary.seed, summary.n_train, summary.duration_s) == ("", "", None, None, None)
    assert [name for name, _ in summary.metrics] == ["macro_f1"] and summary.baseline == ()
    assert [(p.phase, p.epoch, p.loss, p.metric) for p in summary.curve] == [("train", 1, None, None), ("train", 2, 0.5, None)]


def test_a_long_curve_is_thinned_and_keeps_its_last_point():
    points = [{"epoch": e, "loss": 1.0, "metric": 0.5} for e in range(1, 5001)]
    curve = Summary.from_report(report(curve=points)).curve
    assert len(curve) <= MAX_CURVE_POINTS and curve[0].epoch == 1 and curve[-1].epoch == 5000
    assert [p.epoch for p in curve] == sorted({p.epoch for p in curve})


def test_the_store_keeps_a_summary_beside_each_bundle_and_old_bundles_have_none(tmp_path):
    with ArtifactStore(tmp_path / "store") as store:
        bundle = trainer_bundle(tmp_path, report())
        sha = hashlib.sha256(bundle.read_bytes()).hexdigest()
        with store.begin_upload(sha, ArtifactMeta("mlp", "realistic", JOB, 1, "box")) as up:
            up.write(bundle.read_bytes())
            record = up.commit().record
        kept = store.root / Path(record.path).parent / SUMMARY_NAME
        assert json.loads(kept.read_text())["metrics"]["macro_f1"]["value"] == 0.8
        assert store.summary(record).name == "mlp-a"

        plain = tmp_path / "plain.tar.zst"
        plain.write_bytes(os.urandom(2000))
        plain_sha = hashlib.sha256(plain.read_bytes()).hexdigest()
        with store.begin_upload(plain_sha, ArtifactMeta("cnn", "oracle", JOB, 2, "box")) as up:
            up.write(plain.read_bytes())
            old = up.commit().record
        assert store.summary(old) is None
        assert sorted(p.name for p in (store.root / Path(old.path).parent).iterdir()) == ["bundle.tar.zst"]
        page = build_page([(r, store.summary(r)) for r in store.list()])
        assert [r.record.artifact_id for r in page.rows] == [sha, plain_sha]


def test_rows_are_ranked_by_macro_f1_and_each_chart_has_one_point_per_epoch(tmp_path):
    def record(i: int) -> ArtifactRecord:
        sha = f"{i:064x}"
        return ArtifactRecord(sha, "mlp", "realistic", JOB, i, "box", 10, f"models/mlp_realistic/{sha}/bundle.tar.zst", f"2026-01-0{i}")

    def scored(f1: float, curve: list) -> Summary:
        rep = report(curve=curve)
        rep["metrics"]["macro_f1"] = {"value": f1, "ci_low": f1 - 0.01, "ci_high": f1 + 0.01}
        return Summary.from_report(rep)

    ssl = [{"phase": "pretrain", "epoch": e, "loss": 2.0 / e} for e in (1, 2, 3)] + [
        {"phase": "train", "epoch": e, "loss": 1.0 / e, "metric": 0.1 * e} for e in range(1, 8)
    ]
    single = [{"phase": "train", "epoch": 1, "metric": 0.6}]
    page = build_page([(record(1), scored(0.5, ssl)), (record(2), None), (record(3), scored(0.9, single)), (record(4), None)])
    assert [r.record.attempt for r in page.rows] == [3, 1, 4, 2]
    assert [c.row.record.attempt for c in page.curves] == [3, 1]

    one = page.curves[0].charts
    assert len(one) == 1 and [s.css for s in one[0].series] == ["metric"]
    left, right, top, bottom = CHART_PAD
    assert one[0].series[0].points[0][2] == left + (CHART_WIDTH - left - right) / 2  # a lone point sits mid-axis

    pre, train = page.curves[1].charts
    assert (pre.phase, train.phase) == ("pretrain", "train")
    assert [p[0] for p in pre.series[0].points] == [1, 2, 3] and [s.css for s in pre.series] == ["loss"]
    loss, metric = train.series
    assert [p[0] for p in loss.points] == [p[0] for p in metric.points] == list(range(1, 8))
    assert loss.points[0][3] == top and metric.points[-1][3] == pytest.approx(top + (CHART_HEIGHT - top - bottom) * 0.3)
    assert loss.polyline.count(",") == 7


def test_the_page_tells_apart_two_bundles_of_one_job_trained_on_different_data():
    from bs4 import BeautifulSoup

    other = {**DATA, "fingerprint": "9b" * 32}
    entries = []
    for i, dataset in enumerate((DATA, other, None), start=1):
        sha = f"{i:064x}"
        rep = report()
        if dataset is None:
            del rep["dataset"]
        else:
            rep["dataset"] = dataset
        record = ArtifactRecord(sha, "mlp", "realistic", JOB, i, "box", 10, f"models/mlp_realistic/{sha}/bundle.tar.zst", f"2026-01-0{i}")
        entries.append((record, Summary.from_report(rep)))
    dom = BeautifulSoup(render(build_page(entries)), "html.parser")
    rows = {int(tr.select_one("small").get_text().split()[-1]): tr for tr in dom.select("#leaderboard tr.result")}
    for attempt, dataset in ((1, DATA), (2, other)):
        cell = rows[attempt].select_one("td.data")
        assert cell.select_one(".data-name").get_text() == "synth-small"
        assert cell.select_one(".fingerprint").get_text() == dataset["fingerprint"][:8]
        assert dataset["fingerprint"] in cell.select_one(".fingerprint")["title"]
        assert rows[attempt]["data-fingerprint"] == dataset["fingerprint"]
        heading = dom.find("section", attrs={"data-artifact": f"{attempt:064x}"}).select_one("h3 .data").get_text()
        assert heading == f"synth-small {dataset['fingerprint'][:8]}"
    assert rows[3].select_one("td.data").get_text() == "—" and rows[3]["data-fingerprint"] == ""
