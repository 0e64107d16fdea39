"""The one Celery task, and how its messages are sent. A thin shell around `attempt`."""

from __future__ import annotations

import threading
from typing import Any

from .attempt import AttemptRunner
from .celery import app
from .registry import JobRecord
from .worker import runtime

TASK_NAME = "cis490.train"


def task_id(job_id: str, attempt: int) -> str:
    return f"{job_id}:{attempt}"


def send_attempt(job_id: str, attempt: int, queue: str, priority: int, producer: Any = None) -> None:
    """Send one attempt's message to its class queue at its broker priority (0 runs first)."""
    app.send_task(
        TASK_NAME,
        args=[job_id, attempt],
        task_id=task_id(job_id, attempt),
        queue=queue,
        routing_key=queue,
        priority=priority,
        ignore_result=True,
        producer=producer,
    )


def send_record(job: JobRecord) -> None:
    """Send the job's current attempt to its queue, and to its CPU fallback once that is open."""
    for queue in job.queues:
        send_attempt(job.job_id, job.attempt, queue, job.broker_priority)


@app.task(name=TASK_NAME, bind=True)
def train(self, job_id: str, attempt: int) -> dict[str, Any]:
    def report(meta: dict[str, Any]) -> None:
        self.update_state(state="PROGRESS", meta=meta)
        self.send_event("task-progress", **meta)

    runner = AttemptRunner(
        registry=runtime.registry,
        settings=runtime.settings,
        capability=runtime.capability,
        worker=self.request.hostname,
        on_progress=report,
        dispatch=send_record,
        stopping=runtime.stopping,
    )
    wake = threading.Event()
    runtime.track(self.request.id, wake)
    try:
        queue = (self.request.delivery_info or {}).get("routing_key") or ""
        return runner.run(job_id, attempt, wake, queue).to_dict()
    finally:
        runtime.untrack(self.request.id)
