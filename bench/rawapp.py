"""The baseline: a bare Celery app with no project code and the fleet's broker settings."""

from __future__ import annotations

import os

from celery import Celery

from cis490_train.broker.app import transport_options

URL = os.environ.get("RAW_BROKER_URL", "redis://127.0.0.1:6379/0")

app = Celery("rawapp", broker=URL, backend=URL)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    worker_concurrency=1,
    worker_pool="threads",
    broker_transport_options=transport_options(),
)


@app.task(name="raw.noop")
def noop() -> None:
    return None
