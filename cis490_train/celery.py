"""The Celery app, found by `celery -A cis490_train`."""

from __future__ import annotations

from celery import Celery

app = Celery("cis490_train")
app.config_from_object("cis490_train.celeryconfig")

from .worker import tasks, runtime  # noqa: E402,F401  (registers the task and the worker's boot hooks)
