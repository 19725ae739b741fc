"""The progress of a long step of a load test, on stderr: a bar redrawn in place (at most ten
times a second) when the stream is a terminal, otherwise one line per 10 %, so that a log
file or a CI run gets a few readable lines, not a screenful of carriage returns."""

from __future__ import annotations

import threading
import time
from typing import IO


class Progress:
    """A bar on a terminal (redrawn at most 10 times a second), else a line per 10 %."""

    def __init__(self, label: str, total: int, stream: IO[str]) -> None:
        self.label, self.total, self.stream = label, total, stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.done = 0
        self._lock = threading.Lock()
        self._drawn = 0.0
        self._tenths = 0
        self._finished = False
        self._started = time.monotonic()

    def advance(self, count: int = 1) -> None:
        with self._lock:
            self.done += count
            self._show(final=False)

    def set(self, done: int) -> None:
        with self._lock:
            self.done = done
            self._show(final=False)

    def finish(self) -> None:
        with self._lock:
            self._show(final=True)

    def _show(self, final: bool) -> None:
        if self._finished:
            return
        self._finished = final
        fraction = min(self.done / self.total, 1.0) if self.total else 1.0
        if self.tty:
            now = time.monotonic()
            if not final and now - self._drawn < 0.1:
                return
            self._drawn = now
            width = 30
            bar = "#" * int(width * fraction) + "." * (width - int(width * fraction))
            self.stream.write(
                f"\r{self.label:<16} [{bar}] {self.done}/{self.total} {fraction:4.0%} "
                f"{now - self._started:5.1f}s" + ("\n" if final else "")
            )
        else:
            tenths = int(fraction * 10)
            if tenths > self._tenths and self.total:
                self._tenths = tenths
                self.stream.write(f"{self.label}: {self.done}/{self.total} ({tenths * 10}%)\n")
            if final and self.total == 0:
                self.stream.write(f"{self.label}: none\n")
            elif final and self.done < self.total:
                self.stream.write(f"{self.label}: stopped at {self.done}/{self.total}\n")
        self.stream.flush()
