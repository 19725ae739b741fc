"""A row of the flash-sale table: one server and one path, measured round after round.

Each round (`measure_round`) runs the generator against every row in turn, with a CPU
meter (bench/cpu.py) around it; a row adds up its rounds: answers by status, errors, the
pooled latencies, and the CPU seconds by group: `web` (the gunicorn processes),
`supervisor` (`shop up` itself), `services` (the shop's other processes), `broker`
(RabbitMQ), `generator` (what the generator said it spent), `machine` (every core), so
`cpu_percent("other")` is the rest of the machine. `busiest_shares`: per round, the share
of the web CPU the busiest gunicorn process took.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from bench.cpu import GENERATOR, RABBITMQ, CpuMeter, CpuUse
from bench.flash_sale.generators import Generator, Load, pooled_percentile
from bench.support import BenchFailure

SERVER_GROUPS = ("web", "supervisor", "services")


def group_of(pid: int, label: str, server_pid: int) -> str | None:
    """The CPU column a watched process counts in; None for this process (the generator
    reports its own CPU)."""
    if label == GENERATOR:
        return None
    if label == RABBITMQ:
        return "broker"
    if label.startswith("web"):
        return "web"
    return "supervisor" if pid == server_pid else "services"


@dataclass
class Row:
    key: str
    name: str
    port: int
    path: str
    server_pid: int
    notes: list[str] = field(default_factory=list)
    processes: dict[int, str] = field(default_factory=dict)
    # what the rounds added up to
    seconds: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0
    latencies_ms: list[tuple[float, float]] = field(default_factory=list)
    generator_cpu: float = 0.0
    cpu: Counter[str] = field(default_factory=Counter)
    cpu_elapsed: float = 0.0
    busiest_shares: list[float] = field(default_factory=list)
    round_rates: list[float] = field(default_factory=list)

    def add(self, load: Load, use: CpuUse) -> None:
        self.seconds += load.seconds
        self.statuses.update(load.statuses)
        self.errors += load.errors
        self.latencies_ms.extend(load.latencies_ms)
        self.generator_cpu += load.generator_cpu
        web: list[float] = []
        for pid, used in use.by_pid.items():
            group = group_of(pid, use.labels[pid], self.server_pid)
            if group is not None:
                self.cpu[group] += used
            if group == "web":
                web.append(used)
        self.cpu["machine"] += use.machine
        self.cpu["generator"] += load.generator_cpu
        self.cpu_elapsed += use.elapsed
        if web and sum(web) > 0:
            self.busiest_shares.append(max(web) / sum(web))
        self.round_rates.append(load.rate)

    @property
    def answers(self) -> int:
        return sum(self.statuses.values())

    @property
    def rate(self) -> float:
        return self.answers / self.seconds if self.seconds else 0.0

    def latency(self, fraction: float) -> float:
        return pooled_percentile(self.latencies_ms, fraction)

    def cpu_percent(self, group: str) -> float:
        if group == "other":
            ours = sum(self.cpu[name] for name in (*SERVER_GROUPS, "broker", "generator"))
            return max(0.0, 100 * (self.cpu["machine"] - ours) / self.cpu_elapsed)
        return 100 * self.cpu[group] / self.cpu_elapsed if self.cpu_elapsed else 0.0

    @property
    def web_ms_per_answer(self) -> float:
        return 1000 * self.cpu["web"] / max(self.answers, 1)


def measure_round(generator: Generator, rows: list[Row], seconds: float) -> None:
    for row in rows:
        meter = CpuMeter(row.processes)
        load = generator.run(row.port, row.path, seconds)
        use = meter.read()
        if load.answers == 0:
            raise BenchFailure(f"{row.name}: no answers at all ({load.errors} errors)")
        row.add(load, use)
