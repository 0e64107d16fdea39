"""The embedded default: a private redis-server, the store, the coordinator and workers on this machine.

`cis490-train run` and the test suite start the fleet's services through these
classes; each owns one child process, waits for it to be ready with a
deadline, and stops exactly the process it started.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import redis

from ..config import Settings
from ..errors import EmbeddedRunError, RedisVersionError
from .redis_binary import RedisBinary, find_redis_server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what: str, ready, proc: subprocess.Popen, timeout: float, log: Path | None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmbeddedRunError(f"{what} exited with code {proc.returncode} while starting{_log_hint(log)}")
        if ready():
            return
        time.sleep(0.05)
    raise EmbeddedRunError(f"{what} not ready after {timeout:.0f}s{_log_hint(log)}")


def _log_hint(log: Path | None) -> str:
    if log is None or not log.exists():
        return ""
    tail = log.read_text(errors="replace").strip().splitlines()[-3:]
    return f" (see {log}: {' | '.join(tail)})" if tail else f" (see {log})"


class Service:
    """One child process we started; stopping it never touches anything else."""

    name = "service"

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None

    def stop(self, timeout: float = 30.0) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class RedisServer(Service):
    """A private redis-server; `binary` defaults to what `find_redis_server` picks (`binary.describe()` says which)."""

    name = "redis-server"

    def __init__(
        self, workdir: Path, port: int | None = None, appendonly: bool = False, acl_file: Path | None = None, binary: RedisBinary | None = None
    ):
        super().__init__()
        self.binary = binary or find_redis_server(Settings.from_env().redis_server)
        self.workdir = workdir
        self.port = port or free_port()
        self.appendonly = appendonly
        self.acl_file = acl_file
        self.log = workdir / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15.0) -> RedisServer:
        if self.acl_file and not self.binary.has_functions:
            raise RedisVersionError(
                f"the fleet's ACL users need Redis 7.0 or newer (functions, ACL selectors); {self.binary.describe()}: "
                "install redis-server 7.0+ or set CIS490_REDIS_SERVER to one"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                str(self.binary.path),
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.workdir),
                "--save", "",
                "--appendonly", "yes" if self.appendonly else "no",
                "--maxmemory-policy", "noeviction",
                "--logfile", str(self.log),
                "--daemonize", "no",
                *(["--aclfile", str(self.acl_file)] if self.acl_file else []),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1)

        def ready() -> bool:
            try:
                return bool(client.ping())
            except redis.AuthenticationError:
                return True  # it answers: the default user is off, as the ACL file says
            except redis.RedisError:
                return False

        _wait(self.name, ready, self.proc, timeout, self.log)
        client.close()
        return self


    def restart(self, timeout: float = 15.0) -> RedisServer:
        """Stop (Redis writes its AOF on SIGTERM) and start again on the same port and directory."""
        self.stop()
        return self.start(timeout)


class StoreServer(Service):
    name = "artifact store"

    def __init__(
        self, root: Path, env: dict[str, str], port: int | None = None, log: Path | None = None, args: tuple[str, ...] = ()
    ):
        super().__init__()
        self.root = root
        self.port = port or free_port()
        self.env = env
        self.log = log or root / "store.log"
        self.args = tuple(args)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> StoreServer:
        self.root.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as logf:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cis490_train", "store", "serve", "--root", str(self.root), "--host", "127.0.0.1", "--port", str(self.port), *self.args],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
            )

        def ready() -> bool:
            try:
                return httpx.get(f"{self.url}/v1/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        _wait(self.name, ready, self.proc, timeout, self.log)
        return self


class CoordinatorProcess(Service):
    name = "coordinator"

    def __init__(self, env: dict[str, str], log: Path):
        super().__init__()
        self.env = env
        self.log = log

    def start(self, timeout: float = 30.0) -> CoordinatorProcess:
        """Start it and wait until it holds the reaper lock (it then also serves requests)."""
        from ..registry import REAPER

        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as logf:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cis490_train", "coordinator"],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
            )
        client = redis.Redis.from_url(self.env["CIS490_BROKER_URL"], socket_connect_timeout=1)

        def ready() -> bool:
            try:
                return (client.get(REAPER) or b"").startswith(f"coordinator-{self.proc.pid}@".encode())
            except redis.RedisError:
                return False

        _wait(self.name, ready, self.proc, timeout, self.log)
        client.close()
        return self


class WorkerProcess(Service):
    name = "celery worker"

    def __init__(self, nodename: str, tiers: str, env: dict[str, str], log: Path, concurrency: int = 1):
        super().__init__()
        self.nodename = nodename
        self.tiers = tiers
        self.env = env
        self.log = log
        self.concurrency = concurrency

    def start(self, registry, timeout: float = 60.0) -> WorkerProcess:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as logf:
            self.proc = subprocess.Popen(
                [
                    sys.executable, "-m", "celery", "-A", "cis490_train", "worker",
                    "-Q", self.tiers, "-n", self.nodename, "-c", str(self.concurrency),
                    "--loglevel", "INFO",
                ],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
            )
        _wait(f"worker {self.nodename}", lambda: self.ready(registry), self.proc, timeout, self.log)
        return self

    def ready(self, registry) -> bool:
        """Registered, and its consumer has started (the sync thread publishes it)."""
        for w in registry.workers():
            if w.name == self.nodename and w.pid == self.proc.pid and w.ready:
                return True
        return False


def child_env(**overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(overrides)
    return env


def new_token() -> str:
    return secrets.token_urlsafe(24)
