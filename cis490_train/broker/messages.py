"""One attempt, one message: how the fleet sends `cis490.train` to a class queue.

Operators (enqueue, requeue, the embedded run) and the coordinator (the next
attempt after a failure, a lost message, a CUDA fallback) send through this;
the worker side only receives.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery import Celery

from ..config import Settings
from ..ids import task_id
from ..registry import JobRecord, Registry
from .app import make_app

TASK_NAME = "cis490.train"


class Messages:
    """Sends attempts' messages over one Celery app."""

    def __init__(self, app: Celery):
        self.app = app

    @classmethod
    def from_settings(cls, settings: Settings) -> Messages:
        return cls(make_app(settings))

    def send(self, job_id: str, attempt: int, queue: str, priority: int, producer: Any = None) -> None:
        """Send one attempt's message to its class queue at its broker priority (0 runs first)."""
        self.app.send_task(
            TASK_NAME,
            args=[job_id, attempt],
            task_id=task_id(job_id, attempt),
            queue=queue,
            routing_key=queue,
            priority=priority,
            ignore_result=True,
            producer=producer,
        )

    def send_record(self, job: JobRecord) -> None:
        """Send the job's current attempt to its queue, and to its CPU fallback once that is open."""
        for queue in job.queues:
            self.send(job.job_id, job.attempt, queue, job.broker_priority)

    def dispatch(self, registry: Registry, job: JobRecord) -> None:
        """Send the current attempt and record that it is on the broker; the reaper resends it if this dies midway."""
        self.send_record(job)
        registry.mark_sent([(job.job_id, job.attempt)])

    @contextmanager
    def batch(self, size: int) -> Iterator[Any]:
        """A producer whose sends go out in pipelined batches of `size` (one round trip each)."""
        with self.app.producer_or_acquire() as producer, producer.batch(max_size=size):
            yield producer
