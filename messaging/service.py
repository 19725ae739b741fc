"""Run a service's background workers (relay, consumers, RPC server) as threads of one process.

Each worker has its own broker connection (pika connections are not thread-safe). If one
worker dies of an unexpected error, the others are stopped too and the process exits with
an error, so `shop up` (or the container runtime) restarts the whole service cleanly.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Protocol

log = logging.getLogger(__name__)


class Worker(Protocol):
    name: str

    def run(self, stop: threading.Event) -> None: ...


class WorkerCrashed(RuntimeError):
    """A worker thread ended with an exception."""


def run_together(workers: Sequence[Worker], stop: threading.Event) -> None:
    crashed: list[str] = []

    def guarded(worker: Worker) -> None:
        try:
            worker.run(stop)
        except Exception:
            log.exception("%s crashed; stopping the service so that it is restarted", worker.name)
            crashed.append(worker.name)
            stop.set()

    threads = [
        threading.Thread(target=guarded, args=(worker,), name=worker.name) for worker in workers
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if crashed:
        raise WorkerCrashed(", ".join(crashed))
