"""Every setting, read from the environment in one place.

The defaults work on one machine: a Redis on localhost, the store on
localhost:8490, data and artifacts under the user's XDG directories.
"""

from __future__ import annotations

import os
import secrets
import shlex
import stat
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

TOKEN_FILE = ".worker-token"


def _xdg(env: dict[str, str], var: str, fallback: str) -> Path:
    base = env.get(var)
    return Path(base) if base else Path.home() / fallback


def _number(env: dict[str, str], name: str, default: float, low: float, kind: type = float) -> float:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not {'an integer' if kind is int else 'a number'}") from None
    if value < low:
        raise ConfigError(f"{name}={raw!r} must be >= {low:g}")
    return value


def _refuse_empty(env: dict[str, str]) -> None:
    """A set-but-empty CIS490_* variable is a mistake, not a request for the default: an empty
    CIS490_BROKER_URL would send a manifest to whatever Redis runs on 127.0.0.1:6379."""
    empty = sorted(name for name, value in env.items() if name.startswith("CIS490_") and not value.strip())
    if empty:
        names = ", ".join(empty)
        it = "it" if len(empty) == 1 else "them"
        raise ConfigError(f"{names} {'is' if len(empty) == 1 else 'are'} set but empty: give a value, or unset {it} to use the default (README, Configuration)")


def _command(env: dict[str, str], name: str) -> tuple[str, ...]:
    raw = env.get(name, "")
    try:
        return tuple(shlex.split(raw))
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r} is not a command line: {exc}") from None


@dataclass(frozen=True)
class Settings:
    broker_url: str
    result_backend: str
    store_url: str
    store_root: Path
    worker_token: str | None
    configured_token: str | None
    data_dir: Path
    data_dir_configured: bool
    work_dir: Path
    host_id: str | None
    capability_file: Path | None
    heartbeat_s: float
    stale_after_s: float
    vram_wait_s: float
    max_upload_bytes: int
    log_lines: int = 10_000
    log_keep_s: float = 7 * 86400.0
    operator_password: str | None = None
    worker_password: str | None = None
    trainer_wrapper: tuple[str, ...] = ()
    redis_server: Path | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        _refuse_empty(env)
        broker = env.get("CIS490_BROKER_URL") or "redis://127.0.0.1:6379/0"
        if not broker.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(f"CIS490_BROKER_URL={broker!r}: only redis://, rediss:// or unix:// URLs are supported")
        store_root = Path(env.get("CIS490_STORE_ROOT") or _xdg(env, "XDG_DATA_HOME", ".local/share") / "cis490" / "store")
        cap = env.get("CIS490_CAPABILITY_FILE")
        heartbeat = _number(env, "CIS490_HEARTBEAT_S", 5.0, 0.1)
        stale = _number(env, "CIS490_STALE_AFTER_S", 15.0, 0.5)
        if stale <= 2 * heartbeat:
            raise ConfigError(
                f"CIS490_STALE_AFTER_S={stale:g} must be more than twice CIS490_HEARTBEAT_S={heartbeat:g}, "
                "or a slow heartbeat would look like a lost worker"
            )
        return cls(
            broker_url=broker,
            result_backend=env.get("CIS490_RESULT_BACKEND") or broker,
            store_url=(env.get("CIS490_STORE_URL") or "http://127.0.0.1:8490").rstrip("/"),
            store_root=store_root,
            worker_token=env.get("CIS490_WORKER_TOKEN") or _token_from_file(store_root),
            configured_token=env.get("CIS490_WORKER_TOKEN") or None,
            data_dir=Path(env.get("CIS490_DATA_DIR") or _xdg(env, "XDG_CACHE_HOME", ".cache") / "cis490" / "data" / "synthetic"),
            data_dir_configured=bool(env.get("CIS490_DATA_DIR")),
            work_dir=Path(env.get("CIS490_WORK_DIR") or _xdg(env, "XDG_CACHE_HOME", ".cache") / "cis490" / "work"),
            host_id=env.get("CIS490_HOST_ID") or None,
            capability_file=Path(cap) if cap else None,
            heartbeat_s=heartbeat,
            stale_after_s=stale,
            vram_wait_s=_number(env, "CIS490_VRAM_WAIT_S", 30.0, 0.0),
            max_upload_bytes=_number(env, "CIS490_STORE_MAX_BYTES", 64 << 30, 1, int),
            log_lines=_number(env, "CIS490_LOG_LINES", 10_000, 0, int),
            log_keep_s=_number(env, "CIS490_LOG_KEEP_S", 7 * 86400.0, 1),
            operator_password=env.get("CIS490_OPERATOR_PASSWORD") or None,
            worker_password=env.get("CIS490_WORKER_PASSWORD") or None,
            trainer_wrapper=_command(env, "CIS490_TRAINER_WRAPPER"),
            redis_server=Path(env["CIS490_REDIS_SERVER"]) if env.get("CIS490_REDIS_SERVER") else None,
        )

    def store_token(self, root: Path) -> str:
        """The token a store at `root` checks: CIS490_WORKER_TOKEN, else the one kept beside its data."""
        return self.configured_token or ensure_store_token(root)


def _token_from_file(store_root: Path) -> str | None:
    """A store started without a token writes one beside its data; same-machine clients read it.

    A token file others may read or write is refused, not adopted: anyone who can read it can
    upload as a worker, and anyone who can write it chooses the token."""
    path = store_root / TOKEN_FILE
    try:
        with path.open() as f:
            mode = os.fstat(f.fileno()).st_mode
            if os.name != "nt" and mode & 0o077:
                raise ConfigError(
                    f"{path} is open to group or others (mode {stat.S_IMODE(mode):04o}): run `chmod 600 {shlex.quote(str(path))}`, or set CIS490_WORKER_TOKEN"
                )
            return f.read().strip() or None
    except OSError:
        return None


def ensure_store_token(store_root: Path) -> str:
    """The token a store started without CIS490_WORKER_TOKEN uses: made once, kept 0600."""
    existing = _token_from_file(store_root)
    if existing:
        return existing
    store_root.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    path = store_root / TOKEN_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _token_from_file(store_root) or ensure_store_token(store_root)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token
