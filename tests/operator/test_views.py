"""The live view's pure parts: progress fractions, ETAs, bars, the redrawn table; `logs` rendering."""

from __future__ import annotations

import json
import time
import zlib

from rich.console import Console

from cis490_train.core import events
from cis490_train.operator import joblog
from cis490_train.core.specs import JobSpec
from cis490_train.registry import JobRecord
from cis490_train.operator.views import eta_seconds, jobs_table, leaderboard_rows, progress_bar, progress_fraction, results_table, status_changes, watch_view

NOW = 10_000.0
TRAIN = {
    "event": "progress",
    "phase": "train",
    "epoch": 3,
    "epochs": 10,
    "step": 35,
    "steps": 100,
    "loss": 0.41,
    "metric": 0.712,
    "metric_name": "val_macro_f1",
    "eta_s": 40.0,
    "elapsed_s": 20.0,
}


def record(name: str, status: str = "running", progress: dict | None = None, **fields) -> JobRecord:
    spec = JobSpec(name=name, model="mlp", split_recipe="sample", seed=zlib.crc32(name.encode()))
    defaults = dict(host="box", heartbeat_at=NOW - 2, started_at=NOW - 30)
    defaults.update(fields)
    return JobRecord(
        job_id=spec.job_id,
        spec=spec,
        status=status,
        attempt=1,
        starts=1,
        max_attempts=3,
        queue="cpu.mlp",
        broker_priority=0,
        manifest="m",
        progress=progress or {},
        **defaults,
    )


def text(renderable, width: int = 220) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_fraction_counts_steps_where_the_trainer_gives_them_else_epochs():
    assert progress_fraction(TRAIN) == 0.35
    assert progress_fraction({"epoch": 4, "epochs": 8}) == 0.5
    assert progress_fraction({"step": 0, "steps": 50}) == 0.0
    assert progress_fraction({"phase": "evaluate"}) is None
    assert progress_fraction({"epoch": 12, "epochs": 10}) == 1.0


def test_eta_is_the_trainers_own_aged_by_the_time_since_its_heartbeat():
    assert eta_seconds(record("a", progress=TRAIN, heartbeat_at=NOW - 5), NOW) == 35.0
    assert eta_seconds(record("a", progress=TRAIN, heartbeat_at=NOW - 60), NOW) == 0.0


def test_eta_without_one_from_the_trainer_is_estimated_from_elapsed_over_fraction():
    no_eta = {**TRAIN, "eta_s": None}
    # 20 s elapsed at the last heartbeat, 2 s since: 22 s for 35 %, so 22 * 0.65 / 0.35 left.
    assert abs(eta_seconds(record("a", progress=no_eta), NOW) - 22 * 0.65 / 0.35) < 1e-9
    # No elapsed time in the progress either: since the job started.
    bare = {"epoch": 1, "epochs": 4}
    assert abs(eta_seconds(record("a", progress=bare, started_at=NOW - 30), NOW) - 90.0) < 1e-9


def test_no_eta_for_jobs_that_do_not_train_or_say_nothing_measurable():
    assert eta_seconds(record("a", "pending", progress=TRAIN), NOW) is None
    assert eta_seconds(record("a", "completed", progress=TRAIN), NOW) is None
    assert eta_seconds(record("a", progress={"phase": "data", "eta_s": None}), NOW) is None


def test_bar_fills_with_the_fraction():
    assert progress_bar(0.0).plain == "─" * 12
    assert progress_bar(0.5).plain == "━" * 6 + "─" * 6
    assert progress_bar(1 / 24).plain == "╸" + "─" * 11
    assert progress_bar(1.0).plain == "━" * 12


def test_live_table_shows_a_bar_the_progress_in_words_and_an_eta_per_running_job():
    records = [
        record("waiting", "pending"),
        record("training", progress=TRAIN, heartbeat_at=NOW - 10),
        record("broken", "failed", error="trainer exited with code 2\nTraceback ..."),
        record("loading", progress={"phase": "data"}),
    ]
    out = text(watch_view(records, now=NOW, limit=50, interval=1.5))
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.startswith("│")}
    assert "━━━━────────" in rows["training"] and "35% train 3/10, loss 0.41, val_macro_f1 0.712" in rows["training"]
    assert "30.0s" in rows["training"]  # 40 s from the trainer, 10 s ago
    assert "━" not in rows["waiting"] and "─" not in rows["waiting"]
    assert "trainer exited with code 2" in rows["broken"] and "Traceback" not in rows["broken"]
    assert "data" in rows["loading"] and "━" not in rows["loading"]
    assert "eta" in out.splitlines()[2] and "every 1.5s" in out
    assert out.index("training") < out.index("broken") < out.index("waiting")


def test_live_table_keeps_the_row_limit_and_counts_every_job():
    records = [record(f"job{i:03d}", "pending") for i in range(120)] + [record("busy", progress=TRAIN)]
    out = text(watch_view(records, now=NOW, limit=50))
    assert "121 jobs: 120 pending, 1 running" in out
    assert "71 more jobs not shown" in out
    assert out.count("│ job") == 49 and "busy" in out


def test_plain_table_is_unchanged_by_the_live_view():
    out = text(jobs_table([record("training", progress=TRAIN)], now=NOW))
    assert "train 3/10, loss 0.41, val_macro_f1 0.712, eta 40.0s" in out
    assert "━━━━────" not in out and "│ eta" not in out.replace("┃ eta", "")


def test_status_changes_name_each_job_once_per_change():
    seen: dict[str, str] = {}
    assert status_changes([record("a", "pending"), record("b", "pending")], seen) == ["a: pending on box", "b: pending on box"]
    assert status_changes([record("a", "pending"), record("b", "pending")], seen) == []
    assert status_changes([record("a", "running"), record("b", "pending", host="")], seen) == ["a: running on box"]


def line(obj: dict) -> dict[str, str]:
    return {events.LINE: json.dumps(obj)}


def test_logs_render_protocol_lines_in_words_and_other_output_as_it_is():
    start = {"event": "start", "model": "mlp", "mode": "oracle", "split_recipe": "time", "seed": 3, "threads": 1, "pid": 77}
    assert joblog.render(line(start)) == "start: mlp / oracle / split time, seed 3, 1 thread, pid 77"
    assert joblog.render(line({"event": "done", "report": "report.json"})) == "done: wrote report.json"
    assert joblog.render(line({"event": "error", "error": "bad", "exit_code": 2})) == "error: bad (exit code 2)"
    assert joblog.render({events.LINE: "UserWarning: something {odd}"}) == "UserWarning: something {odd}"
    assert joblog.render({events.LINE: "{not json"}) == "{not json"


def test_logs_hide_progress_lines_unless_asked_and_raw_prints_them_verbatim():
    assert joblog.render(line(TRAIN)) is None
    assert joblog.render(line(TRAIN), progress=True) == "progress: train 3/10, loss 0.41, val_macro_f1 0.712, eta 40.0s"
    assert joblog.render(line(TRAIN), raw=True) == json.dumps(TRAIN)
    assert joblog.render({events.END: "completed", events.DETAIL: ""}) is None


def test_logs_notes_say_what_was_lost_and_how_the_attempt_ended():
    assert joblog.note({events.LOST: "12"}, 1).startswith("[12 lines not kept")
    assert joblog.note({events.END: "failed", events.DETAIL: "trainer_error: exit 2\ntail"}, 2) == "[attempt 2 ended: failed: trainer_error: exit 2]"
    assert joblog.note({events.LINE: "x"}, 1) is None
    assert joblog.note({events.LOST: "x\x1b[2J"}, 1) == "[a note of lost lines that is not a count: 'x\\x1b[2J']"


def test_why_a_log_is_empty():
    assert joblog.why_empty("pending", 2, 2) == "it has not started yet"
    assert joblog.why_empty("running", 2, 2) == "the trainer has printed nothing yet"
    assert "CIS490_LOG_KEEP_S" in joblog.why_empty("running", 3, 2)


def test_the_results_table_fits_120_columns_and_keeps_every_value():
    models = ("gbt", "knn", "knn_semi", "mlp", "cnn", "gru", "lstm", "transformer", "transformer_ssl")
    hosts = ("elliott-thinkpad", "darwin-server", "lab-ws1.cs.example-university.edu", "euler-pi")
    names = ("synth-small", "GunPoint", "a-dataset-directory-whose-name-is-longer-than-the-column", "synth")
    records = []
    for i, model in enumerate(models):
        spec = JobSpec(name=f"{model}-oracle", model=model, mode="oracle" if i % 2 else "realistic", split_recipe=("host", "sample", "time")[i % 3])
        v = 0.5 + i / 20
        score = {"value": v, "ci_low": v - 0.021, "ci_high": v + 0.013}
        result = {"metrics": {"accuracy": score, "macro_f1": score, "balanced_accuracy": score}, "baseline": {"accuracy": {"value": 0.456}}}
        if i:  # the first (and worst) was trained before results named their data
            result["dataset"] = {"name": names[i % 4], "fingerprint": f"{i + 3:x}{i}" * 32, "schema_hash": "e" * 64}
        records.append(
            JobRecord(
                job_id=spec.job_id, spec=spec, status="completed", attempt=1, starts=1, max_attempts=3, queue=f"cpu.{model}", broker_priority=0,
                manifest="m", host=hosts[i % 4], started_at=NOW, finished_at=NOW + (4.8, 75, 750, 3723)[i % 4], artifact_id=f"{i:x}" * 64,
                result=result,
            )
        )
    rows = leaderboard_rows(records)
    out = text(results_table(rows), width=120)
    lines = out.splitlines()
    assert max(map(len, lines)) <= 120 and "…" not in out
    for row in rows:
        assert f"{row['model']:<17}" in out and f"{row['mode']}, {row['split']}" in out and row["artifact_id"][:12] in out
        m = row["metrics"]["macro_f1"]
        assert f"{m['value']:.3f}" in out and f"[{m['ci_low']:.3f}, {m['ci_high']:.3f}]" in out
    hosts_column = "".join(line.split("│")[6].strip() for line in lines if line.count("│") == 8)
    assert all(host in hosts_column for host in hosts)
    for row, record in zip(rows, sorted(records, key=lambda r: -r.result["metrics"]["macro_f1"]["value"])):
        assert row["dataset"] == record.result.get("dataset")
        if row["dataset"]:
            label = f"{row['dataset']['name']} {row['dataset']['fingerprint'][:8]}"
            assert label.replace(" ", "") in hosts_column.replace(" ", "")  # the data's line folds, nothing is cut
    assert rows[-1]["dataset"] is None and rows[-1]["model"] == "gbt"
    gbt_cell = [line.split("│")[6].strip() for line in lines[-4:] if line.count("│") == 8]
    assert gbt_cell == ["elliott-thinkpad", "000000000000"]  # an older result: host and artifact, no data line
    assert all(d in out for d in ("4.8s", "1m15s", "12m30s", "1h02m"))


def test_show_lists_the_job_its_scores_its_error_and_each_attempt():
    from cis490_train.operator.details import job_detail

    metrics = {"accuracy": {"value": 0.91, "ci_low": 0.9, "ci_high": 0.92}}
    failed = record("broken", status="failed", error="boom\nat line 3", failure="trainer_error", result={"metrics": metrics})
    attempt = {"attempt": 1, "host": "box", "worker": "w@box", "outcome": "failed", "failure": "trainer_error", "error": "boom"}
    heading, *lines = job_detail(failed, [attempt], ["no live worker"])
    assert heading.plain == f"broken  {failed.job_id}  (m)"
    assert "status      failed (attempt 1, 1 of 3 tries used)" in lines
    assert "accuracy    0.910 [0.900, 0.920]" in lines
    assert lines.index("error       [trainer_error] boom") + 1 == lines.index("at line 3")
    assert "waiting     no live worker" in lines and lines[-1].startswith("attempt 1   box (w@box)") and lines[-1].endswith(": boom")
    at = time.mktime((2026, 12, 1, 9, 30, 5, 0, 0, -1))
    *_, last = job_detail(failed, [attempt], [], [{"at": at, "action": "requeue", "job_id": failed.job_id, "attempt": 1}])
    assert last == "operator    requeue at 09:30:05, during attempt 1"


def test_show_names_the_data_a_job_was_trained_on_and_drops_what_is_malformed():
    from cis490_train.operator.details import job_detail

    data = {"name": "GunPoint", "fingerprint": "3f" * 32, "schema_hash": "ab" * 32}
    done = record("done", status="completed", artifact_id="c" * 64, result={"dataset": data})
    _, *lines = job_detail(done, [], [])
    at = lines.index(f"artifact    {'c' * 64}")
    assert lines[at + 1 : at + 4] == ["data        GunPoint", f"fingerprint {'3f' * 32}", f"schema      {'ab' * 32}"]
    forged = record("forged", status="completed", result={"dataset": {**data, "name": "x\x1b[2J", "schema_hash": "nope"}})
    _, *lines = job_detail(forged, [], [])
    assert f"fingerprint {'3f' * 32}" in lines and not any(line.startswith(("data ", "schema ")) for line in lines)
    _, *older = job_detail(record("older", status="completed", result={"metrics": {}}), [], [])
    assert not any(line.startswith(("data ", "fingerprint")) for line in older)


def test_evaluate_names_both_datasets_when_the_data_differs():
    from cis490_train.operator.details import evaluate_lines

    trained_on = {"name": "synth-small", "fingerprint": "3f" * 32, "schema_hash": "ab" * 32}
    given = {"name": "GunPoint", "fingerprint": "9b" * 32, "schema_hash": "ab" * 32}
    result = {"model": "gbt", "mode": "realistic", "split_recipe": "host", "n_test": 10, "metrics": {}, "recorded": {}, "baseline": {},
              "same_data": False, "trained_on": trained_on, "dataset": given}
    lines = evaluate_lines(result)
    assert lines[0].endswith("10 test windows of different data (same schema)")
    assert lines[1:3] == ["trained on        synth-small 3f3f3f3f", "given             GunPoint 9b9b9b9b"]
    same = evaluate_lines({**result, "same_data": True, "dataset": trained_on})
    assert same[0].endswith("of the data it was trained on") and not any(line.startswith(("trained on", "given")) for line in same)


def test_explain_says_where_a_job_is_that_does_not_wait():
    from cis490_train.operator.details import explain_lines, explanation

    running = record("busy", worker="w@box")
    assert explanation(running, []) == ["busy is running on box (w@box); only pending jobs wait for a worker"]
    pending = record("idle", status="pending", host="")
    assert explanation(pending, ["w@box: too few cores"]) == ["w@box: too few cores"]
    assert explain_lines(pending, ["w@box: too few cores"]) == [f"idle ({pending.job_id}) is pending; queue cpu.mlp", "  w@box: too few cores"]


def test_one_thing_views_escape_what_the_registry_holds():
    from cis490_train.core.lifecycle import Transition
    from cis490_train.operator.details import cancel_line, requeue_line

    hostile = record("x\x1b[2J", status="pending")
    assert cancel_line(hostile, Transition(ok=True)) == f"cancelled x\\x1b[2J ({hostile.job_id}), was pending"
    assert cancel_line(hostile, Transition.refuse("done\x07")).endswith(": done\\x07")
    assert requeue_line(hostile, 2) == f"requeued x\\x1b[2J ({hostile.job_id}), was pending: attempt 2"


def test_manifest_check_aligns_the_queues_of_each_tier():
    from cis490_train.operator.details import check_lines

    summary = {
        "name": "m",
        "jobs": 3,
        "hosts": [],
        "tiers": {"cpu": 3},
        "queues": [
            {"queue": "cpu.gbt", "tier": "cpu", "jobs": 1, "broker_priorities": [0]},
            {"queue": "cpu.logreg", "tier": "cpu", "jobs": 2, "broker_priorities": [0, 5]},
        ],
        "fallback_queues": [],
    }
    assert check_lines("m.toml", summary) == [
        "m.toml: valid; manifest 'm', 3 jobs",
        "  tier cpu: 3 jobs",
        "    cpu.gbt        1 job   broker priority 0",
        "    cpu.logreg     2 jobs  broker priority 0, 5",
    ]
