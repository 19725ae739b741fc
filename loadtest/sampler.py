"""Something looked at again and again while a load runs, in a thread of its own.

A subclass says what one look is (`sample()`), and what its thread needs first and last
(`setup()`, `teardown()`: a connection of its own, say); `with TheSampler(...) as s:` takes
a sample every `interval` seconds while the block runs (the first one `interval` after it
starts), then stops the thread. Used for the stock during `shop loadtest flash-sale`, and by
the benches for queue depths and for what each server thread is doing.
"""

from __future__ import annotations

import threading
from typing import Self


class Sampler:
    interval = 0.25  # seconds between two samples
    name = "sampler"  # the thread's name

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    def setup(self) -> None:
        """In the sampler's thread, before the first sample."""

    def sample(self) -> None:
        raise NotImplementedError

    def teardown(self) -> None:
        """In the sampler's thread, after the last sample (also when a sample raised)."""

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        self.setup()
        try:
            while not self._stop.wait(self.interval):
                self.sample()
        finally:
            self.teardown()
