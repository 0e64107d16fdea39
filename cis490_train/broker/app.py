"""The Celery app, made from a `Settings` object: the worker's and the operators' are the same recipe.

The settings are the top-level `celeryconfig` module's; the broker and result
backend are the `Settings` object's, so a process can talk to any Redis it was
given (the embedded run's private one, a test's) without touching the environment.
"""

from __future__ import annotations

import importlib
from typing import Any

from celery import Celery

from ..config import Settings

CONFIG_MODULE = "celeryconfig"


def transport_options() -> dict[str, Any]:
    """kombu's transport options as configured (priority steps and their separator name the queues' lists)."""
    return dict(importlib.import_module(CONFIG_MODULE).broker_transport_options)


def make_app(settings: Settings) -> Celery:
    app = Celery("cis490_train", set_as_current=False)
    app.config_from_object(CONFIG_MODULE)
    app.conf.update(broker_url=settings.broker_url, result_backend=settings.result_backend)
    return app
