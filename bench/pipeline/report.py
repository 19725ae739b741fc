"""bench.pipeline's report: the table, then the notes that say how far to trust it.

The table has a row per measurement: what the shop reached, the baseline beside it, their
ratio, the goal and "goal met" or "goal NOT met". (a) the highest sustained order rate
beside the bare endpoint's, on SQLite and on PostgreSQL with one and two replicas; (b)
POST -> CONFIRMED p50 and p99 at half the SQLite rate; the whole shop's CPU while idle;
(c) each consumer beside raw pika. Below it: the machine and the load generator's own ceiling, then
for each rate search a CPU table (% of one core per process at the highest passing and
the lowest failing rate, and what their threads were doing at the failing one) and what
that says: which process was busiest, whether the cores were all busy, whether the web
workers slept on SQLite's write lock more than they ran; and what to try.
"""

from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass, field

from bench import parts
from bench.cpu import GENERATOR, OTHERS, RABBITMQ
from bench.pipeline.consumers import ConsumerResult
from bench.pipeline.orders import IdleUse, PipelineRun
from bench.pipeline.trials import Search, Trial
from bench.pipeline.waits import WAIT_KINDS
from bench.table import table

PIPELINE_GOAL = 0.25  # the pipeline's sustained rate, as a fraction of the bare endpoint's
PIPELINE_STRETCH = 0.5  # what the issue that set the goal hoped for
LATENCY_GOAL = 0.250  # seconds, p99 of POST -> CONFIRMED at half the sustained rate
CONSUMER_GOAL = 0.25  # each consumer's rate, as a fraction of raw pika's
POSTGRES_SCALE = "inventory=2,order=2"  # the PostgreSQL rows' second `shop up --scale`


def say(text: str) -> None:
    """Print a note, wrapped, indented under the table."""
    print(textwrap.fill(text, width=100, initial_indent="  ", subsequent_indent="    "))


def verdict(met: bool) -> str:
    return "goal met" if met else "goal NOT met"


def web_concurrency() -> str:
    """'2 workers x 8 threads', read off the shop's gunicorn command line."""
    return f"{parts.web_option('--workers')} workers x {parts.web_option('--threads')} threads"


def best_rate(search: Search | None) -> float:
    return search.best.rate if search is not None and search.best is not None else 0.0


IDLE_GOAL = 3.0  # % of one core: the whole shop, doing nothing


@dataclass
class Measured:
    """Everything one run of bench.pipeline measured (None or empty: not run)."""

    pipeline: PipelineRun | None = None  # `shop up` on SQLite: (a), (b), its idle CPU
    bare: Search | None = None
    consumers: list[ConsumerResult] = field(default_factory=list)
    postgres: dict[str, PipelineRun] = field(default_factory=dict)  # "1 replica" -> run
    postgres_missing: str | None = None  # why there are no PostgreSQL rows

    @property
    def searches(self) -> list[Search]:
        runs = [self.pipeline, *self.postgres.values()]
        searches = [run.search for run in runs if run is not None]
        return searches if self.bare is None else [*searches, self.bare]


def rate_row(label: str, run: PipelineRun | None, bare: Search | None) -> list[str]:
    shop_rate, bare_rate = best_rate(run.search if run else None), best_rate(bare)
    both = run is not None and bare is not None and bare_rate > 0
    ratio = shop_rate / bare_rate if both else 0.0
    return [
        label,
        f"{shop_rate:.0f} orders/s" if run is not None else "-",
        f"{bare_rate:.0f} req/s bare" if bare is not None else "-",
        f"{ratio:.2f}" if both else "-",
        f">= {PIPELINE_GOAL} (stretch {PIPELINE_STRETCH})",
        verdict(ratio >= PIPELINE_GOAL) if both else "-",
    ]


def idle_row(label: str, idle: IdleUse) -> list[str]:
    return [
        label,
        f"{idle.shop:.1f} % of a core",
        "",
        "",
        f"< {IDLE_GOAL:.0f} %",
        verdict(idle.shop < IDLE_GOAL),
    ]


def table_rows(measured: Measured) -> list[list[str]]:
    """The table's rows: measurement, shop, baseline, ratio, goal, verdict."""
    rows = []
    pipeline, bare = measured.pipeline, measured.bare
    if pipeline is not None or bare is not None:
        rows.append(rate_row("(a) sustained POST /api/orders rate, SQLite", pipeline, bare))
    for replicas, run in measured.postgres.items():
        rows.append(rate_row(f"(a) the same, PostgreSQL, {replicas}", run, bare))
    latency = pipeline.latency if pipeline is not None else None
    if latency is not None:
        label = f"(b) POST -> CONFIRMED at {latency.rate:.0f} orders/s"
        met = latency.p99 < LATENCY_GOAL and latency.not_confirmed == 0
        rows.append([f"{label}, p50", f"{latency.p50 * 1000:.0f} ms", "", "", "", ""])
        rows.append(
            [
                f"{label}, p99",
                f"{latency.p99 * 1000:.0f} ms",
                "",
                "",
                f"< {LATENCY_GOAL * 1000:.0f} ms",
                verdict(met),
            ]
        )
    if pipeline is not None:
        rows.append(idle_row("whole shop idle (every process), SQLite", pipeline.idle))
    for replicas, run in measured.postgres.items():
        rows.append(idle_row(f"whole shop idle, PostgreSQL, {replicas}", run.idle))
    for result in measured.consumers:
        rows.append(
            [
                f"(c) {result.consumer.name} ({result.consumer.queue})",
                f"{result.rate:.0f} msg/s",
                f"{result.raw_rate:.0f} msg/s raw",
                f"{result.ratio:.2f}",
                f">= {CONSUMER_GOAL}",
                verdict(result.ratio >= CONSUMER_GOAL),
            ]
        )
    return rows


def print_table(measured: Measured) -> None:
    header = ["measurement", "shop", "baseline", "ratio", "goal", "verdict"]
    print()
    print(table(header, table_rows(measured), align="lrrrrr"))


def print_notes(measured: Measured) -> None:
    bare, consumers = measured.bare, measured.consumers
    latency = measured.pipeline.latency if measured.pipeline is not None else None
    print()
    say(
        f"machine: {os.cpu_count()} cores, shared by the load generator, RabbitMQ and the server "
        "(every process of `shop up`, or the bare app's gunicorn), and by whatever else runs "
        "on the machine (the CPU tables below show how much): every number is 'on this "
        "machine, with the generator competing'."
    )
    say(f"web server (shop and bare app alike): gunicorn, {web_concurrency()}.")
    if measured.postgres_missing:
        say(f"no PostgreSQL rows: {measured.postgres_missing}")
    elif measured.postgres:
        say(
            "PostgreSQL rows: every service on one fresh database of the server "
            "BENCH_POSTGRES_URL (else TEST_POSTGRES_URL, else the local one) names, with "
            f"`shop up` and then `shop up --scale {POSTGRES_SCALE}` (its replicas share each "
            "queue as competing consumers, and their relays share the outbox with SKIP LOCKED)."
        )
    runs = {"SQLite": measured.pipeline, **measured.postgres}
    for name, run in runs.items():
        if run is not None:
            idle = run.idle
            say(
                f"idle, {name} ({idle.seconds:.0f} s after a drain, nothing coming in): the "
                f"busiest process was {idle.busiest[0]} at {idle.busiest[1]:.1f} % of a core; "
                f"not counted in the row, RabbitMQ used {idle.rabbitmq:.1f} % and PostgreSQL "
                f"{idle.postgres:.1f} %."
            )
    trials = [trial for search in measured.searches for trial in search.trials]
    others = [trial.cpu[OTHERS] for trial in trials] + [result.others for result in consumers]
    if others and sum(others) / len(others) >= 20:
        say(
            f"WARNING: other processes used {sum(others) / len(others):.0f} % of a core on "
            "average during the measurements (see 'others' on each line); the rates above are "
            "lower than on a quiet machine: run it again then."
        )
    if bare is not None and bare.best is not None:
        load = bare.best.load
        per_request = load.cpu_seconds / max(1, len(load.replies))
        say(
            "load generator: loadtest/crowd.py, pure Python (a pool of threads, one GIL), open "
            "loop (each request starts on schedule), a new connection per request. Against the "
            "bare app at "
            f"{load.rate:.0f} req/s it used {per_request * 1e6:.0f} us of CPU per request "
            f"({load.cpu_seconds / load.duration * 100:.0f} % of a core), so its ceiling is "
            f"about {1 / per_request:.0f} req/s with a core to itself; it started requests at "
            f"most {load.lag_p99 * 1000:.1f} ms late (p99)."
        )
    if latency is not None:
        say(
            f"(b): {latency.orders} orders, {latency.not_confirmed} not CONFIRMED; inside the "
            f"order service (created_at -> updated_at) p50 {latency.server_p50 * 1000:.0f} ms, "
            f"p99 {latency.server_p99 * 1000:.0f} ms."
        )


def print_cpu(name: str, search: Search | None) -> None:
    """CPU per process at the highest passing and the lowest failing rate, and at the
    failing rate what each process's threads were doing (sampled from /proc)."""
    if search is None or search.best is None:
        return
    trials = [trial for trial in (search.best, search.failed) if trial is not None]
    last = trials[-1]
    print(
        f"\n  {name}: CPU in % of one core (one Python process can use ~100 at most), and at "
        f"{last.rate:.0f}/s what its threads did, in % of one thread (threads add up):"
    )
    heads = "".join(f"{f'CPU {trial.rate:.0f}/s':>12}" for trial in trials)
    kinds = "".join(f"{kind:>18}" for kind in WAIT_KINDS[:4])
    print(f"    {'process':<31}{heads}{kinds}")
    labels = sorted(last.cpu, key=lambda label: -last.cpu[label])
    for label in labels:
        cpu = "".join(f"{trial.cpu.get(label, 0.0):>12.0f}" for trial in trials)
        waits = last.waits.get(label)
        kinds = "".join(f"{waits[kind]:>18.0f}" for kind in WAIT_KINDS[:4]) if waits else ""
        print(f"    {label:<31}{cpu}{kinds}")
    totals = "".join(f"{sum(trial.cpu.values()):>12.0f}" for trial in trials)
    print(f"    {f'machine total (of {100 * (os.cpu_count() or 1)})':<31}{totals}")


def server_processes(trial: Trial) -> dict[str, float]:
    """CPU % of the server's own processes (not RabbitMQ, the generator or the rest)."""
    outside = (OTHERS, RABBITMQ, GENERATOR)
    return {label: cpu for label, cpu in trial.cpu.items() if label not in outside}


def cpu_budget(trial: Trial, capacity: float) -> str:
    """CPU per request at a passing rate, and the rate that CPU alone would allow."""
    used = sum(server_processes(trial).values()) + trial.cpu.get(RABBITMQ, 0.0)
    per_request = used / 100 / trial.rate  # seconds of CPU
    generator = trial.cpu.get(GENERATOR, 0.0)
    ceiling = (capacity - generator) / 100 / per_request
    return (
        f"At {trial.rate:.0f}/s the server and RabbitMQ used {per_request * 1000:.1f} ms of CPU "
        f"per request (RabbitMQ {trial.cpu.get(RABBITMQ, 0.0) / trial.rate * 10:.1f} ms): the "
        f"machine's {capacity:.0f} %, less the generator's share, allows about {ceiling:.0f}/s "
        "on CPU alone."
    )


def print_findings(name: str, search: Search | None) -> None:
    """What limited the rate, read off the lowest failing trial's CPU and thread samples."""
    if search is None or search.failed is None or search.best is None:
        return
    trial = search.failed
    capacity = 100 * (os.cpu_count() or 1)
    machine = sum(trial.cpu.values())
    server = server_processes(trial)
    busiest = max(server, key=lambda label: server[label])
    webs = [trial.waits[label] for label in trial.waits if label.startswith("web: gunicorn w")]
    web_sleep = sum(waits["sqlite lock sleep"] for waits in webs) / max(1, len(webs)) / 100
    web_running = sum(waits["running"] for waits in webs) / max(1, len(webs)) / 100
    print()
    say(
        f"{name} at {trial.rate:.0f}/s (the lowest failing rate): the machine was "
        f"{machine:.0f} % busy of {capacity} ({trial.cpu[OTHERS]:.0f} by other processes); "
        f"the busiest server process, {busiest}, used {server[busiest]:.0f} % of a core. "
        f"In each web worker, on average {web_running:.1f} threads were running or waiting "
        f"for a core, and {web_sleep:.1f} were asleep in SQLite's busy handler."
    )
    say(cpu_budget(search.best, capacity))
    if server[busiest] >= 90:
        say(f"-> {busiest} is CPU-bound: one Python process cannot use a second core.")
    if machine >= 0.9 * capacity:
        say("-> the cores were nearly all busy: every process waits for one.")
    if web_sleep > web_running:
        say(
            "-> the web workers slept waiting for SQLite's write lock more than they ran: "
            "lock waits, not CPU, limit the web."
        )
        if name.startswith("(a) pipeline"):
            print(PIPELINE_SUGGESTIONS.format(web=web_concurrency()))


PIPELINE_SUGGESTIONS = """\
  (a) suggestions: orders.db is written by every web request thread ({web}) and by the
      order process's relay, saga and read model. Its writers queue for SQLite's one write
      lock (messaging/database.py begins a writing transaction with BEGIN IMMEDIATE; reads
      use a plain BEGIN and take no lock), and a writer that finds it taken sleeps 1, 2, 5,
      10, 15, 20, 25 ... ms (SQLite's busy handler) instead of waking when it frees. The
      consumers already take the lock once per batch and the relay only when it has rows.
      - make each web request's write transaction shorter (nothing but the INSERTs in it);
      - or put the services on PostgreSQL (*_DATABASE_URL), where writers lock rows, not the
        whole file, and `shop up --scale order=2` adds processes that share the work."""
