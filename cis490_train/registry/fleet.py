"""The fleet: class queues and their constraints, host policies, and live workers' records."""

from __future__ import annotations

import json
from collections.abc import Iterable

from ..core.specs import HostSpec
from ..core.routing import QueueClass
from ..errors import BadRecord
from .connection import Connection
from .keys import HOSTS, QUEUES, WORKERS, worker_key
from .records import WorkerInfo


class Fleet(Connection):
    def add_queue_classes(self, classes: Iterable[QueueClass]) -> list[str]:
        """Record class queues; returns the names that were new."""
        classes = list({qc.name: qc for qc in classes}.values())
        if not classes:
            return []
        with self.guard():
            pipe = self.r.pipeline(transaction=False)
            for qc in classes:
                pipe.hsetnx(QUEUES, qc.name, json.dumps(qc.to_dict(), sort_keys=True))
            added = pipe.execute()
        return [qc.name for qc, new in zip(classes, added) if new]

    def queue_classes(self) -> list[QueueClass]:
        with self.guard():
            raw = self.r.hgetall(QUEUES)
        classes = []
        for name, value in sorted(raw.items()):
            try:
                classes.append(QueueClass.from_dict(json.loads(value)))
            except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
                self.report(BadRecord(f"{QUEUES}[{name}]", "not a queue class"))
        return classes

    def set_hosts(self, hosts: Iterable[HostSpec]) -> None:
        mapping = {h.name: json.dumps(h.to_dict(), sort_keys=True) for h in hosts}
        if mapping:
            with self.guard():
                self.r.hset(HOSTS, mapping=mapping)

    def hosts(self) -> dict[str, HostSpec]:
        with self.guard():
            raw = self.r.hgetall(HOSTS)
        found = {k: self._host(k, v) for k, v in raw.items()}
        return {k: h for k, h in found.items() if h is not None}

    def host_policy(self, host_id: str) -> HostSpec | None:
        with self.guard():
            raw = self.r.hget(HOSTS, host_id)
        return self._host(host_id, raw) if raw else None

    def _host(self, name: str, raw: str) -> HostSpec | None:
        try:
            return HostSpec.from_dict(json.loads(raw))
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
            self.report(BadRecord(f"{HOSTS}[{name}]", "not a host policy"))
            return None

    def register_worker(self, info: WorkerInfo, ttl_s: float) -> None:
        with self.guard():
            pipe = self.r.pipeline(transaction=False)
            pipe.set(worker_key(info.name), info.to_json(), px=max(1, int(ttl_s * 1000)))
            pipe.sadd(WORKERS, info.name)
            pipe.execute()

    def unregister_worker(self, name: str) -> None:
        with self.guard():
            pipe = self.r.pipeline(transaction=False)
            pipe.delete(worker_key(name))
            pipe.srem(WORKERS, name)
            pipe.execute()

    def workers(self) -> list[WorkerInfo]:
        """Workers whose record has not expired; expired names are dropped from the set."""
        with self.guard():
            names = sorted(self.r.smembers(WORKERS))
            if not names:
                return []
            raws = self.r.mget([worker_key(n) for n in names])
            gone = [n for n, raw in zip(names, raws) if raw is None]
            if gone:
                self.r.srem(WORKERS, *gone)
        found = []
        for name, raw in zip(names, raws):
            if raw is not None:
                try:
                    found.append(WorkerInfo.from_json(raw, worker_key(name)))
                except BadRecord as exc:
                    self.report(exc)
        return found
