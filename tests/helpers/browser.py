"""Headless Debian `chromium` for the page tests: the DOM after scripts ran, and screenshots.

Each call is one short-lived browser process with its own profile folder, so
tests never share state with each other or with a desktop browser.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bs4 import BeautifulSoup

NAMES = ("chromium", "chromium-browser")
INSTALL_HINT = "chromium is not installed (Debian/Ubuntu: apt-get install chromium)"


def find_chromium() -> str | None:
    for name in NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def artifacts_dir(fallback: Path) -> Path:
    """Where screenshots go: CIS490_TEST_ARTIFACTS (CI keeps it), else the test's temp folder."""
    chosen = os.environ.get("CIS490_TEST_ARTIFACTS")
    path = Path(chosen) if chosen else fallback
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class Browser:
    binary: str
    profile: Path

    def _run(self, url: str, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
        cmd = [
            self.binary,
            "--headless",
            # The sandbox needs user namespaces that root and most CI containers do not get.
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={self.profile}",
            *args,
            url,
        ]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        assert run.returncode == 0, f"chromium exited with {run.returncode}: {run.stderr[-2000:]}"
        return run

    def dom(self, url: str, budget_ms: int = 5000) -> BeautifulSoup:
        """The page as rendered, after its scripts and requests had `budget_ms` of virtual time."""
        run = self._run(url, "--dump-dom", f"--virtual-time-budget={budget_ms}")
        return BeautifulSoup(run.stdout, "html.parser")

    def screenshot(self, url: str, path: Path, size: tuple[int, int] = (1400, 900), budget_ms: int = 5000) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._run(url, f"--screenshot={path}", f"--window-size={size[0]},{size[1]}", f"--virtual-time-budget={budget_ms}")
        assert path.stat().st_size > 1000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
        return path
