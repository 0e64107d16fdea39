"""Attacks on the operator's terminal and on the fleet's secrets, each replayed against the real
command line (a real Redis, a real installer run, a real Flower) and shown to fail harmlessly.

A worker credential or a corrupted record can put any text in the registry; the manifest refuses
such names, so the hostile records here are written straight into Redis after a normal enqueue.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from rich.console import Console

from cis490_train.operator.embedded import free_port
from cis490_train.core.specs import JobSpec
from cis490_train.registry import JobRecord, log_key
from cis490_train.operator.views import plain, watch_view
from helpers.fleet import ROOT, cli, stop

# What a terminal acts on: ESC (CSI, OSC titles, OSC 8 links), BEL, the 8-bit CSI and a bidi override.
RAW = ("\x1b", "\x07", "\x9b", "\u202e")
NAME_A = "a[/bold]\x1b[2J"
NAME_B = "b\x1b]8;;http://x.test/\x1b\\"
ERROR = "boom[/red]\x1b]0;pwn\x07\nline two \x1b[31m"
HOST = "h\x1b[5m"
WORKER_HOST = "host\x1b]0;pwn\x07"
GPU = "gpu\u202e"
MANIFEST = """schema_version = 1
name = "term"

[defaults]
split_recipe = "sample"

[[jobs]]
name = "a"
model = "gbt"

[[jobs]]
name = "b"
model = "mlp"
"""


def harmless(proc, code: int = 0) -> str:
    """The command ended as `code`, without a traceback, and wrote nothing a terminal would obey."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    for char in RAW:
        assert char not in proc.stdout + proc.stderr, (char, proc.stdout, proc.stderr)
    return proc.stdout


@pytest.fixture
def hostile(fleet_env, redis_url, tmp_path):
    """Jobs `a` (failed) and `b` (completed) enqueued normally, then rewritten with hostile names,
    errors, hosts, attempts, a log stream, a result and a live worker record."""
    manifest = tmp_path / "term.toml"
    manifest.write_text(MANIFEST)
    assert cli(fleet_env, "enqueue", str(manifest)).returncode == 0
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    ids = {json.loads(r.get(f"cis490:op:spec:{i}"))["name"]: i for i in r.smembers("cis490:op:jobs")}
    now = time.time()
    for short, name in (("a", NAME_A), ("b", NAME_B)):
        spec = json.loads(r.get(f"cis490:op:spec:{ids[short]}"))
        r.set(f"cis490:op:spec:{ids[short]}", json.dumps({**spec, "name": name}))
        r.hset(f"cis490:job:{ids[short]}", mapping={"name": name, "host": HOST, "worker": f"w\x1b[2J@{HOST}", "started_at": now - 5, "finished_at": now})
    r.hset(f"cis490:job:{ids['a']}", mapping={"status": "failed", "error": ERROR, "failure": "trainer_error\x1b[8m"})
    attempt = {"attempt": 1, "host": HOST, "worker": "w\x1b[2J", "claimed_at": now - 5, "finished_at": now, "outcome": "failed", "failure": "trainer_error", "error": ERROR}
    r.rpush(f"cis490:job:{ids['a']}:attempts", json.dumps(attempt))
    log = log_key(ids["a"], 1)
    r.xadd(log, {"line": "plain \x1b[2J\tcolumn"})
    r.xadd(log, {"line": json.dumps({"event": "error", "error": "bad\x1b]0;t\x07", "exit_code": 2})})
    r.xadd(log, {"end": "failed", "detail": "why\x1b[2J"})
    metric = {"value": 0.9, "ci_low": 0.8, "ci_high": 0.95}
    result = {"metrics": {"accuracy": metric, "macro_f1": metric, "balanced_accuracy": metric, "f1\x1b[2J": metric}, "baseline": {"accuracy": metric}, "host": HOST}
    r.hset(f"cis490:job:{ids['b']}", mapping={"status": "completed", "result": json.dumps(result), "artifact_id": "\x1b[2J" + "d" * 60})
    worker = {
        "name": "w1@test",
        "host_id": WORKER_HOST,
        "tiers": ["cpu"],
        "queues": ["cpu.gbt", "cpu.x\x1b[2J"],
        "capability": {"host_id": WORKER_HOST, "cpu_cores": 2, "ram_total_gib": 16, "cuda_devices": [{"name": GPU, "vram_total_gib": 8}]},
        "pid": 1,
        "started_at": now,
        "seen_at": now,
        "active": [],
        "ready": True,
    }
    r.set("cis490:worker:w1@test", json.dumps(worker))
    r.sadd("cis490:workers", "w1@test")
    r.close()
    return ids


# --- 1. names, errors and log lines reach the terminal as plain text --------------------------


def test_plain_escapes_every_control_character_and_keeps_the_rest():
    assert plain("lab-ws1 élan 模型 [/bold] :smile:") == "lab-ws1 élan 模型 [/bold] :smile:"
    assert plain("a\x1b[2J\x07\x00\x7f\x9b\u202e\u2028\n\r") == "a\\x1b[2J\\x07\\x00\\x7f\\x9b\\u202e\\u2028\\n\\r"
    assert plain("col\tumn\x1b", keep="\t") == "col\tumn\\x1b"
    assert plain(3) == "3"


def test_status_and_its_views_print_hostile_names_as_text(fleet_env, hostile):
    for args in (("status",), ("status", "--all")):
        out = harmless(cli(fleet_env, *args))
        assert "a[/bold]\\x1b[2J" in out and "h\\x1b[5m" in out, out
        assert "b\\x1b]8;;http://x.test/\\x1b\\" in out and "boom[/red]\\x1b]0;pwn\\x07" in out, out
    # Piped, --watch prints a line per change; --until-done stops at once (exit 1: a job failed).
    out = harmless(cli(fleet_env, "status", "--watch", "--until-done", "--interval", "0.1"), code=1)
    assert "a[/bold]\\x1b[2J: failed on h\\x1b[5m" in out.splitlines(), out
    # --json stays JSON: its own escapes, the names intact once parsed.
    data = json.loads(harmless(cli(fleet_env, "status", "--json")))
    assert {job["name"] for job in data["jobs"]} == {NAME_A, NAME_B}


def test_show_explain_and_operator_commands_print_hostile_records_as_text(fleet_env, hostile):
    out = harmless(cli(fleet_env, "show", hostile["a"]))
    lines = out.splitlines()
    assert lines[0].startswith(f"a[/bold]\\x1b[2J  {hostile['a']}  (term)")
    assert "error       [trainer_error\\x1b[8m] boom[/red]\\x1b]0;pwn\\x07" in lines and "line two \\x1b[31m" in lines
    assert any(line.startswith("attempt 1   h\\x1b[5m (w\\x1b[2J)") and line.endswith("boom[/red]\\x1b]0;pwn\\x07") for line in lines), out
    out = harmless(cli(fleet_env, "show", hostile["b"]))
    assert "artifact    \\x1b[2Jddd" in out, out
    assert any(line.startswith("f1\\x1b[2J ") and line.endswith(" 0.900 [0.800, 0.950]") for line in out.splitlines()), out
    assert json.loads(harmless(cli(fleet_env, "show", hostile["a"], "--json")))["error"] == ERROR

    out = harmless(cli(fleet_env, "explain", hostile["a"]))
    assert out.startswith(f"a[/bold]\\x1b[2J ({hostile['a']}) is failed")
    out = harmless(cli(fleet_env, "cancel", hostile["a"]), code=1)
    assert f"not cancelled a[/bold]\\x1b[2J ({hostile['a']})" in out
    # An error message that quotes a record is escaped too.
    proc = cli(fleet_env, "logs", hostile["a"], "--attempt", "9")
    harmless(proc, code=2)
    assert proc.stderr == "error: --attempt 9: a[/bold]\\x1b[2J (" + hostile["a"] + ") has attempts 1 to 1\n"


def test_logs_escape_the_trainers_control_characters_even_raw(fleet_env, hostile):
    proc = cli(fleet_env, "logs", hostile["a"])
    assert harmless(proc).splitlines() == ["plain \\x1b[2J\tcolumn", "error: bad\\x1b]0;t\\x07 (exit code 2)"]
    assert "[attempt 1 ended: failed: why\\x1b[2J]" in proc.stderr
    # --raw: the lines as written (the JSON one with its own escapes), control characters escaped all the same.
    raw = harmless(cli(fleet_env, "logs", hostile["a"], "--raw")).splitlines()
    assert raw == ["plain \\x1b[2J\tcolumn", '{"event": "error", "error": "bad\\u001b]0;t\\u0007", "exit_code": 2}']


def test_results_and_workers_print_hostile_hosts_as_text(fleet_env, hostile):
    out = harmless(cli(fleet_env, "results"))
    assert "h\\x1b[5m" in out and "\\x1b[2Jdddd" in out, out
    out = harmless(cli(fleet_env, "workers"))
    assert "host\\x1b]0;pwn\\x07" in out and "gpu\\u202e 8 GiB" in out and "cpu.x\\x1b[2J" in out, out
    assert json.loads(harmless(cli(fleet_env, "workers", "--json")))[0]["host_id"] == WORKER_HOST


def test_manifest_diff_and_enqueue_print_hostile_orphans_as_text(fleet_env, hostile, tmp_path):
    other = tmp_path / "other.toml"
    other.write_text(MANIFEST.split("[[jobs]]")[0] + '[[jobs]]\nname = "c"\nmodel = "knn"\n')
    out = harmless(cli(fleet_env, "manifest", "diff", str(other)))
    assert f"  orphan     a[/bold]\\x1b[2J ({hostile['a']}), failed: not in the file; kept until cancelled" in out.splitlines(), out
    out = harmless(cli(fleet_env, "enqueue", str(other)))
    assert "not in manifest (kept until cancelled):" in out and "a[/bold]\\x1b[2J" in out, out


def test_the_live_view_draws_hostile_names_and_progress_as_text():
    spec = JobSpec(name=NAME_A, model="mlp")
    progress = {"phase": "train\x1b[2J", "epoch": 1, "epochs": 4, "metric": 0.5, "metric_name": "f1\x07"}
    record = JobRecord(job_id=spec.job_id, spec=spec, status="running", attempt=1, starts=1, max_attempts=3, queue="cpu.mlp",
                       broker_priority=0, manifest="m", host=HOST, heartbeat_at=99.0, progress=progress)
    console = Console(width=200, record=True, color_system=None)
    console.print(watch_view([record], now=100.0))
    out = console.export_text()
    assert not any(char in out for char in RAW), out
    assert "a[/bold]\\x1b[2J" in out and "train\\x1b[2J 1/4" in out and "f1\\x07 0.500" in out and "h\\x1b[5m" in out, out


# --- 2. the manifest refuses what it would later show raw -------------------------------------

HOSTILE_MANIFEST = r"""schema_version = 1
name = "fleet\u001b]0;pwn\u0007"

[defaults]
train_hosts = ["lab\u202ews1"]

[hosts."pi\u001b[2J"]
description = "Pi"

[hosts.ws]
description = "GPU box\u009b31m"

[[jobs]]
name = "evil\u001b[2J"
model = "gbt"
allowed_hosts = ["ws\u0000"]
denied_hosts = ["%s"]

[[jobs]]
name = "%s"
model = "mlp"
""" % ("h" * 129, "n" * 129)

HOSTILE_PROBLEMS = [
    "  - top level: name holds the non-printable character '\\x1b' at position 5; use printable text",
    "  - [defaults]: train_hosts[0] holds the non-printable character '\\u202e' at position 3; use printable text",
    "  - [hosts.'pi\\x1b[2J']: the host name holds the non-printable character '\\x1b' at position 2; use printable text",
    "  - [hosts.ws]: description holds the non-printable character '\\x9b' at position 7; use printable text",
    "  - job 'evil\\x1b[2J' (jobs[0]): name holds the non-printable character '\\x1b' at position 4; use printable text",
    "  - job 'evil\\x1b[2J' (jobs[0]): allowed_hosts[0] holds the non-printable character '\\x00' at position 2; use printable text",
    "  - job 'evil\\x1b[2J' (jobs[0]): denied_hosts[0] is 129 characters long; at most 128 are allowed",
    f"  - job '{'n' * 40}...' (jobs[1]): name is 129 characters long; at most 128 are allowed",
]


def test_manifest_check_and_enqueue_refuse_control_characters_and_long_names(fleet_env, redis_url, tmp_path):
    path = tmp_path / "hostile.toml"
    path.write_text(HOSTILE_MANIFEST)
    for command in ("manifest check", "enqueue"):
        proc = cli(fleet_env, *command.split(), str(path))
        harmless(proc, code=2)
        assert proc.stderr.splitlines() == [f"error: {path}: {len(HOSTILE_PROBLEMS)} problems", *HOSTILE_PROBLEMS], command
    assert redis.Redis.from_url(redis_url).scard("cis490:op:jobs") == 0
    (report,) = json.loads(harmless(cli(fleet_env, "manifest", "check", "--json", str(path)), code=2))
    assert report["ok"] is False and len(report["problems"]) == len(HOSTILE_PROBLEMS)


def test_names_up_to_the_limit_and_any_printable_text_stay_valid(tmp_path):
    from cis490_train.core.manifest import MAX_NAME, Manifest

    name = "é-模型 [x] :y:" + "n" * (MAX_NAME - 12)
    assert len(name) == MAX_NAME
    text = f'schema_version = 1\nname = "{name}"\n[hosts."{name}"]\ndescription = "{"d" * 512}"\n[[jobs]]\nname = "{name}"\nmodel = "gbt"\ntrain_hosts = ["{name}"]\n'
    manifest = Manifest.from_toml(text)
    assert manifest.name == manifest.jobs[0].name == name and list(manifest.hosts) == [name]


# --- 3. deeply nested TOML is one problem, not a RecursionError --------------------------------


@pytest.mark.parametrize("depth", [40, 3000])
def test_a_deeply_nested_manifest_is_one_problem_through_check_and_enqueue(fleet_env, redis_url, tmp_path, depth):
    path = tmp_path / "deep.toml"
    path.write_text('schema_version = 1\n[[jobs]]\nname = "deep"\nmodel = "gbt"\nhyper = { x = ' + "[" * depth + "]" * depth + " }\n")
    for command in ("manifest check", "enqueue"):
        proc = cli(fleet_env, *command.split(), str(path))
        harmless(proc, code=2)
        assert proc.stderr.splitlines() == [f"error: {path}: 1 problem", "  - nested too deeply: tables and arrays may nest at most 32 levels"], proc.stderr
    assert redis.Redis.from_url(redis_url).scard("cis490:op:jobs") == 0


# --- 4. a set-but-empty CIS490_* variable is an error, not the default -------------------------


def test_an_empty_broker_url_is_refused_before_anything_connects(fleet_env):
    env = dict(fleet_env, CIS490_BROKER_URL="")
    proc = cli(env, "status")
    harmless(proc, code=2)
    assert proc.stdout == ""
    assert proc.stderr == "error: CIS490_BROKER_URL is set but empty: give a value, or unset it to use the default (README, Configuration)\n"
    proc = cli(dict(env, CIS490_DATA_DIR=" "), "enqueue", "missing.toml")
    harmless(proc, code=2)
    assert proc.stderr.startswith("error: CIS490_BROKER_URL, CIS490_DATA_DIR are set but empty: ")


@pytest.mark.parametrize("name", ["CIS490_BROKER_URL", "CIS490_WORKER_TOKEN", "CIS490_HEARTBEAT_S", "CIS490_STORE_ROOT", "CIS490_TYPO"])
def test_every_empty_cis490_variable_is_named(name):
    from cis490_train.config import Settings
    from cis490_train.errors import ConfigError

    with pytest.raises(ConfigError, match=f"^{name} is set but empty: .*unset it to use the default"):
        Settings.from_env({name: ""})


# --- 5. a token file others may read or write is refused --------------------------------------


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o620, 0o604], ids=oct)
def test_a_loose_worker_token_file_is_refused_with_the_chmod_to_run(fleet_env, tmp_path, mode):
    from cis490_train.config import Settings, ensure_store_token
    from cis490_train.errors import ConfigError

    root = tmp_path / "store"
    root.mkdir()
    token = root / ".worker-token"
    token.write_text("planted-token\n")
    token.chmod(mode)
    hint = f"run `chmod 600 {token}`"
    with pytest.raises(ConfigError, match=f"mode {mode:04o}\\): {hint}"):
        ensure_store_token(root)
    with pytest.raises(ConfigError, match=hint):
        Settings.from_env({"CIS490_STORE_ROOT": str(root)})
    env = {k: v for k, v in fleet_env.items() if k != "CIS490_WORKER_TOKEN"}
    proc = cli(env, "store", "serve", "--root", str(root), "--port", str(free_port()), timeout=60)
    harmless(proc, code=2)
    assert proc.stderr == f"error: {token} is open to group or others (mode {mode:04o}): {hint}, or set CIS490_WORKER_TOKEN\n"

    token.chmod(0o600)
    assert ensure_store_token(root) == "planted-token"
    assert Settings.from_env({"CIS490_STORE_ROOT": str(root)}).worker_token == "planted-token"


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
def test_the_token_file_the_store_makes_is_private_and_read_back(tmp_path):
    from cis490_train.config import Settings, ensure_store_token

    old = os.umask(0)  # the file's mode is the code's, not the umask's
    try:
        made = ensure_store_token(tmp_path / "store")
    finally:
        os.umask(old)
    assert (tmp_path / "store" / ".worker-token").stat().st_mode & 0o777 == 0o600
    assert Settings.from_env({"CIS490_STORE_ROOT": str(tmp_path / "store")}).worker_token == made


# --- 6. the installers take no secret on the command line --------------------------------------

INSTALLER = ROOT / "deploy" / "install-worker.sh"
PASSWORD = "pw-0f9e8d7c6b5a"
SECRET_TOKEN = "tok-5a6b7c8d9e0f"
SECRET_BROKER = f"redis://worker:{PASSWORD}@coordinator:6379/0"


def run_installer(tmp_path: Path, *args: str, env: dict[str, str] | None = None):
    """install-worker.sh under a prefix (files written there, no command run), as a CPU host."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("CIS490_")}
    base["PATH"] = os.pathsep.join(d for d in base["PATH"].split(os.pathsep) if not (Path(d) / "nvidia-smi").exists())
    cmd = ["bash", str(INSTALLER), "--prefix", str(tmp_path / "root"), "--store-url", "http://coordinator:8490", *args]
    return cmd, subprocess.run(cmd, env={**base, **(env or {})}, capture_output=True, text=True, timeout=60)


def secret(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(0o600)
    return str(path)


def worker_env(tmp_path: Path) -> Path:
    return tmp_path / "root" / "etc" / "cis490" / "worker.env"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--token", SECRET_TOKEN], "error: --token puts the token on the command line, which ps shows to every user: "),
        ([f"--token={SECRET_TOKEN}"], "error: --token puts the token on the command line, which ps shows to every user: "),
        (["--broker-url", SECRET_BROKER], "error: --broker-url carries a password, which ps shows to every user: "),
        (["--broker-url", f"redis://:{PASSWORD}@coordinator:6379/0"], "error: --broker-url carries a password"),
        (["--broker-url", f"rediss://coordinator:6379/0?password={PASSWORD}"], "error: --broker-url carries a password"),
        ([f"--broker-url={SECRET_BROKER}"], "error: unknown option '--broker-url'"),
    ],
)
def test_a_secret_on_the_installers_command_line_is_refused_without_echoing_it(tmp_path, args, message):
    _, proc = run_installer(tmp_path, *args)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(message), line
    assert "--token-file FILE" in line or "--broker-url-file FILE" in line or "unknown option" in line
    assert SECRET_TOKEN not in proc.stdout + proc.stderr and PASSWORD not in proc.stdout + proc.stderr
    assert not worker_env(tmp_path).exists()


def test_the_installer_reads_the_secrets_from_files_or_the_environment(tmp_path):
    from helpers.systemd_units import read_env_file

    files = tmp_path / "files"
    files.mkdir()
    cmd, proc = run_installer(files, "--broker-url-file", secret(files, "url", f"\n  {SECRET_BROKER}\r\n\n"), "--token-file", secret(files, "token", SECRET_TOKEN))
    assert proc.returncode == 0, proc.stderr
    assert not any(SECRET_TOKEN in arg or PASSWORD in arg for arg in cmd)  # what ps shows
    assert SECRET_TOKEN not in proc.stdout + proc.stderr and PASSWORD not in proc.stdout + proc.stderr
    settings = read_env_file(worker_env(files))
    assert (settings["CIS490_BROKER_URL"], settings["CIS490_WORKER_TOKEN"]) == (SECRET_BROKER, SECRET_TOKEN)

    exported = tmp_path / "exported"
    exported.mkdir()
    cmd, proc = run_installer(exported, env={"CIS490_BROKER_URL": SECRET_BROKER, "CIS490_WORKER_TOKEN": SECRET_TOKEN})
    assert proc.returncode == 0, proc.stderr
    assert not any(SECRET_TOKEN in arg or PASSWORD in arg for arg in cmd)
    settings = read_env_file(worker_env(exported))
    assert (settings["CIS490_BROKER_URL"], settings["CIS490_WORKER_TOKEN"]) == (SECRET_BROKER, SECRET_TOKEN)

    # A URL without a password may still be given as it is.
    plain_url = tmp_path / "plain"
    plain_url.mkdir()
    _, proc = run_installer(plain_url, "--broker-url", "redis://coordinator:6379/0", "--token-file", secret(plain_url, "token", SECRET_TOKEN))
    assert proc.returncode == 0, proc.stderr
    assert read_env_file(worker_env(plain_url))["CIS490_BROKER_URL"] == "redis://coordinator:6379/0"


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: (["--token-file", str(d / "missing")], {}), "error: --token-file {d}/missing: not a readable file"),
        (lambda d: (["--token-file", secret(d, "two", "a\nb\n")], {}), "error: --token-file {d}/two: the file holds more than one line"),
        (lambda d: (["--token-file", secret(d, "blank", "\n \n")], {}), "error: --token-file {d}/blank: the file is empty"),
        (lambda d: ([], {"CIS490_WORKER_TOKEN": ""}), "error: CIS490_WORKER_TOKEN is set but empty"),
        (lambda d: (["--broker-url-file", secret(d, "url", f"http://worker:{PASSWORD}@x:6379")], {}), "error: --broker-url-file {d}/url: only redis://"),
    ],
)
def test_bad_secret_files_and_variables_are_one_line_that_hides_the_value(tmp_path, setup, message):
    args, env = setup(tmp_path)
    _, proc = run_installer(tmp_path, *args, env=env)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(message.format(d=tmp_path)), line
    assert PASSWORD not in line and not worker_env(tmp_path).exists()


def test_the_windows_installer_takes_its_secrets_from_files_or_the_environment():
    """Read, not run (no PowerShell here): the same parameters and refusals as install-worker.sh."""
    text = (ROOT / "deploy" / "install-worker-windows.ps1").read_text()
    assert '[string]$BrokerUrlFile = ""' in text and '[string]$TokenFile = ""' in text
    assert 'Read-ValueFile "-TokenFile" $TokenFile' in text and 'Read-ValueFile "-BrokerUrlFile" $BrokerUrlFile' in text
    assert "$script:Token = $env:CIS490_WORKER_TOKEN" in text and "$script:BrokerUrl = $env:CIS490_BROKER_URL" in text
    assert 'if ($Token) { Fail "-Token puts the token on the command line' in text
    assert "Fail \"-BrokerUrl carries a password" in text
    main = text[text.rindex("\nRead-Secrets\n"):]
    assert main.index("Read-Secrets") < main.index("Assert-Input") < main.index("Write-WorkerEnv")
    assert "-Token TOKEN" not in text and "-BrokerUrl redis://worker:PASSWORD@" not in text


# --- 7. Flower only on loopback, only with a password ------------------------------------------


def flower_env(fleet_env: dict[str, str], **extra: str) -> dict[str, str]:
    return {**{k: v for k, v in fleet_env.items() if not k.startswith("FLOWER_")}, **extra}


@pytest.mark.parametrize("auth", [None, "", " , ", "admin-without-password", ":pw", "admin:"])
def test_flower_refuses_to_start_without_basic_auth(fleet_env, auth):
    env = flower_env(fleet_env) if auth is None else flower_env(fleet_env, FLOWER_BASIC_AUTH=auth)
    proc = cli(env, "flower", "--port", str(free_port()), timeout=60)
    harmless(proc, code=2)
    (line,) = proc.stderr.splitlines()
    assert line.startswith(("error: FLOWER_BASIC_AUTH is not set: export FLOWER_BASIC_AUTH=user:password", "error: FLOWER_BASIC_AUTH must be user:password")), line
    assert proc.stdout == ""


def test_flower_refuses_credentials_and_addresses_among_its_own_options(fleet_env):
    env = flower_env(fleet_env, FLOWER_BASIC_AUTH="admin:pw-1")
    for extra, message in (
        ("--basic-auth=admin:pw-2", "error: --basic-auth would put the password on the command line"),
        ("--basic_auth=admin:pw-2", "error: --basic-auth would put the password on the command line"),
        ("--address=0.0.0.0", "error: --address goes before --"),
    ):
        proc = cli(env, "flower", "--", extra, timeout=60)
        harmless(proc, code=2)
        assert proc.stderr.startswith(message) and "pw-2" not in proc.stderr, proc.stderr


def test_flower_listens_on_loopback_only_and_answers_401_without_the_password(fleet_env, tmp_path):
    import secrets

    import httpx
    import psutil

    from helpers.fleet import wait_for

    password = secrets.token_urlsafe(12)
    port = free_port()
    log = tmp_path / "flower.log"
    with log.open("w") as out:
        # Run where no flowerconfig.py lies; the port alone is given, the address is the default.
        proc = subprocess.Popen(
            [sys.executable, "-m", "cis490_train", "flower", "--port", str(port)],
            env=flower_env(fleet_env, FLOWER_BASIC_AUTH=f"admin:{password}"), cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"

    def status(path: str, auth=None, method: str = "GET") -> int | None:
        assert proc.poll() is None, f"flower exited: {log.read_text()[-2000:]}"
        try:
            return httpx.request(method, f"{base}{path}", auth=auth, timeout=5).status_code
        except httpx.TransportError:
            return None

    try:
        wait_for(lambda: status("/healthcheck") == 200, 60, f"flower to answer ({log})")
        for path in ("/", "/tasks", "/api/workers"):
            assert status(path) == 401, path
        assert status("/api/task/revoke/x", method="POST") == 401  # what an intruder would do with it
        assert status("/", auth=("admin", "wrong")) == 401
        assert status("/", auth=("admin", password)) == 200
        flower = psutil.Process(proc.pid)  # the command became Flower itself
        assert {c.laddr.ip for c in flower.net_connections("inet") if c.status == psutil.CONN_LISTEN} == {"127.0.0.1"}
        assert "flower" in flower.cmdline() and not any(password in arg for arg in flower.cmdline())
    finally:
        stop(proc)
