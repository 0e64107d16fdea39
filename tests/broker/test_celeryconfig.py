"""`celeryconfig.py` is what the fleet's processes really run with: asked of a live worker, and of an
app made in process from another Redis's settings."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import celeryconfig
from cis490_train.broker.app import make_app
from cis490_train.config import Settings

pytestmark = pytest.mark.integration

# What an operator tunes there, and what the fleet's guarantees rest on.
KEYS = (
    "task_serializer",
    "accept_content",
    "task_acks_late",
    "worker_prefetch_multiplier",
    "worker_disable_prefetch",
    "worker_concurrency",
    "worker_pool",
    "worker_send_task_events",
    "task_send_sent_event",
    "broker_transport_options",
    "broker_transport",
    "worker_consumer",
)


def test_a_live_worker_runs_with_what_celeryconfig_says(fleet_env, start_worker):
    w = start_worker("box", "cpu")
    asked = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "cis490_train", "inspect", "conf", "--json", "-d", w.nodename],
        env=fleet_env, capture_output=True, text=True, timeout=60,
    )
    assert asked.returncode == 0, asked.stderr
    conf = json.loads(asked.stdout)[w.nodename]
    for key in KEYS:
        assert json.loads(json.dumps(conf[key])) == json.loads(json.dumps(getattr(celeryconfig, key))), key
    shown = conf["broker_url"].rsplit("@", 1)[-1]  # Celery masks the password it is shown
    assert shown == fleet_env["CIS490_BROKER_URL"].split("//", 1)[1]


def test_an_app_made_from_settings_takes_their_broker_and_the_rest_from_celeryconfig(tmp_path):
    url = "redis://127.0.0.1:1/3"
    app = make_app(Settings.from_env({"CIS490_BROKER_URL": url, "HOME": str(tmp_path)}))
    assert app.conf.broker_url == url and app.conf.result_backend == url
    for key in KEYS:
        assert app.conf[key] == getattr(celeryconfig, key), key
