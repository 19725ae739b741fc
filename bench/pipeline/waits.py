"""What the threads of the server's processes were doing during a trial, from /proc.

Every 50 ms, for each thread of each watched process (bench/cpu.py's labels; not this
process, not RabbitMQ), its state in /proc/PID/task/TID/stat and the kernel function it
sleeps in (wchan) say which of WAIT_KINDS it is in. `percent()` gives, per process, the
share of one thread's time in each kind; a process's threads add up, like CPU %, so a web
worker of 8 threads can show 500 % asleep in SQLite's busy handler.
"""

from __future__ import annotations

from contextlib import suppress
from pathlib import Path

from bench.cpu import GENERATOR, RABBITMQ
from loadtest.sampler import Sampler
from shop.process_tree import proc_stat

# What a thread is doing, from its state and the kernel function it sleeps in (wchan).
# SQLite's busy handler sleeps (usleep: nanosleep) while another connection holds the write
# lock; nothing else in the shop's hot paths calls sleep. A thread waiting for the GIL
# waits on a futex, as does an idle thread (Event.wait, join).
WAIT_KINDS = ["running", "sqlite lock sleep", "futex (GIL/idle)", "socket wait", "other"]


def wait_kind(state: str, wchan: str) -> str:
    if state == "R":
        return "running"
    if "nanosleep" in wchan:
        return "sqlite lock sleep"
    if "futex" in wchan:
        return "futex (GIL/idle)"
    if any(word in wchan for word in ("poll", "select", "accept", "sk_wait", "wait_for_data")):
        return "socket wait"
    return "other"


class WaitSampler(Sampler):
    """Samples what every thread of some processes is doing, every 50 ms."""

    interval = 0.05
    name = "wait sampler"

    def __init__(self, processes: dict[int, str]) -> None:
        super().__init__()
        self.processes = processes
        self.counts: dict[str, dict[str, int]] = {}
        self.samples = 0

    def sample(self) -> None:
        self.samples += 1
        for pid, label in self.processes.items():
            if label in (GENERATOR, RABBITMQ):
                continue  # this process: the sampler would see itself; beam: idle threads
            counts = self.counts.setdefault(label, dict.fromkeys(WAIT_KINDS, 0))
            for task in Path(f"/proc/{pid}/task").glob("*"):
                with suppress(OSError, TypeError):
                    state = proc_stat(task / "stat")[0]  # type: ignore[index]
                    counts[wait_kind(state, (task / "wchan").read_text())] += 1

    def percent(self) -> dict[str, dict[str, float]]:
        """Per process, % of one thread's time in each kind (threads add up, like CPU %)."""
        whole = max(1, self.samples)
        return {
            label: {kind: 100 * count / whole for kind, count in counts.items()}
            for label, counts in self.counts.items()
        }
