"""Die with the worker: a trainer whose worker was killed (SIGKILL, OOM) must not train on unsupervised."""

from __future__ import annotations

import os
import threading

from . import EXIT_ORPHANED, PARENT_PID_ENV

CHECK_EVERY_S = 0.5


def watch_parent(env: dict[str, str] | None = None) -> None:
    """When the worker that started us is gone, exit at once (no cleanup: the output is abandoned)."""
    env = os.environ if env is None else env
    try:
        parent = int(env.get(PARENT_PID_ENV, "0"))
    except ValueError:
        return
    if parent <= 0:
        return

    def watch() -> None:
        stop = threading.Event()
        while not stop.wait(CHECK_EVERY_S):
            if os.getppid() != parent:
                os._exit(EXIT_ORPHANED)

    threading.Thread(target=watch, name="cis490-parent-watch", daemon=True).start()
