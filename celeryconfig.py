"""The fleet's Celery settings, as a Celery deployment keeps them: read them here, edit them here.

Every process of the fleet loads this module by name (`cis490_train.broker.app`),
so a `celeryconfig.py` earlier on the path (the working directory of
`celery -A cis490_train worker`) takes its place for that process. Whatever it
sets, the broker and result backend come from `CIS490_BROKER_URL` and
`CIS490_RESULT_BACKEND` (the values below are what the environment says now;
an app made from a `Settings` object uses that object's).

`visibility_timeout` must be the same everywhere: the shortest one in the fleet
wins. Messages are acknowledged late, one at a time, so a busy worker holds no
second message that an idle host could run; a redelivered message meets the
registry's fencing and changes nothing.
"""

from __future__ import annotations

from cis490_train.config import Settings

_settings = Settings.from_env()

broker_url = _settings.broker_url
result_backend = _settings.result_backend
# kombu's Redis transport, calling the fleet's Redis functions where it would run Lua (`cis490_train.broker.transport`).
broker_transport = "cis490_train.broker.transport:Transport"

task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
event_serializer = "json"

task_acks_late = True
task_acks_on_failure = True
task_acks_on_timeout = True
task_reject_on_worker_lost = False
worker_prefetch_multiplier = 1
# Take no message while every pool slot is busy, not even after a reconnect resets the QoS count.
worker_disable_prefetch = True
worker_concurrency = 1
worker_pool = "threads"
worker_consumer = "cis490_train.worker.runtime:Consumer"
task_ignore_result = True
task_track_started = False
result_expires = 7 * 24 * 3600

worker_send_task_events = True
# A task-sent event per message doubles the cost of enqueueing; the registry already knows what is pending.
task_send_sent_event = False

task_create_missing_queues = True
task_default_queue = "cpu"
task_default_priority = 9
broker_connection_retry_on_startup = True
broker_connection_max_retries = None
broker_transport_options = {
    "visibility_timeout": 3600,
    "priority_steps": list(range(10)),
    "sep": ":",
    "queue_order_strategy": "priority",
}
result_backend_transport_options = {"visibility_timeout": 3600}
