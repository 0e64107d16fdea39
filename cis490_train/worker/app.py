"""The worker's Celery app: made from this host's settings, with the task and the worker's hooks on it."""

from __future__ import annotations

from ..broker.app import make_app
from ..config import Settings
from . import runtime, tasks

app = make_app(Settings.from_env())
tasks.register(app)

__all__ = ["app", "runtime"]
