"""The shop's workers as threads of one process, for the tests and the labs: `Running`
runs anything with `.run(stop)` (a relay, a consumer, a whole service) on a thread of its
own, and `ServiceThread` is `shop run NAME` in that form."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from shop.catalog import ShopSettings


class Running:
    def __init__(self, target) -> None:  # type: ignore[no-untyped-def]
        self.target = target
        self.stop = threading.Event()
        self.thread = threading.Thread(target=target.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        """Ask it to stop and wait (20 s at most); AssertionError if it did not."""
        self.stop.set()
        self.thread.join(timeout=20)
        assert not self.thread.is_alive(), f"{self.target} did not stop"


@dataclass
class ServiceThread:
    """`shop run NAME`, but as a thread: something Running can run."""

    name: str
    settings: ShopSettings

    def run(self, stop: threading.Event) -> None:
        from shop import processes

        processes.run(self.name, self.settings, stop)
