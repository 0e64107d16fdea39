"""cis490-train: a training fleet on Celery and Redis.

The Celery app lives in `cis490_train.celery` (what `celery -A cis490_train`
finds); this package root stays free of Celery so that the trainer child, which
imports `cis490_train.trainer`, never loads it.
"""

__version__ = "0.1.0"
