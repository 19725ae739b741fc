"""Runs every process of the shop, prefixes their logs, restarts one that dies.

Each child runs in its own session, so Ctrl-C reaches only the supervisor, which then
sends SIGTERM to every child (each finishes what it has in hand) and SIGKILL to any
that is still running after the grace period.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from shop.processes import ProcessSpec

GRACE_SECONDS = 15
COLORS = ["\033[36m", "\033[35m", "\033[33m", "\033[32m", "\033[34m", "\033[91m", "\033[96m"]
RESET = "\033[0m"
MAX_RESTART_DELAY = 30.0


@dataclass
class Child:
    spec: ProcessSpec
    color: str
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = field(default=0.0)


class Supervisor:
    def __init__(self, specs: Sequence[ProcessSpec], env: dict[str, str]) -> None:
        use_color = sys.stdout.isatty()
        self.children = [
            Child(spec, COLORS[i % len(COLORS)] if use_color else "")
            for i, spec in enumerate(specs)
        ]
        self.env = env
        self.width = max(len(spec.name) for spec in specs)
        self._stopping = threading.Event()
        self._print_lock = threading.Lock()

    def say(self, name: str, line: str, color: str = "") -> None:
        with self._print_lock:
            prefix = f"{name:<{self.width}} |"
            print(f"{color}{prefix}{RESET if color else ''} {line}", flush=True)

    def print_line(self, line: str) -> None:
        """A line of the shop's own, unprefixed, never in the middle of a child's line."""
        with self._print_lock:
            print(line, flush=True)

    def run(self) -> int:
        signal.signal(signal.SIGINT, lambda *_: self._stopping.set())
        signal.signal(signal.SIGTERM, lambda *_: self._stopping.set())
        for child in self.children:
            self._start(child)
        while not self._stopping.wait(0.5):
            for child in self.children:
                self._watch(child)
        self._stop_all()
        return 0

    def _start(self, child: Child) -> None:
        child.process = subprocess.Popen(
            child.spec.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )
        child.started_at = time.monotonic()
        self.say("shop", f"started {child.spec.name} (pid {child.process.pid})")
        threading.Thread(target=self._pump, args=(child, child.process), daemon=True).start()

    def _pump(self, child: Child, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            self.say(child.spec.name, raw.decode(errors="replace").rstrip(), child.color)

    def _watch(self, child: Child) -> None:
        process = child.process
        if process is None:
            if time.monotonic() >= child.next_start:
                self._start(child)
            return
        code = process.poll()
        if code is None:
            return
        if time.monotonic() - child.started_at > 60:
            child.restarts = 0  # it ran for a while: start the backoff over
        delay = min(MAX_RESTART_DELAY, 2.0**child.restarts)
        child.restarts += 1
        child.process = None
        child.next_start = time.monotonic() + delay
        self.say("shop", f"{child.spec.name} exited with code {code}; restarting in {delay:.0f} s")

    def _stop_all(self) -> None:
        running = [c.process for c in self.children if c.process and c.process.poll() is None]
        self.say("shop", f"stopping {len(running)} processes (SIGTERM, {GRACE_SECONDS} s grace)")
        for process in running:
            _signal(process, signal.SIGTERM)
        deadline = time.monotonic() + GRACE_SECONDS
        for process in running:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal(process, signal.SIGKILL)
                process.wait()
        self.say("shop", "all processes stopped")


def _signal(process: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)
