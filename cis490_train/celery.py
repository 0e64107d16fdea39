"""What `celery -A cis490_train` finds: the worker's app (`worker.app`)."""

from .worker.app import app

__all__ = ["app"]
