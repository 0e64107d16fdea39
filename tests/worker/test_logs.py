"""`cis490-train logs`: the trainer's output shipped to Redis by a real worker, read back from the CLI."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis

from cis490_train.core import events
from cis490_train.worker import logship
from cis490_train.operator.embedded import RedisServer, free_port
from cis490_train.registry import Registry, log_key
from helpers.fleet import cli, wait_for

pytestmark = pytest.mark.integration

SAMPLE = 'split_recipe = "sample"\nn_resamples = 100\n'


def manifest(tmp_path: Path, body: str, name: str = "logs") -> str:
    path = tmp_path / f"{name}.toml"
    path.write_text(f'schema_version = 1\nname = "{name}"\n{body}')
    return str(path)


def mlp_job(name: str, epochs: int) -> str:
    return f'[[jobs]]\nname = "{name}"\nmodel = "mlp"\n{SAMPLE}hyper = {{ epochs = {epochs}, batch_size = 16, early_stopping = false }}\n'


def test_logs_print_the_failed_attempts_output_exactly_as_its_local_log(fleet_env, registry, store, start_worker, tmp_path):
    start_worker("box", "cpu")
    body = '[[jobs]]\nname = "no-such-host"\nmodel = "gbt"\nn_resamples = 100\ntrain_hosts = ["nobody-laptop"]\n'
    assert cli(fleet_env, "enqueue", manifest(tmp_path, body)).returncode == 0
    job = wait_for(lambda: (j := registry.find("no-such-host")).status == "failed" and j, 60, "the job to fail")

    raw = cli(fleet_env, "logs", "no-such-host", "--raw")
    assert raw.returncode == 0, raw.stderr
    local = (Path(fleet_env["CIS490_WORK_DIR"]) / f"{job.job_id}-1" / "train.log").read_text()
    assert raw.stdout == local and "nobody-laptop" in local
    assert "[attempt 1 ended: failed: trainer_error: trainer exited with code 2]" in raw.stderr

    words = cli(fleet_env, "logs", job.job_id[:6])
    assert words.returncode == 0
    assert words.stdout.startswith("start: gbt / realistic / split host, seed 0, 1 thread, pid ")
    assert '{"event"' not in words.stdout
    assert "error: " in words.stdout and "nobody-laptop" in words.stdout


def test_logs_refuse_an_unknown_job_or_attempt_in_one_line(fleet_env, registry, tmp_path):
    assert cli(fleet_env, "enqueue", manifest(tmp_path, mlp_job("waits", 1))).returncode == 0
    for args, message in (
        (("logs", "nosuch"), "no job 'nosuch' in the registry"),
        (("logs", "waits", "--attempt", "2"), "--attempt 2: waits"),
        (("logs", "waits", "--attempt", "0"), "has attempts 1 to 1"),
    ):
        proc = cli(fleet_env, *args)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    pending = cli(fleet_env, "logs", "waits")
    assert pending.returncode == 0 and pending.stdout == ""
    assert "no output recorded for attempt 1 of waits" in pending.stderr and "not started yet" in pending.stderr


def test_follow_exits_when_the_job_completes_and_attempt_picks_the_cancelled_one(fleet_env, registry, store, start_worker, tmp_path):
    start_worker("box", "cpu")
    assert cli(fleet_env, "enqueue", manifest(tmp_path, mlp_job("twice", 60))).returncode == 0
    first = wait_for(lambda: (j := registry.find("twice")).status == "running" and j.progress.get("epochs") and j, 60, "attempt 1 to train")
    assert cli(fleet_env, "cancel", "twice").returncode == 0
    wait_for(lambda: any(events.END in f for _, f in registry.log_entries(first.job_id, 1)), 30, "attempt 1's end entry")
    assert cli(fleet_env, "requeue", "twice").returncode == 0
    wait_for(lambda: (j := registry.find("twice")).status == "running" and j.attempt == 2, 60, "attempt 2 to run")

    follow = subprocess.Popen(
        [sys.executable, "-m", "cis490_train", "logs", "twice", "-f", "--progress"],
        env=fleet_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        got: list[str] = []
        reader = threading.Thread(target=lambda: got.append(follow.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout=30)
        assert got, "logs -f printed nothing within 30 s"
        first_line = got[0]
        assert first_line.startswith("start: mlp"), first_line
        assert registry.find("twice").status == "running", "the job ended before logs -f was following it"
        rest, err = follow.communicate(timeout=120)
    finally:
        follow.kill()
    assert follow.returncode == 0, err
    assert registry.find("twice").status == "completed"
    lines = rest.splitlines()
    assert lines[-1] == "done: wrote report.json"
    assert any(line.startswith("progress: train 60/60") for line in lines)
    assert "[attempt 2 ended: completed]" in err and "Traceback" not in err

    past = cli(fleet_env, "logs", "twice", "--attempt", "1", "--progress")
    assert past.returncode == 0
    assert past.stdout.startswith("start: mlp") and "done:" not in past.stdout
    assert "progress: train 60/60" not in past.stdout
    assert "[attempt 1 ended: cancelled: cancelled by operator]" in past.stderr
    pid = lambda text: text.splitlines()[0].rsplit("pid ", 1)[1]  # noqa: E731
    assert pid(past.stdout) != pid(first_line)


def test_status_watch_draws_a_bar_in_a_terminal_and_exits_0_on_ctrl_c(fleet_env, registry, store, start_worker, tmp_path):
    import os
    import pty
    import re
    import select
    import signal

    start_worker("box", "cpu")
    assert cli(fleet_env, "enqueue", manifest(tmp_path, mlp_job("watched", 2000))).returncode == 0
    wait_for(lambda: (j := registry.find("watched")).status == "running" and j.progress.get("epochs"), 60, "the job to train")

    controller, terminal = pty.openpty()
    env = dict(fleet_env, COLUMNS="220", LINES="40", TERM="xterm-256color")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cis490_train", "status", "--watch", "--interval", "0.5"],
        env=env, stdin=terminal, stdout=terminal, stderr=terminal, close_fds=True,
    )
    os.close(terminal)
    seen = b""
    bar = re.compile(r"watched.*[━╸─]{12} \d+% train \d+/2000")
    try:
        deadline = time.monotonic() + 30
        while not bar.search(_plain(seen)) and time.monotonic() < deadline:
            if select.select([controller], [], [], 0.2)[0]:
                seen += os.read(controller, 65536)
        assert bar.search(_plain(seen)), _plain(seen)[-2000:]
        proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if select.select([controller], [], [], 0.2)[0]:
                try:
                    chunk = os.read(controller, 65536)
                except OSError:  # the terminal's other side closed: the command has exited
                    break
                seen += chunk
            elif proc.poll() is not None:
                break
        rc = proc.wait(timeout=1)
    finally:
        proc.kill()
        os.close(controller)
    assert rc == 0
    assert "Traceback" not in _plain(seen) and "KeyboardInterrupt" not in _plain(seen)


def test_status_watch_refuses_bad_arguments_in_one_line(fleet_env):
    for args, message in (
        (("--watch", "--interval", "0"), "--interval 0: give a number of seconds above 0"),
        (("--until-done",), "--interval and --until-done go with --watch"),
        (("--watch", "--json"), "--json prints one snapshot"),
        (("--limit", "0"), "--limit 0: give a number of rows above 0"),
    ):
        proc = cli(fleet_env, "status", *args)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def _plain(raw: bytes) -> str:
    """Terminal output without its escape sequences."""
    import re

    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw.decode("utf-8", "replace"))


def loaded(url: str) -> str:
    """A Redis with the fleet's functions, as the coordinator (or any operator command) leaves it."""
    Registry(url).load_functions()
    return url


def test_shipper_caps_the_stream_keeps_the_newest_lines_and_expires(redis_url):
    loaded(redis_url)
    shipper = logship.LogShipper(redis_url, "cafe", 1, max_lines=200, keep_s=60).start()
    started = time.perf_counter()
    for i in range(5000):
        shipper.add(f"line {i}")
    queued = time.perf_counter() - started
    shipper.close("completed")
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    key = log_key("cafe", 1)
    entries = r.xrange(key)
    assert 200 <= len(entries) < 5000  # MAXLEN ~ trims whole nodes: about the cap, never far below
    assert entries[-1][1] == {events.END: "completed", events.DETAIL: ""}
    assert entries[-2][1] == {events.LINE: "line 4999"}
    assert 0 < r.ttl(key) <= 60
    assert queued < 1.0, f"queueing 5000 lines took {queued:.2f}s"


def test_shipper_keeps_a_progress_line_per_change_and_one_per_period(redis_url):
    now = [0.0]
    loaded(redis_url)
    shipper = logship.LogShipper(redis_url, "beef", 2, max_lines=1000, keep_s=60, clock=lambda: now[0]).start()
    tick = '{"event": "progress", "phase": "train", "epoch": %d, "metric": %s}'
    for epoch, metric, at in ((1, "null", 0.0), (1, "null", 1.0), (1, "null", 9.0), (1, "0.5", 9.5), (1, "0.5", 19.6), (2, "null", 19.7)):
        now[0] = at
        text = tick % (epoch, metric)
        shipper.add(text, events.parse_event(text))
    shipper.add("a warning")
    shipper.close("completed")
    kept = [f.get(events.LINE) for _, f in redis.Redis.from_url(redis_url, decode_responses=True).xrange(log_key("beef", 2))]
    assert kept == [tick % (1, "null"), tick % (1, "0.5"), tick % (1, "0.5"), tick % (2, "null"), "a warning", None]


def test_shipper_rides_out_a_redis_restart_and_never_raises(tmp_path):
    port = free_port()
    server = RedisServer(tmp_path / "r1", port=port).start()
    loaded(server.url)
    shipper = logship.LogShipper(server.url, "f00d", 1, max_lines=100, keep_s=60, flush_s=0.05).start()
    try:
        shipper.add("before")
        r = redis.Redis.from_url(server.url, decode_responses=True)
        wait_for(lambda: r.xlen(log_key("f00d", 1)) == 1, 10, "the first line in Redis")
        server.stop()
        started = time.perf_counter()
        for i in range(150):
            shipper.add(f"during {i}")
        assert time.perf_counter() - started < 0.5
        wait_for(lambda: shipper.failing, 10, "a write to fail while Redis is down")
        server = RedisServer(tmp_path / "r2", port=port).start()
        loaded(server.url)
        r = redis.Redis.from_url(server.url, decode_responses=True)
        wait_for(lambda: r.xlen(log_key("f00d", 1)) >= 100, 15, "the waiting lines once Redis is back")
        shipper.close("completed")
        entries = [f for _, f in r.xrange(log_key("f00d", 1))]
        assert entries[0] == {events.LOST: "50"}  # 150 waited, the cap is 100: the oldest 50 are said to be lost
        assert [f[events.LINE] for f in entries[1:101]] == [f"during {i}" for i in range(50, 150)]
        assert entries[-1][events.END] == "completed"
    finally:
        server.stop()


def test_shipper_against_a_dead_redis_gives_up_quietly(tmp_path):
    shipper = logship.LogShipper(f"redis://127.0.0.1:{free_port()}/0", "dead", 1, max_lines=10, keep_s=60, flush_s=0.05).start()
    for i in range(100):
        shipper.add(f"line {i}")
    started = time.perf_counter()
    shipper.close("completed")
    assert time.perf_counter() - started < logship.CLOSE_WAIT_S + 1
