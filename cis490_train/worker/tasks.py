"""The one Celery task, a thin shell around `attempt`; `register` puts it on the worker's app."""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery.exceptions import Reject

from ..core.text import progress_line
from .attempt import AttemptRunner, Outcome
from ..errors import BadRequest, BrokerUnavailable, CoordinatorUnavailable
from ..broker.messages import TASK_NAME
from ..core.lifecycle import AttemptOutcome
from ..ids import check_attempt, check_job_id
from .runtime import runtime

log = logging.getLogger("cis490.tasks")


def progress_event(meta: dict[str, Any]) -> dict[str, Any]:
    """The fields of a `task-progress` event, as Flower merges them into the task it shows.

    Flower's task page lists only Celery's own fields, and `result` is the one it always
    shows, so the progress goes there as one line too. The job's name travels as
    `job_name`: a `name` field would replace the task's name in Flower.
    """
    fields = {k: v for k, v in meta.items() if k != "name"}
    return {**fields, "job_name": meta.get("name"), "result": progress_line(meta)}


def register(app: Any) -> Any:
    """Put `cis490.train` on the worker's app (the operators' apps only send it, by name)."""

    @app.task(name=TASK_NAME, bind=True)
    def train(self, job_id: Any, attempt: Any) -> dict[str, Any]:
        try:
            job_id, attempt = check_job_id(job_id), check_attempt(attempt)
        except BadRequest as exc:
            # Anyone who may write to a queue can send a message; only well-formed ones name a job.
            log.warning("dropping message %s: %s", self.request.id, exc)
            return Outcome(str(job_id)[:64], 0, AttemptOutcome.DROPPED, str(exc)).to_dict()

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

    return train
