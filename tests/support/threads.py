"""Run a relay or consumer (anything with .run(stop)) in a thread, stopped at the end."""

from __future__ import annotations

import threading

import pytest


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


@pytest.fixture
def start_in_thread():
    running: list[Running] = []

    def start(target) -> Running:
        running.append(Running(target))
        return running[-1]

    yield start
    for item in running:
        item.close()
