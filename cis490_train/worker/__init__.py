"""The worker side: the host's Celery app and its hooks, the one task, one attempt with its trainer
subprocess, the worker's half of the coordinator protocol, and log shipping."""
