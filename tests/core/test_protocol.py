"""What workers may send the coordinator, ids and paths from outside: pure checks, no Redis."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cis490_train.errors import BadRequest
from cis490_train.ids import check_attempt, check_job_id, parse_task_id, task_id
from cis490_train.paths import inside
from cis490_train.core.protocol import Op, Reply, Request, clean_progress

JOB = "0123456789abcdef"
GOOD = {"op": "beat", "job_id": JOB, "attempt": 2, "worker": "w@h", "host": "h", "secret": "a" * 64, "nonce": "b" * 32, "body": {"progress": {"epoch": 3}}}


def test_a_request_round_trips_and_keeps_only_what_its_op_reads():
    request = Request.decode(json.dumps(GOOD))
    assert request.op is Op.BEAT and request.lease.secret == "a" * 64 and request.body == {"progress": {"epoch": 3}}
    assert Request.decode(request.encode()) == request
    fail = Request.decode(json.dumps({**GOOD, "op": "fail", "body": {"failure": "oom", "error": "x" * 20_000, "extra": 1}}))
    assert fail.body == {"failure": "oom", "error": "x" * 8000}


@pytest.mark.parametrize(
    "change, word",
    [
        ({"op": "delete"}, "op"),
        ({"job_id": "/some/dir"}, "job id"),
        ({"job_id": "../../etc/pas"}, "job id"),
        ({"attempt": "1"}, "attempt"),
        ({"attempt": 0}, "attempt"),
        ({"attempt": True}, "attempt"),
        ({"secret": "short"}, "secret"),
        ({"nonce": "../x"}, "nonce"),
        ({"host": "h\x1b[2J"}, "host"),
        ({"worker": ""}, "worker"),
        ({"body": []}, "body"),
        ({"op": "fail", "body": {"failure": "cancelled"}}, "failure"),
        ({"op": "complete", "body": {"artifact_id": "f" * 64, "trainer_s": float("nan")}}, "trainer_s"),
        ({"op": "complete", "body": {"artifact_id": "../" * 20}}, "artifact_id"),
    ],
)
def test_a_malformed_request_is_refused_whole(change, word):
    with pytest.raises(BadRequest) as err:
        Request.decode(json.dumps({**GOOD, **change}))
    assert word in str(err.value)


@pytest.mark.parametrize("raw", ["", "[]", "{" * 5000, "x" * (70 << 10), '"just a string"'])
def test_what_is_not_a_request_object_is_refused(raw):
    with pytest.raises(BadRequest):
        Request.decode(raw)


def test_progress_keeps_only_well_typed_fields():
    raw = {"phase": "train", "epoch": 3, "epochs": "10", "loss": float("inf"), "metric": 0.5, "eta_s": -1, "elapsed_s": 2, "x": 1, "step": True}
    assert clean_progress(raw) == {"phase": "train", "epoch": 3, "metric": 0.5, "elapsed_s": 2.0}
    assert clean_progress("not a dict") == {} and clean_progress(None) == {}


def test_replies_round_trip_and_a_foreign_one_is_refused():
    reply = Reply(True, "fine", requeued=True)
    assert Reply.decode(reply.encode()) == reply
    with pytest.raises(BadRequest):
        Reply.decode("nope")


def test_job_ids_attempts_and_task_ids():
    assert check_job_id(JOB) == JOB and check_attempt(7) == 7
    assert parse_task_id(task_id(JOB, 7)) == (JOB, 7)
    for bad in ("/etc", JOB.upper(), JOB + "0", 5, None):
        with pytest.raises(BadRequest):
            check_job_id(bad)
    for bad in (f"{JOB}:¹", f"{JOB}:0", f"{JOB}", "x:1", f"{JOB}:1:2"):
        with pytest.raises(BadRequest):
            parse_task_id(bad)


def test_paths_from_outside_stay_inside_their_base(tmp_path):
    base = tmp_path / "work"
    base.mkdir()
    assert inside(base, f"{JOB}-1") == (base / f"{JOB}-1").resolve()
    (base / "link").symlink_to(tmp_path)
    for name in ("/some/dir-1", "../victim-1", ".", "", "link/victim", f"{JOB}/../../x"):
        with pytest.raises(BadRequest):
            inside(base, name)
    assert Path(tmp_path).exists()
