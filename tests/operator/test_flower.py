"""Flower shows each job's task live (PROGRESS with epoch and loss) and its final state.

A real worker, a real Flower started as the README says (`cis490-train flower`, on loopback
behind basic auth), and the pages as headless chromium renders them.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import sys

import httpx
import pytest

from cis490_train.operator.embedded import free_port
from helpers.browser import artifacts_dir
from helpers.fleet import cli, stop, wait_for

pytestmark = pytest.mark.integration

MANIFEST = """
schema_version = 1
name = "flower"

[defaults]
split_recipe = "sample"
n_resamples = 100

[[jobs]]
name = "long-mlp"
model = "mlp"
priority = 10
hyper = { epochs = 100000, early_stopping = false }

[[jobs]]
name = "quick-gbt"
model = "gbt"
hyper = { n_estimators = 5 }
"""


@pytest.fixture
def flower(fleet_env, tmp_path):
    """Flower on a free loopback port, basic auth from FLOWER_BASIC_AUTH, run where no flowerconfig.py lies."""
    user, password = "operator", secrets.token_urlsafe(12)
    port = free_port()
    env = dict(
        fleet_env,
        FLOWER_BASIC_AUTH=f"{user}:{password}",
        FLOWER_TASKS_COLUMNS="name,uuid,state,result,received,runtime,worker",
    )
    log = tmp_path / "flower.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cis490_train", "flower", "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert proc.poll() is None, f"flower exited: {log.read_text()[-2000:]}"
        try:
            return httpx.get(f"{base}/healthcheck", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(ready, 60, "flower to answer")
        yield base, (user, password), f"http://{user}:{password}@127.0.0.1:{port}"
    finally:
        stop(proc)


def field(dom, label: str) -> str:
    """The text of a row of Flower's task page, found by its label."""
    dt = dom.find("dt", string=label)
    assert dt is not None, f"no {label!r} on the page: {dom.get_text(' ', strip=True)[:500]}"
    return dt.find_next_sibling("dd").get_text(" ", strip=True)


def flower_state(base: str, auth: tuple[str, str], task_id: str) -> str:
    page = httpx.get(f"{base}/task/{task_id}", auth=auth, timeout=5)
    if page.status_code != 200:
        return ""
    badge = re.search(r'<span class="badge[^"]*">([A-Z]+)</span>', page.text)
    return badge.group(1) if badge else ""


def test_flower_shows_progress_and_final_state_behind_basic_auth(browser, fleet_env, registry, store, start_worker, flower, tmp_path):
    base, auth, authed = flower
    for url in (f"{base}/", f"{base}/tasks", f"{base}/api/workers"):
        assert httpx.get(url, timeout=5).status_code == 401, url
    assert httpx.get(f"{base}/tasks", auth=(auth[0], "wrong"), timeout=5).status_code == 401
    assert httpx.get(f"{base}/tasks", auth=auth, timeout=5).status_code == 200

    start_worker("box", "cpu")
    manifest = tmp_path / "flower.toml"
    manifest.write_text(MANIFEST)
    assert cli(fleet_env, "enqueue", str(manifest)).returncode == 0
    long_job = registry.find("long-mlp")
    long_task = f"{long_job.job_id}:{long_job.attempt}"

    wait_for(lambda: ((registry.find("long-mlp").progress or {}).get("epoch") or 0) >= 2, 120, "the mlp to train two epochs")
    wait_for(lambda: flower_state(base, auth, long_task) == "PROGRESS", 30, "flower to see the PROGRESS state")

    dom = browser.dom(f"{authed}/task/{long_task}")
    assert field(dom, "UUID").startswith(long_task)
    assert field(dom, "Name") == "cis490.train"
    assert field(dom, "Status") == "PROGRESS"
    live = field(dom, "Result")
    progress = re.search(r"long-mlp · train (\d+)/100000, loss (\d+\.\d+)", live)
    assert progress, live
    assert int(progress.group(1)) >= 1 and float(progress.group(2)) > 0
    assert "on box" in live
    shots = artifacts_dir(tmp_path / "artifacts")
    browser.screenshot(f"{authed}/task/{long_task}", shots / "flower-task-progress.png", size=(1200, 800))

    listing = browser.dom(f"{authed}/tasks", budget_ms=8000)
    rows = [tr for tr in listing.select("#tasks-table tbody tr") if tr.find("a", title=long_task)]
    assert len(rows) == 1, listing.select_one("#tasks-table")
    cells = [td.get_text(" ", strip=True) for td in rows[0].find_all("td")]
    assert "PROGRESS" in cells and any(re.search(r"train \d+/100000, loss", c) for c in cells), cells
    browser.screenshot(f"{authed}/tasks", shots / "flower-tasks-progress.png", size=(1400, 600), budget_ms=8000)

    assert cli(fleet_env, "cancel", "long-mlp").returncode == 0
    quick = wait_for(lambda: (j := registry.find("quick-gbt")).status == "completed" and j, 120, "the gbt job to complete")
    quick_task = f"{quick.job_id}:{quick.attempt}"
    for task in (long_task, quick_task):
        wait_for(lambda: flower_state(base, auth, task) == "SUCCESS", 30, f"flower to see {task} end")

    ended = browser.dom(f"{authed}/task/{long_task}")
    assert field(ended, "Status") == "SUCCESS"
    assert "'status': 'cancelled'" in field(ended, "Result")
    done = browser.dom(f"{authed}/task/{quick_task}")
    assert field(done, "Status") == "SUCCESS"
    assert "'status': 'completed'" in field(done, "Result") and quick.artifact_id in field(done, "Result")
