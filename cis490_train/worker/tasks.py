"""The one Celery task, and how its messages are sent. A thin shell around `attempt`."""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery.exceptions import Reject

from .attempt import AttemptRunner, Outcome, progress_line
from ..errors import BadRequest, BrokerUnavailable, CoordinatorUnavailable
from ..celery import app
from ..ids import check_attempt, check_job_id, task_id
from ..registry import JobRecord, Registry
from .runtime import runtime

TASK_NAME = "cis490.train"
log = logging.getLogger("cis490.tasks")


def progress_event(meta: dict[str, Any]) -> dict[str, Any]:
    """The fields of a `task-progress` event, as Flower merges them into the task it shows.

    Flower's task page lists only Celery's own fields, and `result` is the one it always
    shows, so the progress goes there as one line too. The job's name travels as
    `job_name`: a `name` field would replace the task's name in Flower.
    """
    fields = {k: v for k, v in meta.items() if k != "name"}
    return {**fields, "job_name": meta.get("name"), "result": progress_line(meta)}


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


def dispatch(registry: Registry, job: JobRecord) -> None:
    """Send the current attempt and record that it is on the broker; the reaper resends it if this dies midway."""
    send_record(job)
    registry.mark_sent([(job.job_id, job.attempt)])


@app.task(name=TASK_NAME, bind=True)
def train(self, job_id: Any, attempt: Any) -> dict[str, Any]:
    try:
        job_id, attempt = check_job_id(job_id), check_attempt(attempt)
    except BadRequest as exc:
        # Anyone who may write to a queue can send a message; only well-formed ones name a job.
        log.warning("dropping message %s: %s", self.request.id, exc)
        return Outcome(str(job_id)[:64], 0, "dropped", str(exc)).to_dict()

    def report(meta: dict[str, Any]) -> None:
        try:
            self.update_state(state="PROGRESS", meta=meta)
            self.send_event("task-progress", **progress_event(meta))
        except Exception as exc:  # monitoring must never fail a training run
            log.warning("progress report for %s failed: %s", meta.get("job_id"), exc)

    runner = AttemptRunner(
        registry=runtime.registry,
        settings=runtime.settings,
        capability=runtime.capability,
        worker=self.request.hostname,
        on_progress=report,
        stopping=runtime.stopping,
    )
    wake = threading.Event()
    runtime.track(self.request.id, wake)
    try:
        queue = (self.request.delivery_info or {}).get("routing_key") or ""
        return runner.run(job_id, attempt, wake, queue).to_dict()
    except (BrokerUnavailable, CoordinatorUnavailable) as exc:
        # Redis or the coordinator stayed away: hand the message back rather than ack it. If the
        # job was claimed, its silent lease is the reaper's; a returned message is then stale.
        raise Reject(str(exc), requeue=True) from None
    finally:
        runtime.untrack(self.request.id)
