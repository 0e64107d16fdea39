"""The pure core: manifests, specs, hyperparameters, routing, the job lifecycle, apply plans, the
coordinator protocol and the host probe. Plain functions and dataclasses: no Redis, no Celery."""
