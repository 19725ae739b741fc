"""Run a relay or consumer (anything with .run(stop)) in a thread; see `start_in_thread`."""

from __future__ import annotations

import threading


class Running:
    def __init__(self, target) -> None:
        self.target = target
        self.stop = threading.Event()
        self.thread = threading.Thread(target=target.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=20)
        assert not self.thread.is_alive(), f"{self.target} did not stop"
