"""The flash-sale bench's report: the table, where the CPU went, the generator, the goals.

The first table has a row per endpoint: answers per second, p50/p99 latency (nearest rank
over the pooled rounds), the row's throughput and p99 as multiples of the no-op's, and its
answers by status. The second says where the CPU went in each row, in % of one core (see
rows.py for the groups); `web ms/answer` is the web processes' CPU per answer, the least
noisy number here. Then the generator's own ceiling, and each goal, "goal met" or not.
"""

from __future__ import annotations

import os
from statistics import median

from bench.flash_sale.generators import Generator
from bench.flash_sale.rows import Row
from bench.table import table

BUSY_MACHINE = 25.0  # % of a core used outside the bench, on average: say the machine was busy
SOLD_OUT_GOAL = 0.90  # of the no-op's throughput
OPEN_GOAL = 0.50
P99_GOAL = 2.0  # at most this many times the no-op's p99
NAIVE_GOAL = 15.0  # the open-sale row, times the naive baseline's throughput


def format_statuses(row: Row) -> str:
    counts = [f"{status}:{n}" for status, n in sorted(row.statuses.items())]
    if row.errors:
        counts.append(f"errors:{row.errors}")
    return " ".join(counts)


CPU_COLUMNS = [
    "row",
    "web",
    "supervisor",
    "services",
    "broker",
    "generator",
    "other",
    "machine",
    "web ms/answer",
    "busiest worker",
]


def cpu_cells(row: Row) -> list[str]:
    share = sum(row.busiest_shares) / len(row.busiest_shares) if row.busiest_shares else 0
    groups = ["web", "supervisor", "services", "broker", "generator", "other", "machine"]
    return [
        row.name,
        *(f"{row.cpu_percent(group):.0f}" for group in groups),
        f"{row.web_ms_per_answer:.3f}",
        f"{100 * share:.0f}%",
    ]


def print_table(rows: list[Row]) -> None:
    noop = rows[0]
    noop_p99 = noop.latency(0.99)
    header = ["row", "req/s", "p50 ms", "p99 ms", "vs no-op", "p99 x", "statuses (all rounds)"]
    cells = [
        [
            row.name,
            f"{row.rate:,.0f}",
            f"{row.latency(0.5):.1f}",
            f"{row.latency(0.99):.1f}",
            f"{row.rate / noop.rate:.2f}x",
            f"{row.latency(0.99) / noop_p99:.1f}x",
            format_statuses(row),
        ]
        for row in rows
    ]
    print()
    print(table(header, cells, align="lrrrrrl"))
    cores = os.cpu_count() or 1
    print()
    print(
        f"Where the CPU went (% of one core; {cores} cores, so 'machine' is at most {100 * cores}):"
    )
    print()
    print(table(CPU_COLUMNS, [cpu_cells(row) for row in rows], align="l" + "r" * 9))
    print()
    for row in rows:
        for note in row.notes:
            print(f"  {row.name}: {note}")
    other = sum(row.cpu_percent("other") for row in rows) / len(rows)
    if other > BUSY_MACHINE:
        print(
            f"  the machine was busy with other work: {other:.0f} % of a core on average went "
            "to processes outside the bench. The rounds interleave the rows so that each "
            "ratio compares like with like, but run again on a quiet machine."
        )


def print_generator(generator: Generator, noop: Row) -> None:
    per_request_us = 1e6 * noop.generator_cpu / max(noop.answers, 1)
    alone = 1e6 / per_request_us if per_request_us else float("inf")
    print()
    print(f"load generator: {generator.describe()}")
    print(
        f"  its ceiling here: {noop.rate:,.0f} req/s against the no-op endpoint (generator and "
        f"server together); it spent {per_request_us:.0f} us of CPU per request, so alone on "
        f"one core it could offer about {alone:,.0f} req/s. It shares the machine's "
        f"{os.cpu_count()} cores with the servers and RabbitMQ, alike for every row."
    )


def goal_line(what: str, value: float, goal: float, at_least: bool) -> str:
    met = value >= goal if at_least else value <= goal
    sign = ">=" if at_least else "<="
    verdict = "goal met" if met else "goal NOT met"
    return f"  {what:<44} {value:>6.2f}  (goal {sign} {goal:g}): {verdict}"


def median_ratio(row: Row, baseline: Row) -> float:
    """The row's throughput over the baseline's, round by round; the median of the rounds
    (each round puts both through the same moment of a shared machine)."""
    return median(
        rate / base for rate, base in zip(row.round_rates, baseline.round_rates, strict=True)
    )


def print_goals(rows: list[Row]) -> None:
    noop, naive, sold_out, open_sale = rows
    noop_p99 = noop.latency(0.99)
    rounds = len(noop.round_rates)
    print()
    print(f"goals (throughput: the median of the {rounds} rounds' ratios):")
    opened, naive_ratio = median_ratio(open_sale, noop), median_ratio(open_sale, naive)
    for what, value, goal, at_least in [
        ("sold out: throughput / no-op", median_ratio(sold_out, noop), SOLD_OUT_GOAL, True),
        ("sold out: p99 / no-op p99", sold_out.latency(0.99) / noop_p99, P99_GOAL, False),
        ("open, queue at limit: throughput / no-op", opened, OPEN_GOAL, True),
        (
            "open, queue at limit: p99 / no-op p99",
            open_sale.latency(0.99) / noop_p99,
            P99_GOAL,
            False,
        ),
        ("open, queue at limit: throughput / naive", naive_ratio, NAIVE_GOAL, True),
    ]:
        print(goal_line(what, value, goal, at_least))
    print(
        f"  (sold out / naive: {sold_out.rate / naive.rate:.1f}x; the no-op itself is "
        f"{noop.rate / naive.rate:.1f}x naive, the most any endpoint can reach on this machine "
        "with this server)"
    )
