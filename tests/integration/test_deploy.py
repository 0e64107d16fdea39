"""The deployment files: install-worker.sh run under a prefix (with a stand-in nvidia-smi and
without one), the systemd units (checked by systemd-analyze and started as systemd would start
them), the Redis drop-in, the Windows installer and docker-compose.yml."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest
import redis
import yaml

from cis490_train.operator.embedded import free_port
from helpers.fleet import ROOT, wait_for, write_capability
from helpers.systemd_units import read_env_file, service_command

DEPLOY = ROOT / "deploy"
INSTALLER = DEPLOY / "install-worker.sh"
WINDOWS_INSTALLER = DEPLOY / "install-worker-windows.ps1"
UNITS = DEPLOY / "systemd"
VENV = Path(sys.prefix)
BROKER = "redis://worker:s3cret-password-123@coordinator:6379/0"
STORE = "http://coordinator:8490"
TOKEN = "tok-0123456789abcdef"
TWO_GPUS = [("NVIDIA RTX A4000", 16376), ("NVIDIA GeForce RTX 3060", 12288)]


def fake_nvidia_smi(bin_dir: Path, gpus, cuda: str = "12.8") -> None:
    """An nvidia-smi that answers the GPU query (as the installer and the capability probe ask it) and its banner."""
    rows = "".join(f"{i}, {name}, {mib}, {mib - 500}\\n" for i, (name, mib) in enumerate(gpus))
    bin_dir.mkdir(parents=True, exist_ok=True)
    smi = bin_dir / "nvidia-smi"
    smi.write_text(
        "#!/bin/sh\n"
        'case "$1" in\n'
        f"  --query-gpu=index,name,memory.total,memory.free) printf '{rows}' ;;\n"
        f"  '') echo '| NVIDIA-SMI 570.86.15   Driver Version: 570.86.15   CUDA Version: {cuda}     |' ;;\n"
        "  *) exit 9 ;;\n"
        "esac\n"
    )
    smi.chmod(0o755)


def _path_without_nvidia_smi() -> str:
    return os.pathsep.join(d for d in os.environ["PATH"].split(os.pathsep) if not (Path(d) / "nvidia-smi").exists())


def secret_file(tmp_path: Path, name: str, value: str) -> str:
    """A file holding one secret on one line, as an operator hands it to the installer."""
    path = tmp_path / "secrets" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(value + "\n")
    path.chmod(0o600)
    return str(path)


def install(tmp_path: Path, *args: str, gpus=None, cuda: str = "12.8", venv: Path | None = VENV, secrets: bool = True, env_extra: dict | None = None):
    """Run the installer under `tmp_path/root`; a stand-in nvidia-smi when `gpus` is given; the
    broker URL and the token from files unless `secrets` is false."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIS490_") and k != "CUDA_VISIBLE_DEVICES"}
    env.update(env_extra or {})
    env["PATH"] = _path_without_nvidia_smi()
    if gpus is not None:
        fake_nvidia_smi(tmp_path / "bin", gpus, cuda)
        env["PATH"] = f"{tmp_path / 'bin'}{os.pathsep}{env['PATH']}"
    cmd = ["bash", str(INSTALLER), "--prefix", str(tmp_path / "root")]
    if venv is not None:
        cmd += ["--venv", str(venv)]
    if secrets:
        cmd += ["--broker-url-file", secret_file(tmp_path, "broker-url", BROKER), "--store-url", STORE, "--token-file", secret_file(tmp_path, "token", TOKEN)]
    return subprocess.run([*cmd, *args], env=env, capture_output=True, text=True, timeout=60)


def unit_dir(tmp_path: Path) -> Path:
    return tmp_path / "root" / "etc" / "systemd" / "system"


def instances(tmp_path: Path) -> dict[str, str]:
    """Worker instance -> its WORKER_QUEUES, from the installer's drop-ins."""
    found = {}
    for dropin in unit_dir(tmp_path).glob("cis490-worker@*.service.d/queues.conf"):
        name = dropin.parent.name.removeprefix("cis490-worker@").removesuffix(".service.d")
        (queues,) = re.findall(r"^Environment=WORKER_QUEUES=(\S+)$", dropin.read_text(), re.M)
        found[name] = queues
    return found


def commands(result) -> list[str]:
    return [line[2:] for line in result.stdout.splitlines() if line.startswith("+ ")]


def systemd_verify(*units: Path) -> subprocess.CompletedProcess:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    return subprocess.run(["systemd-analyze", "verify", *map(str, units)], capture_output=True, text=True, timeout=60)


def render(unit: str, etc: Path, out_dir: Path) -> Path:
    """A shipped unit with this test's venv and settings directory, as an operator installs it."""
    text = (UNITS / unit).read_text().replace("/opt/cis490/venv", str(VENV)).replace("/etc/cis490/", f"{etc}/")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / unit).write_text(text)
    return out_dir / unit


# --- install-worker.sh ------------------------------------------------------------------------


def test_installer_is_valid_bash():
    result = subprocess.run(["bash", "-n", str(INSTALLER)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert os.access(INSTALLER, os.X_OK)


def test_installer_passes_shellcheck():
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    result = subprocess.run(["shellcheck", str(INSTALLER)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_gpu_host_gets_one_worker_per_gpu_with_the_cuda_build(tmp_path):
    result = install(tmp_path, "--data-dir", str(tmp_path / "data"), gpus=TWO_GPUS, cuda="12.8")
    assert result.returncode == 0, result.stderr

    assert instances(tmp_path) == {"0": "cuda,cpu", "1": "cuda,cpu"}
    ran = commands(result)
    pip = f"{VENV}/bin/python -m pip"
    assert f"{pip} install torch==2.13.0+cu128 --index-url https://download.pytorch.org/whl/cu128" in ran
    assert f"{pip} uninstall --yes xgboost-cpu" in ran
    installs = [c for c in ran if c.startswith(f"{pip} install ") and "torch" not in c and "--upgrade" not in c]
    assert installs == [f"{pip} install {ROOT}\\[gpu\\]"]
    assert "systemctl enable --now cis490-worker@0.service cis490-worker@1.service" in ran
    # The self-test is the real capability probe, which found both GPUs through nvidia-smi.
    assert "NVIDIA RTX A4000" in result.stdout and "NVIDIA GeForce RTX 3060" in result.stdout

    unit = (unit_dir(tmp_path) / "cis490-worker@.service").read_text()
    assert f"ExecStart={VENV}/bin/celery -A cis490_train worker -Q ${{WORKER_QUEUES}} -n worker-%i@%H" in unit
    assert "Environment=CUDA_VISIBLE_DEVICES=%i" in unit and "KillMode=mixed" in unit and "User=cis490" in unit
    assert f"EnvironmentFile={tmp_path}/root/etc/cis490/worker.env" in unit
    assert not re.search(r"^PrivateDevices=", unit, re.M)

    env_file = tmp_path / "root" / "etc" / "cis490" / "worker.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert read_env_file(env_file) == {
        "CIS490_BROKER_URL": BROKER,
        "CIS490_STORE_URL": STORE,
        "CIS490_WORKER_TOKEN": TOKEN,
        "CIS490_DATA_DIR": str(tmp_path / "data"),
    }


def test_cpu_host_gets_one_cpu_worker_with_the_cpu_build(tmp_path):
    result = install(tmp_path, "--user", "trainer")
    assert result.returncode == 0, result.stderr

    assert instances(tmp_path) == {"cpu": "cpu"}
    ran = commands(result)
    pip = f"{VENV}/bin/python -m pip"
    assert f"{pip} install torch==2.13.0+cpu --index-url https://download.pytorch.org/whl/cpu" in ran
    assert f"{pip} uninstall --yes xgboost" in ran
    assert f"{pip} install {ROOT}\\[cpu\\]" in ran and not any("[gpu" in c or "\\[gpu" in c for c in ran)
    assert "systemctl enable --now cis490-worker@cpu.service" in ran
    assert "CUDA        none" in result.stdout
    unit = (unit_dir(tmp_path) / "cis490-worker@.service").read_text()
    assert "User=trainer" in unit and "Group=trainer" in unit


@pytest.mark.parametrize("generated", ["gpu", "cpu"])
def test_generated_units_pass_systemd_analyze_verify(tmp_path, generated):
    result = install(tmp_path, gpus=TWO_GPUS if generated == "gpu" else None)
    assert result.returncode == 0, result.stderr
    names = list(instances(tmp_path))
    assert names
    verify = systemd_verify(*(unit_dir(tmp_path) / f"cis490-worker@{name}.service" for name in names))
    assert verify.returncode == 0 and verify.stdout + verify.stderr == "", verify.stdout + verify.stderr


@pytest.mark.parametrize(
    ("cuda", "build"),
    [("12.6", "cu126"), ("12.7", "cu126"), ("12.8", "cu128"), ("12.9", "cu128"), ("13.0", "cu130"), ("13.2", "cu130")],
)
def test_the_driver_cuda_version_picks_the_newest_torch_build_it_runs(tmp_path, cuda, build):
    result = install(tmp_path, gpus=TWO_GPUS[:1], cuda=cuda, venv=None)
    assert result.returncode == 0, result.stderr
    assert f"torch==2.13.0+{build} --index-url https://download.pytorch.org/whl/{build}" in result.stdout
    # Without a venv yet, the dry run counts the GPUs with nvidia-smi.
    assert instances(tmp_path) == {"0": "cuda,cpu"}


def test_a_driver_too_old_for_every_torch_build_is_refused(tmp_path):
    result = install(tmp_path, gpus=TWO_GPUS[:1], cuda="11.8", venv=None)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: the NVIDIA driver supports CUDA 11.8; torch 2.13.0 needs CUDA 12.6 or newer: update the driver, or name a build with --torch-index"
    ]
    assert not unit_dir(tmp_path).exists()


def test_rerunning_keeps_the_env_file_and_retires_workers_of_gone_gpus(tmp_path):
    assert install(tmp_path, gpus=TWO_GPUS).returncode == 0
    env_file = tmp_path / "root" / "etc" / "cis490" / "worker.env"
    env_file.write_text(env_file.read_text() + "CIS490_HOST_ID=lab-ws1\n")  # an operator's edit
    edited = env_file.read_text()

    same = install(tmp_path, gpus=TWO_GPUS)
    assert same.returncode == 0, same.stderr
    assert "wrote " not in same.stdout and "try-restart" not in same.stdout
    assert "systemctl enable --now cis490-worker@0.service cis490-worker@1.service" in commands(same)

    another = secret_file(tmp_path, "another-token", "another-token")
    moved = install(tmp_path, "--token-file", another, secrets=False)
    assert moved.returncode == 0, moved.stderr
    assert env_file.read_text() == edited
    assert f"warning: --token-file {another} was not applied" in moved.stderr
    assert instances(tmp_path) == {"cpu": "cpu"}
    assert not (unit_dir(tmp_path) / "cis490-worker@0.service.d").exists()
    ran = commands(moved)
    assert "systemctl disable --now cis490-worker@0.service" in ran and "systemctl disable --now cis490-worker@1.service" in ran
    assert "systemctl try-restart cis490-worker@cpu.service" in ran
    assert ran.index("systemctl try-restart cis490-worker@cpu.service") < ran.index("systemctl enable --now cis490-worker@cpu.service")


def test_a_plain_dry_run_writes_nothing_and_hides_the_secrets(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIS490_")}
    env["PATH"] = _path_without_nvidia_smi()
    secrets = tmp_path / "secrets"
    files = ["--broker-url-file", secret_file(tmp_path, "broker-url", BROKER), "--token-file", secret_file(tmp_path, "token", TOKEN)]
    result = subprocess.run(
        ["bash", str(INSTALLER), "--dry-run", "--venv", str(tmp_path / "venv"), "--store-url", STORE, *files],
        env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "--- would write /etc/cis490/worker.env (mode 0600):" in result.stdout
    assert "CIS490_BROKER_URL=redis://worker:********@coordinator:6379/0" in result.stdout
    assert "CIS490_WORKER_TOKEN=********" in result.stdout
    assert TOKEN not in result.stdout and "s3cret" not in result.stdout
    assert not (tmp_path / "venv").exists() and list(tmp_path.iterdir()) == [secrets]


@pytest.mark.parametrize(
    ("args", "gpus", "expected"),
    [
        (["--source", "cis490-train==0.1.0"], None, "install cis490-train\\[cpu\\]==0.1.0"),
        (["--source", "git+https://git.example/cis490-train.git"], None, "install cis490-train\\[cpu\\]\\ @\\ git+https://git.example/cis490-train.git"),
        (["--source", "/srv/wheels/cis490_train-0.1.0-py3-none-any.whl"], TWO_GPUS, "install /srv/wheels/cis490_train-0.1.0-py3-none-any.whl\\[gpu\\]"),
        (["--torch-index", "https://mirror.lab/whl/cu126/"], TWO_GPUS, "install torch==2.13.0+cu126 --index-url https://mirror.lab/whl/cu126/"),
        (["--torch-index", "https://mirror.lab/simple"], TWO_GPUS, "install torch==2.13.0 --index-url https://mirror.lab/simple"),
    ],
)
def test_source_and_torch_index_become_pip_requirements(tmp_path, args, gpus, expected):
    result = install(tmp_path, *args, gpus=gpus, venv=None)
    assert result.returncode == 0, result.stderr
    assert any(c.endswith(expected) for c in commands(result)), result.stdout


@pytest.mark.parametrize(
    ("args", "gpus", "message"),
    [
        (["--queues", "gpu"], None, "error: --queues: 'gpu' is not a tier; valid tiers: cpu, cuda, cuda-<N>g (e.g. cuda-8g)"),
        (["--queues", "cuda"], None, "error: --queues cuda: this host has no CUDA device; use --queues cpu"),
        (["--broker-url", "http://coordinator:6379"], None, "error: --broker-url http://coordinator:6379: only redis://, rediss:// or unix:// URLs are supported"),
        (["--frobnicate"], None, "error: unknown option '--frobnicate'; valid:"),
        (["--venv", "relative/venv"], TWO_GPUS, "error: --venv relative/venv: give an absolute path"),
        (["--data-dir"], None, "error: --data-dir needs a value (see --help)"),
        (["--source", "cis490-train[gpu]"], None, "error: --source cis490-train[gpu]: give a directory, a wheel,"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, gpus, message):
    result = install(tmp_path, *args, gpus=gpus, secrets="--broker-url" not in args)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(message)


def test_a_new_host_needs_the_fleet_secrets(tmp_path):
    result = install(tmp_path, "--broker-url-file", secret_file(tmp_path, "broker-url", BROKER), secrets=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"error: {tmp_path}/root/etc/cis490/worker.env does not exist yet: give --store-url URL; --token-file FILE or CIS490_WORKER_TOKEN"
    )
    assert not (tmp_path / "root" / "etc" / "cis490" / "worker.env").exists()


# --- the units, started as systemd starts them -----------------------------------------------


@pytest.mark.integration
def test_the_worker_unit_starts_a_worker_on_its_gpu_and_stops_on_sigterm(tmp_path, redis_url, registry, dataset, home):
    token = secret_file(tmp_path, "token", TOKEN)
    result = install(tmp_path, "--broker-url", redis_url, "--store-url", STORE, "--token-file", token, "--data-dir", str(dataset), gpus=TWO_GPUS, secrets=False)
    assert result.returncode == 0, result.stderr
    units = unit_dir(tmp_path)
    service = service_command(units / "cis490-worker@.service", "1", units / "cis490-worker@1.service.d")
    assert service.env["CUDA_VISIBLE_DEVICES"] == "1" and service.env["CIS490_BROKER_URL"] == redis_url

    # This machine has no GPU: a capability file stands in for the two the host has.
    cap = write_capability(tmp_path / "cap.json", "gpu-host", gpus=[16.0, 12.0])
    base = {k: v for k, v in os.environ.items() if not k.startswith("CIS490_")}
    env = {**base, "HOME": str(home), **service.env}
    env.update(CIS490_CAPABILITY_FILE=str(cap), CIS490_WORK_DIR=str(tmp_path / "work"), CIS490_HEARTBEAT_S="1")
    log = (tmp_path / "worker.log").open("wb")
    proc = subprocess.Popen(service.argv, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    name = f"worker-1@{socket.gethostname()}"
    try:
        worker = wait_for(
            lambda: proc.poll() is None and next((w for w in registry.workers() if w.name == name and w.ready), None),
            60,
            f"{name} to register ({tmp_path / 'worker.log'})",
        )
        assert worker.tiers == ("cuda", "cpu") and worker.host_id == "gpu-host" and worker.pid == proc.pid
        seen = psutil.Process(proc.pid).environ()
        assert seen["CUDA_VISIBLE_DEVICES"] == "1" and seen["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"

        proc.send_signal(signal.SIGTERM)  # KillMode=mixed: the main process alone gets SIGTERM
        assert proc.wait(timeout=60) == 0
        assert all(w.name != name for w in registry.workers())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


@pytest.mark.integration
def test_the_store_unit_serves_on_loopback_with_its_env_file(tmp_path):
    etc = tmp_path / "etc"
    etc.mkdir()
    port = free_port()
    (etc / "store.env").write_text(f"CIS490_WORKER_TOKEN={TOKEN}\nSTORE_PORT={port}\nCIS490_STORE_ROOT={tmp_path / 'store'}\n")
    unit = render("cis490-store.service", etc, tmp_path / "units")
    service = service_command(unit)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CIS490_")}, **service.env}
    proc = subprocess.Popen(service.argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        health = wait_for(lambda: _get_json(f"http://127.0.0.1:{port}/v1/health"), 30, "the store to answer")
        assert health == {"ok": True, "artifacts": 0} and (tmp_path / "store" / ".owner.lock").is_file()
        assert {c.laddr.ip for c in psutil.Process(proc.pid).net_connections("inet") if c.status == "LISTEN"} == {"127.0.0.1"}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.integration
def test_the_flower_unit_needs_basic_auth_and_listens_on_loopback(tmp_path, redis_url):
    etc = tmp_path / "etc"
    etc.mkdir()
    port = free_port()
    (etc / "operator.env").write_text(f"CIS490_BROKER_URL={redis_url}\n")
    (etc / "flower.env").write_text(f"FLOWER_PORT={port}\n")
    unit = render("cis490-flower.service", etc, tmp_path / "units")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CIS490_", "FLOWER_"))}

    unsafe = service_command(unit)
    assert unsafe.argv == [f"{VENV}/bin/cis490-train", "flower"] and unsafe.pre == []
    refused = subprocess.run(unsafe.argv, env={**base, **unsafe.env}, capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert refused.returncode == 2 and refused.stderr.startswith("error: FLOWER_BASIC_AUTH is not set")
    assert re.search(r"^RestartPreventExitStatus=2$", unit.read_text(), re.M)

    (etc / "flower.env").write_text(f"FLOWER_PORT={port}\nFLOWER_BASIC_AUTH=admin:flower-pw\n")
    service = service_command(unit)
    env = {**base, **service.env}
    proc = subprocess.Popen(service.argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _status(f"{url}/healthcheck") == 200, 60, "Flower to answer")
        assert _status(f"{url}/") == 401
        assert _status(f"{url}/", auth=("admin", "flower-pw")) == 200
        assert {c.laddr.ip for c in psutil.Process(proc.pid).net_connections("inet") if c.status == "LISTEN"} == {"127.0.0.1"}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.integration
def test_the_coordinator_unit_takes_the_reaper_lock_with_the_operator_env(tmp_path, registry, redis_url):
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "operator.env").write_text(f"CIS490_BROKER_URL={redis_url}\n")
    unit = render("cis490-coordinator.service", etc, tmp_path / "units")
    service = service_command(unit)
    assert service.argv == [f"{VENV}/bin/cis490-train", "coordinator"]
    assert re.search(r"^Restart=always$", unit.read_text(), re.M) and re.search(r"^RestartPreventExitStatus=2 4$", unit.read_text(), re.M)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CIS490_")}, "HOME": str(tmp_path), **service.env}
    proc = subprocess.Popen(service.argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    try:
        holder = wait_for(registry.reaper, 30, "the coordinator to take the reaper lock")
        assert holder == f"coordinator-{proc.pid}@{socket.gethostname()}"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_shipped_units_pass_systemd_analyze_verify(tmp_path):
    units = [render(unit.name, Path("/etc/cis490"), tmp_path) for unit in sorted(UNITS.glob("*.service"))]
    assert {u.name for u in units} == {
        "cis490-worker@.service",
        "cis490-store.service",
        "cis490-flower.service",
        "cis490-metrics.service",
        "cis490-coordinator.service",
    }
    verify = systemd_verify(*units)
    assert verify.returncode == 0 and verify.stdout + verify.stderr == "", verify.stdout + verify.stderr


def test_the_units_name_their_commands_and_settings():
    metrics = service_command(UNITS / "cis490-metrics.service")
    assert metrics.argv == ["/opt/cis490/venv/bin/cis490-train", "metrics", "serve", "--host", "127.0.0.1", "--port", "9490"]
    worker = (UNITS / "cis490-worker@.service").read_text()
    for line in ("KillMode=mixed", "KillSignal=SIGTERM", "Restart=on-failure", "OOMPolicy=continue", "EnvironmentFile=/etc/cis490/worker.env"):
        assert re.search(rf"^{re.escape(line)}$", worker, re.M), line
    (timeout,) = re.findall(r"^TimeoutStopSec=(\d+)$", worker, re.M)
    assert int(timeout) > 60  # longer than the worker rides out a Redis restart


# --- Redis ------------------------------------------------------------------------------------


def test_the_redis_dropin_verifies_against_the_distribution_unit(tmp_path):
    distro = Path("/lib/systemd/system/redis-server.service")
    if not distro.exists():
        pytest.skip("no redis-server.service from the distribution here")
    shutil.copy(distro, tmp_path / "redis-server.service")
    shutil.copytree(DEPLOY / "redis" / "redis-server.service.d", tmp_path / "redis-server.service.d")
    verify = systemd_verify(tmp_path / "redis-server.service")
    assert verify.returncode == 0 and verify.stdout + verify.stderr == "", verify.stdout + verify.stderr


@pytest.mark.integration
def test_the_redis_dropin_command_starts_the_fleet_config(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    argv = service_command(DEPLOY / "redis" / "redis-server.service.d" / "cis490.conf").argv
    assert argv[:2] == ["/usr/bin/redis-server", "/etc/redis/cis490-redis.conf"]
    pidfile = tmp_path / "redis-server.pid"
    acl = tmp_path / "users.acl"
    acl.write_text("user default on nopass ~* &* +@all\n")
    port = free_port()
    argv = [shutil.which("redis-server"), str(DEPLOY / "redis" / "cis490-redis.conf"), *argv[2:]]
    argv[argv.index("--pidfile") + 1] = str(pidfile)
    argv += ["--port", str(port), "--dir", str(tmp_path), "--aclfile", str(acl)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port)
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() == str(proc.pid), 15, "redis-server to write its pid file")
        assert client.info("persistence")["aof_enabled"] == 1
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    finally:
        proc.terminate()
        proc.wait(timeout=15)


# --- Windows ----------------------------------------------------------------------------------


def test_the_windows_installer_has_the_essentials():
    """Read, not run: this machine has no PowerShell (the next test parses it where pwsh exists)."""
    text = WINDOWS_INSTALLER.read_text()
    assert re.search(r"& \$celery -A cis490_train worker -P threads -c 1 -Q \$Queues", text)
    assert "Register-ScheduledTask" in text and "New-ScheduledTaskTrigger -AtStartup" in text
    assert "-ExecutionTimeLimit ([TimeSpan]::Zero)" in text  # the default would stop a worker after 72 h
    assert re.search(r"^\s*\[switch\]\$DryRun", text, re.M)
    assert '$env:CUDA_VISIBLE_DEVICES = $Instance' in text
    assert '"$TorchIndexBase/cpu"' in text and '"torch==$TorchVersion+cpu"' in text
    assert '$other = if ($Torch.Extra -eq "gpu") { "xgboost-cpu" } else { "xgboost" }' in text
    assert "& $cli capability" in text and "Fail " in text


def test_the_windows_installer_parses_in_powershell():
    pwsh = shutil.which("pwsh")
    if pwsh is None:
        pytest.skip("PowerShell (pwsh) is not installed: the Windows installer is only read, not run, here")
    script = (
        "$errors = $null; [System.Management.Automation.Language.Parser]::ParseFile("
        f"'{WINDOWS_INSTALLER}', [ref]$null, [ref]$errors) | Out-Null; "
        "if ($errors) { $errors | ForEach-Object { $_.ToString() }; exit 1 }"
    )
    result = subprocess.run([pwsh, "-NoProfile", "-Command", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_both_installers_and_the_image_pin_the_same_torch():
    linux = INSTALLER.read_text()
    windows = WINDOWS_INSTALLER.read_text()
    (version,) = re.findall(r"^TORCH_VERSION=(\S+)$", linux, re.M)
    assert f'$TorchVersion = "{version}"' in windows
    (builds,) = re.findall(r"^TORCH_CUDA_BUILDS=\(([\d ]+)\)$", linux, re.M)
    assert f"$TorchCudaBuilds = @({', '.join(builds.split())})" in windows
    assert f"pip install torch=={version} --index-url https://download.pytorch.org/whl/cpu" in (ROOT / "Dockerfile").read_text()


# --- docker compose ---------------------------------------------------------------------------


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_runs_redis_store_coordinator_flower_and_a_cpu_worker_on_one_broker():
    compose = _compose()
    services = compose["services"]
    assert set(services) == {"redis", "store", "coordinator", "flower", "worker"}
    assert services["coordinator"]["command"] == ["cis490-train", "coordinator"]

    command = services["redis"]["command"]
    assert services["redis"]["image"].startswith("redis:7")
    flags = {command[i]: command[i + 1] for i in range(1, len(command) - 1, 2)}
    assert flags["--appendonly"] == "yes" and flags["--maxmemory-policy"] == "noeviction"
    password = flags["--requirepass"]
    assert re.fullmatch(r"\$\{REDIS_PASSWORD:\?[^}]+\}", password)

    apps = ("store", "coordinator", "flower", "worker")
    brokers = {services[s]["environment"]["CIS490_BROKER_URL"] for s in apps}
    assert brokers == {f"redis://:{password}@redis:6379/0"}
    assert {services[s]["environment"]["CIS490_STORE_URL"] for s in apps} == {"http://store:8490"}
    assert {services[s]["image"] for s in apps} == {"cis490-train:local"} and all(services[s]["build"] == "." for s in apps)
    assert "FLOWER_BASIC_AUTH" in services["flower"]["environment"]
    assert "-Q cpu" in services["worker"]["command"][-1]

    for name, service in services.items():
        assert "healthcheck" in service, name
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"

    volumes = {v.split(":")[0]: (name, v.split(":")[1]) for name, s in services.items() for v in s.get("volumes", [])}
    assert set(compose["volumes"]) == set(volumes) == {"redis-data", "store-data", "dataset"}
    assert volumes["redis-data"] == ("redis", "/data") and volumes["store-data"] == ("store", "/store")


def test_the_image_installs_torch_cpu_before_the_package():
    lines = [line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("RUN pip install")]
    assert lines[0] == "RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
    assert lines[1].startswith("RUN pip install '.[cpu]'")
    assert "[gpu]" not in lines[1]


def test_docker_compose_config_accepts_the_file(tmp_path):
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("the docker compose plugin is not installed")
    env = dict(os.environ, REDIS_PASSWORD="abc123", WORKER_TOKEN="tok", FLOWER_BASIC_AUTH="admin:pw")
    result = subprocess.run([docker, "compose", "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def _get_json(url: str):
    try:
        response = httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


def _status(url: str, auth=None) -> int | None:
    try:
        return httpx.get(url, auth=auth, timeout=5).status_code
    except httpx.HTTPError:
        return None
