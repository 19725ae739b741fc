"""The one CPU meter of the benches: how much CPU each process of a server's tree, RabbitMQ,
this process and the rest of the machine used over a stretch of wall time (Linux /proc).

    processes = watched_processes(server_pid)   # {pid: label}
    meter = CpuMeter(processes)
    ...                                         # the load
    use = meter.read()                          # CpuUse
    use.percent()                               # {label: % of one core}, and OTHERS

The labels: 'shop up (supervisor, log pump)', 'shop run order', 'web: gunicorn master',
'web: gunicorn worker 1', ..., RABBITMQ (every beam.smp on the machine), POSTGRES (every
postgres process: the server's, and the backends that exist when the meter starts), GENERATOR (this
process: the load generator and the bench's samplers). How to read a percentage: 100 is one
core busy for the whole stretch, so a Python process (one GIL) tops out near 100, and the
machine near 100 x cores; OTHERS is the machine's busy time (/proc/stat) less the watched
processes': other people's work on a shared machine.
"""

from __future__ import annotations

import os
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from shop.process_tree import descendants, proc_stat

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
OTHERS = "other processes on the machine"
RABBITMQ = "RabbitMQ (beam.smp)"
POSTGRES = "PostgreSQL (postgres)"
GENERATOR = "this process (load generator)"
WEB = "web (gunicorn)"


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process (all its threads); None once it is gone."""
    fields = proc_stat(Path(f"/proc/{pid}/stat"))
    return None if fields is None else (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat: all but idle and iowait)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / CLOCK_TICKS


def pids_named(command: str) -> list[int]:
    """Every process on the machine whose command name (/proc/PID/comm) is `command`."""
    pids = []
    for entry in Path("/proc").iterdir():
        with suppress(OSError):
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == command:
                pids.append(int(entry.name))
    return pids


def rabbitmq_pids() -> list[int]:
    return pids_named("beam.smp")


def process_label(pid: int) -> str:
    """A short name: WEB, 'shop run inventory', 'shop up (supervisor, log pump)', ..."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return f"pid {pid}"
    if any("gunicorn" in arg for arg in argv):
        return WEB
    if "run" in argv and argv.index("run") + 1 < len(argv):
        return f"shop run {argv[argv.index('run') + 1]}"
    if "up" in argv:
        return "shop up (supervisor, log pump)"
    return Path(argv[0]).name


def watched_processes(root: int | None) -> dict[int, str]:
    """The processes a measurement reports on: the tree below `root` (if any), RabbitMQ
    PostgreSQL and this process, each with its label."""
    watched = {os.getpid(): GENERATOR}
    for pid in rabbitmq_pids():
        watched[pid] = RABBITMQ
    for pid in pids_named("postgres"):  # the server and a backend per connection
        watched[pid] = POSTGRES
    if root is not None:
        for pid in [root, *descendants(root)]:
            watched[pid] = process_label(pid)
    # A gunicorn master and its workers: number them so each gets its own line.
    webs = sorted(pid for pid, label in watched.items() if label == WEB)
    for index, pid in enumerate(webs):
        watched[pid] = "web: gunicorn master" if index == 0 else f"web: gunicorn worker {index}"
    return watched


@dataclass
class CpuUse:
    """What a CpuMeter saw: CPU seconds per process over `elapsed` seconds of wall time."""

    elapsed: float
    labels: dict[int, str]
    by_pid: dict[int, float]  # CPU seconds; a process that ended meanwhile is left out
    machine: float  # busy CPU seconds of the whole machine (all cores)

    def seconds(self) -> dict[str, float]:
        """CPU seconds per label (processes with the same label add up)."""
        totals: dict[str, float] = {}
        for pid, used in self.by_pid.items():
            totals[self.labels[pid]] = totals.get(self.labels[pid], 0.0) + used
        return totals

    def percent(self) -> dict[str, float]:
        """% of one core per label, plus OTHERS: what the rest of the machine used."""
        usage = {label: 100 * used / self.elapsed for label, used in self.seconds().items()}
        machine = 100 * self.machine / self.elapsed
        usage[OTHERS] = max(0.0, machine - sum(usage.values()))
        return usage


class CpuMeter:
    """Takes a snapshot of `processes` ({pid: label}) and the machine when made; `read()`
    says what they used since."""

    def __init__(self, processes: dict[int, str]) -> None:
        self.processes = processes
        self.started = time.monotonic()
        self.machine_before = machine_busy_seconds()
        self.before = {pid: cpu_seconds(pid) for pid in processes}

    def read(self) -> CpuUse:
        used: dict[int, float] = {}
        for pid, before in self.before.items():
            now = cpu_seconds(pid)
            if before is not None and now is not None:
                used[pid] = now - before
        elapsed = time.monotonic() - self.started
        machine = machine_busy_seconds() - self.machine_before
        return CpuUse(elapsed, dict(self.processes), used, machine)
