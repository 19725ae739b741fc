"""How cheaply does the flash sale answer a crowd? Run `python -m bench.flash_sale`.

One run, one table. Every row is served by the same gunicorn command line, the shop's own
web process (shop.processes.process_specs: 2 gthread workers x 8 threads, access log to
stdout); only the app at its end differs. Every row has its own fresh RabbitMQ vhost (made
and deleted through the management API), its own SQLite database in a temporary folder,
and the same FLASH_SALE_QUEUE_LIMIT (default 1000). Every request is a POST with a
distinct customer (a new phone number each), from --connections keep-alive connections,
closed loop.

  no-op endpoint           bench_app() below: reads the body with the shop's own
                           read_body(PurchaseIn) and answers 202 with a ticket-shaped body.
                           No database, no broker. The yardstick: the cost of gunicorn +
                           Flask + the JSON parsing, which any endpoint pays.
  naive: connect+count     bench_app() below, the pattern the RabbitMQ tutorials teach: per
                           request a new pika.BlockingConnection, a passive queue_declare of
                           flash-sale.requests to read its length, compare with the limit,
                           publish when below (the count-then-publish race), close. Measured
                           with the queue at its limit, as the open-sale row.
  sold out (the shop)      the real shop: `python -m shop up` as a subprocess (every process,
                           SQLite under the temporary folder's var/), a product, a sale with
                           quota 1, one purchase, and a wait until GET /api/flash-sales/{id}
                           says sold_out. Then the crowd: every answer should be 410, from
                           the admission gate's memory (order_service/admission.py).
  open, queue at limit     the real web app (order_service.app:create_app()) under the same
                           gunicorn, without the order process: nobody drains
                           flash-sale.requests. A sale with quota 1,000,000; the warm-up's
                           purchases are admitted (202) and fill the queue (pika tops it up if
                           the warm-up did not); from then on every answer should be 429: from
                           memory, except one request per web process every 0.25 s that asks
                           the broker (and is refused by reject-publish).

The three servers run side by side. After a warm-up of each, the rows are measured in
--rounds rounds, each row for --duration / --rounds seconds per round, in a rotated order:
the machine is shared (with RabbitMQ, the generator, and whatever else runs on it), and
interleaving puts every row through the same ups and downs, so the ratios compare like
with like. A row's numbers are its rounds added up; p50/p99 pool the rounds' latency
distributions.

How to read the table: `req/s` is answers per second (any status); p50/p99 are the
latencies the generator saw (closed loop: each connection sends its next request when the
previous answer is in, so by Little's law latency is about connections / req/s); `vs
no-op` is the row's req/s divided by the no-op's, and `p99 x` its p99 divided by the
no-op's p99; `statuses` counts the answers by HTTP status. The goals:
  - sold out: at least 0.90 of the no-op's throughput, p99 at most 2x the no-op's;
  - open, queue at limit: at least 0.50 of the no-op's throughput, p99 at most 2x;
  - the open-sale row at least 15x the naive baseline's throughput (no endpoint can go
    beyond the no-op, so the output also says how far the no-op itself is above naive).
Below the table, where the CPU went in each row, in % of one core, from /proc/PID/stat:
`web` the gunicorn processes, `supervisor` `shop up` itself (it also pumps every
access-log line of the web processes), `services` the shop's other processes (order,
inventory, coupon, notification), `broker` RabbitMQ (shared with anything else using
it), `generator`, `other` the rest of the machine (other work on a shared machine),
`machine` the total (100 % per core); `web ms/answer` the web processes' CPU
milliseconds per answer (the cost of the endpoint itself, the least noisy number here);
`busiest worker` the share of the web CPU that the busier gunicorn worker took, averaged
over the rounds (50 % is even; gthread workers keep the keep-alive connections they
accepted, so one worker may serve most of them and be bound by its GIL). Then the goals,
each "goal met" or "goal NOT met".

The load generator is wrk (the Debian package `wrk`, a C program) with a Lua script that
makes each request's body and counts the statuses; when wrk is not installed, a Python
generator (threads, http.client keep-alive) runs instead. The output says which one ran
and its ceiling: the no-op row is the most the generator and the server reach together,
and the generator's CPU per request says how much of the machine it takes. The script
exits 0 whether or not the goals are met (it is a benchmark, not a test), and 1 when a
measurement could not be made. The numbers move from run to run; on a busy machine, a lot.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path

import pika
import pika.exceptions
import requests
from flask import Flask, Response, jsonify
from sqlalchemy import update

from bench.support import (
    HOST,
    answers,
    descendants,
    free_port,
    fresh_vhost,
    proc_stat,
    running,
    wait_until,
)
from messaging.connection import open_connection
from messaging.database import make_engine, make_session_factory
from messaging.envelope import Envelope
from messaging.migrations import upgrade
from messaging.settings import Settings
from messaging.topology import FLASH_SALE_QUEUE, declare_topology
from order_service.api import read_body
from order_service.flash_sale import PURCHASE_REQUEST, PurchaseIn
from order_service.handlers import SERVICE
from order_service.models import FlashSale
from order_service.problems import ApiProblem, problem
from shop.processes import process_specs

REPO = Path(__file__).resolve().parent.parent

BENCH_APP = "bench.flash_sale:bench_app()"
SHOP_APP = "order_service.app:create_app()"
START_SECONDS = 60.0  # for `shop up` or gunicorn to answer
SETTLE_SECONDS = 30.0  # for the first sale to be decided, the queue to fill, ...
REQUEST_TIMEOUT = 10.0
OPEN_SALE_QUOTA = 1_000_000  # the most FlashSaleIn takes
CUSTOMER_NAME = "Crowd Member"
SERVER_GROUPS = ("web", "supervisor", "services")
BUSY_MACHINE = 25.0  # % of a core used outside the bench, on average: say the machine was busy

SOLD_OUT_GOAL = 0.90  # of the no-op's throughput
OPEN_GOAL = 0.50
P99_GOAL = 2.0  # at most this many times the no-op's p99
NAIVE_GOAL = 15.0  # the open-sale row, times the naive baseline's throughput


class BenchFailure(Exception):
    """A measurement could not be made: the numbers would be meaningless."""


# --- The bench's own app: the no-op endpoint and the naive baseline ----------------------------


def bench_app() -> Flask:
    """Two endpoints beside the shop's, under the same gunicorn command line.

    POST /noop/flash-sales/<id>/purchases   parse the body as the shop does, answer 202.
    POST /naive/flash-sales/<id>/purchases  connect, count, publish, close (per request).
    The naive one reads AMQP_URL and FLASH_SALE_QUEUE_LIMIT; the bench declares the
    topology on that vhost before it sends any request there.
    """
    settings = Settings.from_env()
    limit = settings.flash_sale_queue_limit
    app = Flask(__name__)
    app.json.sort_keys = False

    @app.errorhandler(ApiProblem)
    def on_api_problem(error: ApiProblem) -> Response:
        return problem(error.status, error.title, error.detail, error.errors, error.headers)

    @app.post("/noop/flash-sales/<sale_id>/purchases")
    def noop(sale_id: str) -> tuple[Response, int]:
        read_body(PurchaseIn)
        ticket_id = secrets.token_hex(20)
        status_url = f"/noop/flash-sales/{sale_id}/tickets/{ticket_id}"
        return jsonify(ticket_id=ticket_id, status="QUEUED", status_url=status_url), 202

    @app.post("/naive/flash-sales/<sale_id>/purchases")
    def naive(sale_id: str) -> tuple[Response, int] | Response:
        command, _ = read_body(PurchaseIn)
        connection = pika.BlockingConnection(pika.URLParameters(settings.amqp_url))
        try:
            channel = connection.channel()
            depth = channel.queue_declare(FLASH_SALE_QUEUE, passive=True).method.message_count
            if depth >= limit:
                return problem(
                    429,
                    "Too Many Requests",
                    "The sale is at capacity; try again shortly.",
                    headers={"Retry-After": "1"},
                )
            ticket_id = secrets.token_hex(20)
            request = purchase_request(sale_id, ticket_id, command.customer.model_dump())
            channel.basic_publish(
                "", FLASH_SALE_QUEUE, request.encoded_body(), request.properties()
            )
        finally:
            connection.close()
        status_url = f"/naive/flash-sales/{sale_id}/tickets/{ticket_id}"
        return jsonify(ticket_id=ticket_id, status="QUEUED", status_url=status_url), 202

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok")

    return app


def purchase_request(sale_id: str, ticket_id: str, customer: dict[str, object]) -> Envelope:
    """What the shop's gate publishes into flash-sale.requests."""
    return Envelope.new(
        PURCHASE_REQUEST,
        {"ticket_id": ticket_id, "sale_id": sale_id, "customer": customer},
        correlation_id=ticket_id,
        app_id=SERVICE,
    )


# --- Small helpers -------------------------------------------------------------------------------


def admin(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def post(url: str, body: dict[str, object], token: str | None = None) -> dict:
    response = requests.post(
        url, json=body, headers=admin(token) if token else {}, timeout=REQUEST_TIMEOUT
    )
    if response.status_code not in (201, 202):
        raise BenchFailure(f"POST {url}: {response.status_code} {response.text[:300]}")
    return response.json()


def weighted_percentile(samples: list[tuple[float, float]], fraction: float) -> float:
    """Nearest rank over (value, weight) pairs; 0 for no samples."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    wanted = fraction * sum(weight for _, weight in ordered)
    total = 0.0
    for value, weight in ordered:
        total += weight
        if total >= wanted:
            return value
    return ordered[-1][0]


def queue_depth(amqp_url: str) -> int:
    with open_connection(amqp_url, "bench flash-sale: depth") as connection:
        channel = connection.channel()
        return channel.queue_declare(FLASH_SALE_QUEUE, passive=True).method.message_count


def declare(amqp_url: str, limit: int) -> None:
    with open_connection(amqp_url, "bench flash-sale: topology") as connection:
        declare_topology(connection.channel(), limit)


def depth_at_limit(amqp_url: str, limit: int) -> int:
    """The queue's depth once it has reached `limit`. A quorum queue's reject-publish may
    let a few concurrent publishes past the limit, so the depth may be a little above it."""
    if wait_until(lambda: queue_depth(amqp_url) >= limit, SETTLE_SECONDS, pause=0.1) is None:
        raise BenchFailure(f"flash-sale.requests did not reach its limit {limit}")
    return queue_depth(amqp_url)


def fill_queue(amqp_url: str, limit: int, sale_id: str) -> int:
    """Top flash-sale.requests up to `limit` with pika; return how many it took."""
    with open_connection(amqp_url, "bench flash-sale: fill") as connection:
        channel = connection.channel()
        depth = channel.queue_declare(FLASH_SALE_QUEUE, passive=True).method.message_count
        missing = max(0, limit - depth)
        channel.confirm_delivery()
        for number in range(missing):
            customer = {"name": CUSTOMER_NAME, "phone": f"+4930{number:09d}"}
            request = purchase_request(sale_id, secrets.token_hex(20), customer)
            with suppress(pika.exceptions.NackError):  # reject-publish: the queue is full
                channel.basic_publish(
                    "", FLASH_SALE_QUEUE, request.encoded_body(), request.properties()
                )
        return missing


# --- Processes: the servers, and what their CPU did --------------------------------------------


def gunicorn_argv(port: int, app: str) -> list[str]:
    """The shop's own web command line (shop.processes), with another app at the end."""
    web = next(
        spec
        for spec in process_specs(Settings(http_host=HOST, http_port=port))
        if spec.name == "web"
    )
    if web.argv[-1] != SHOP_APP:
        raise BenchFailure(f"the web process no longer ends with {SHOP_APP}: {web.argv}")
    return [*web.argv[:-1], app]


def gunicorn_flags() -> str:
    argv = gunicorn_argv(8000, SHOP_APP)
    return " ".join(
        f"{flag} {argv[argv.index(flag) + 1]}"
        for flag in ("--workers", "--worker-class", "--threads")
    )


def cpu_seconds(pid: int) -> float | None:
    fields = proc_stat(Path(f"/proc/{pid}/stat"))
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def command_line(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def rabbitmq_pids() -> list[int]:
    return [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and any("beam.smp" in arg for arg in command_line(int(entry.name)))
    ]


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent not idle (all cores), from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def watched_processes(server_pid: int) -> dict[int, str]:
    """The server's processes by group: 'web' (gunicorn), 'supervisor' (`shop up` itself),
    'services' (the shop's other processes); and 'broker' (RabbitMQ)."""
    groups = {pid: "broker" for pid in rabbitmq_pids()}
    for pid in [server_pid, *descendants(server_pid)]:
        if any("gunicorn" in arg for arg in command_line(pid)):
            groups[pid] = "web"
        else:
            groups[pid] = "supervisor" if pid == server_pid else "services"
    return groups


@dataclass
class CpuUse:
    """CPU seconds per group of processes over `elapsed` seconds of wall clock."""

    elapsed: float
    groups: Counter[str]
    busiest_web_share: float | None  # the busier gunicorn process's share of the web CPU


class CpuMeter:
    def __init__(self, processes: dict[int, str]) -> None:
        self.processes = processes
        self._before: dict[int, float] = {}
        self._machine = 0.0
        self._started = 0.0

    def start(self) -> None:
        self._before = {pid: cpu_seconds(pid) or 0.0 for pid in self.processes}
        self._machine = machine_busy_seconds()
        self._started = time.monotonic()

    def stop(self) -> CpuUse:
        elapsed = time.monotonic() - self._started
        groups: Counter[str] = Counter()
        web: list[float] = []
        for pid, group in self.processes.items():
            now = cpu_seconds(pid)
            if now is None:
                continue
            used = now - self._before[pid]
            groups[group] += used
            if group == "web":
                web.append(used)
        groups["machine"] = machine_busy_seconds() - self._machine
        share = max(web) / sum(web) if web and sum(web) > 0 else None
        return CpuUse(elapsed, groups, share)


# --- The load generators ----------------------------------------------------------------------

# The latency distribution of one wrk run, as its values at these percentiles (the middle of
# each interval) and the width of each interval in percent; the rounds are pooled from them.
QUANTILE_GRID: list[tuple[float, float]] = [(k + 0.5, 1.0) for k in range(99)] + [
    (99.05 + k / 10, 0.1) for k in range(10)
]

# wrk calls request() for every request and response() for every answer, in each of its
# threads (each thread its own Lua state); setup() and done() run in the main state, which
# keeps the threads so that done() can add up their status counts.
WRK_SCRIPT = """
local threads = {}
local count = 0
local grid = {GRID}

function setup(thread)
  thread:set("thread_id", count)
  count = count + 1
  table.insert(threads, thread)
end

function init(args)
  counter = 0
  statuses = {}
  headers = {["Content-Type"] = "application/json"}
end

function request()
  counter = counter + 1
  local phone = string.format("+%d%d%08d", SERIES, thread_id, counter)
  local body = '{"customer": {"name": "NAME", "phone": "' .. phone .. '"}}'
  return wrk.format("POST", nil, headers, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local totals = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      totals[status] = (totals[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(totals) do
    table.insert(parts, string.format('"%d": %d', status, n))
  end
  local values = {}
  for _, p in ipairs(grid) do
    table.insert(values, string.format("%d", latency:percentile(p)))
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"duration_us": %d, "errors": %d, "statuses": {%s}, "quantiles_us": [%s]}\\n',
    summary.duration, e.connect + e.read + e.write + e.timeout,
    table.concat(parts, ", "), table.concat(values, ", ")))
end
"""


@dataclass
class Load:
    """What one generator run saw."""

    seconds: float
    statuses: Counter[int]
    errors: int  # connection errors and timeouts (no answer at all)
    latencies_ms: list[tuple[float, float]]  # (value, weight); the weights add up to answers
    generator_cpu: float  # CPU seconds the generator spent

    @property
    def answers(self) -> int:
        return sum(self.statuses.values())

    @property
    def rate(self) -> float:
        return self.answers / self.seconds


class Generator:
    """Sends POSTs with a distinct customer each, from `connections` keep-alive connections."""

    name = ""
    _series = 10  # a two-digit phone prefix per run, so that no two runs share a customer

    def __init__(self, connections: int, threads: int) -> None:
        self.connections = connections
        self.threads = max(1, min(threads, connections, 9))

    def next_series(self) -> int:
        Generator._series = Generator._series + 1 if Generator._series < 99 else 11
        return Generator._series

    def slice_seconds(self, seconds: float) -> float:
        """The nearest duration this generator can run for."""
        return seconds

    def run(self, port: int, path: str, seconds: float) -> Load:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


class Wrk(Generator):
    name = "wrk"

    def __init__(self, connections: int, threads: int, binary: str) -> None:
        super().__init__(connections, threads)
        self.binary = binary

    def describe(self) -> str:
        version = subprocess.run(
            [self.binary, "--version"], capture_output=True, text=True, check=False
        ).stdout.split("\n")[0]
        return (
            f"wrk ({version.split(' Copyright')[0].strip()}, C, event loop), "
            f"{self.threads} thread(s), {self.connections} keep-alive connections, closed loop"
        )

    def slice_seconds(self, seconds: float) -> float:
        return float(max(1, round(seconds)))  # wrk takes whole seconds

    def run(self, port: int, path: str, seconds: float) -> Load:
        grid = ", ".join(f"{p:g}" for p, _ in QUANTILE_GRID)
        script = (
            WRK_SCRIPT.replace("{GRID}", "{" + grid + "}")
            .replace("SERIES", str(self.next_series()))
            .replace("NAME", CUSTOMER_NAME)
        )
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as file:
            file.write(script)
        argv = [
            self.binary,
            "--threads",
            str(self.threads),
            "--connections",
            str(self.connections),
            "--duration",
            f"{self.slice_seconds(seconds):.0f}s",
            "--timeout",
            f"{REQUEST_TIMEOUT:.0f}s",
            "--script",
            file.name,
            f"http://{HOST}:{port}{path}",
        ]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        try:
            finished = subprocess.run(
                argv, capture_output=True, text=True, timeout=seconds + 60, check=False
            )
        finally:
            os.unlink(file.name)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        line = next(
            (line for line in finished.stdout.splitlines() if line.startswith("WRK_RESULT ")), None
        )
        if finished.returncode != 0 or line is None:
            raise BenchFailure(f"wrk failed ({finished.returncode}): {finished.stderr.strip()}")
        result = json.loads(line.removeprefix("WRK_RESULT "))
        statuses = Counter({int(status): n for status, n in result["statuses"].items()})
        answered = sum(statuses.values())
        latencies = [
            (value / 1000, answered * width / 100)
            for value, (_, width) in zip(result["quantiles_us"], QUANTILE_GRID, strict=True)
        ]
        return Load(
            seconds=result["duration_us"] / 1e6,
            statuses=statuses,
            errors=result["errors"],
            latencies_ms=latencies if answered else [],
            generator_cpu=(after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
        )


class PythonLoad(Generator):
    """The fallback: one thread per connection, http.client keep-alive (the GIL is its limit)."""

    name = "python"
    reason = "wrk is not installed (apt-get install wrk)"

    def describe(self) -> str:
        return (
            f"Python (threads + http.client keep-alive: one process, bound by its GIL), "
            f"{self.connections} threads and connections, closed loop; {self.reason}"
        )

    def run(self, port: int, path: str, seconds: float) -> Load:
        series = self.next_series()
        headers = {"Content-Type": "application/json"}
        start = threading.Barrier(self.connections + 1)
        results: list[tuple[list[float], Counter[int], int]] = []
        lock = threading.Lock()
        stop_at = [0.0]

        def worker(index: int) -> None:
            latencies: list[float] = []
            statuses: Counter[int] = Counter()
            errors = 0
            connection = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT)
            number = 0
            start.wait()
            while time.monotonic() < stop_at[0]:
                number += 1
                phone = f"+{series}{index:03d}{number:07d}"
                body = json.dumps({"customer": {"name": CUSTOMER_NAME, "phone": phone}})
                sent = time.perf_counter()
                try:
                    connection.request("POST", path, body, headers)
                    answer = connection.getresponse()
                    answer.read()
                except (OSError, http.client.HTTPException):
                    errors += 1
                    connection.close()
                    connection = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT)
                    continue
                latencies.append(1000 * (time.perf_counter() - sent))
                statuses[answer.status] += 1
            connection.close()
            with lock:
                results.append((latencies, statuses, errors))

        workers = [
            threading.Thread(target=worker, args=(index,), daemon=True)
            for index in range(self.connections)
        ]
        for thread in workers:
            thread.start()
        before = resource.getrusage(resource.RUSAGE_SELF)
        stop_at[0] = time.monotonic() + seconds
        started = time.monotonic()
        start.wait()
        for thread in workers:
            thread.join(seconds + REQUEST_TIMEOUT + 5)
        elapsed = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
        statuses: Counter[int] = Counter()
        for _, counts, _ in results:
            statuses.update(counts)
        return Load(
            seconds=elapsed,
            statuses=statuses,
            errors=sum(errors for _, _, errors in results),
            latencies_ms=[(value, 1.0) for values, _, _ in results for value in values],
            generator_cpu=(after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
        )


def pick_generator(choice: str, connections: int, threads: int) -> Generator:
    binary = shutil.which("wrk")
    if choice == "wrk" and binary is None:
        raise BenchFailure("--generator wrk, but wrk is not installed (apt-get install wrk)")
    if binary is not None and choice != "python":
        return Wrk(connections, threads, binary)
    generator = PythonLoad(connections, threads)
    if binary is not None:
        generator.reason = "chosen with --generator python (wrk is installed)"
    return generator


# --- The rows: a server and a path each, measured round by round ------------------------------


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

    def add(self, load: Load, cpu: CpuUse) -> None:
        self.seconds += load.seconds
        self.statuses.update(load.statuses)
        self.errors += load.errors
        self.latencies_ms.extend(load.latencies_ms)
        self.generator_cpu += load.generator_cpu
        self.cpu.update(cpu.groups)
        self.cpu["generator"] += load.generator_cpu
        self.cpu_elapsed += cpu.elapsed
        if cpu.busiest_web_share is not None:
            self.busiest_shares.append(cpu.busiest_web_share)
        self.round_rates.append(load.rate)

    @property
    def answers(self) -> int:
        return sum(self.statuses.values())

    @property
    def rate(self) -> float:
        return self.answers / self.seconds if self.seconds else 0.0

    def latency(self, fraction: float) -> float:
        return weighted_percentile(self.latencies_ms, fraction)

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
        meter.start()
        load = generator.run(row.port, row.path, seconds)
        use = meter.stop()
        if load.answers == 0:
            raise BenchFailure(f"{row.name}: no answers at all ({load.errors} errors)")
        row.add(load, use)


@dataclass
class Context:
    args: argparse.Namespace
    folder: Path
    generator: Generator
    stack: ExitStack


def server_env(**changes: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_DATABASE_URL")}
    env.update(PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", **changes)
    return env


def wait_for(name: str, url: str) -> None:
    if wait_until(lambda: answers(url), START_SECONDS) is None:
        raise BenchFailure(f"{name} did not answer at {url} within {START_SECONDS:.0f} s")


def start_bench_app(context: Context) -> tuple[Row, Row, str]:
    """gunicorn serving bench_app(): the no-op and the naive rows."""
    limit = context.args.queue_limit
    amqp_url = context.stack.enter_context(fresh_vhost("flash-sale-bench-app"))
    declare(amqp_url, limit)
    env = server_env(AMQP_URL=amqp_url, FLASH_SALE_QUEUE_LIMIT=str(limit))
    port = free_port()
    log = context.folder / "bench-app.log"
    pid = context.stack.enter_context(
        running(gunicorn_argv(port, BENCH_APP), context.folder, env, log)
    )
    noop = Row("noop", "no-op endpoint", port, "/noop/flash-sales/s1/purchases", pid)
    naive = Row("naive", "naive: connect+count", port, "/naive/flash-sales/s1/purchases", pid)
    return noop, naive, amqp_url


def start_shop(context: Context) -> tuple[Row, str, str]:
    """`shop up` in its own folder on its own vhost."""
    folder = context.folder / "shop"
    folder.mkdir()
    amqp_url = context.stack.enter_context(fresh_vhost("flash-sale-shop"))
    port, token = free_port(), secrets.token_urlsafe(16)
    env = server_env(
        AMQP_URL=amqp_url,
        SHOP_ADMIN_TOKEN=token,
        SHOP_HTTP_HOST=HOST,
        SHOP_HTTP_PORT=str(port),
        FLASH_SALE_QUEUE_LIMIT=str(context.args.queue_limit),
    )
    argv = [sys.executable, "-m", "shop", "up"]
    pid = context.stack.enter_context(running(argv, folder, env, folder / "shop-up.log"))
    row = Row("sold_out", "sold out (the shop)", port, "", pid)
    row.notes.append(
        "`shop up` pumps every access-log line of the web processes through its supervisor "
        "(the 'supervisor' CPU column; 'services' are the order, inventory, coupon and "
        "notification processes)"
    )
    return row, amqp_url, token


def hold_units_as_the_inventory_would(database: Path, sale_id: str) -> None:
    """No inventory runs beside this web app: mark the sale's units held ourselves, as
    `inventory.allocated` would, so that the sale opens."""
    engine = make_engine(f"sqlite:///{database}")
    try:
        with make_session_factory(engine).begin() as session:
            session.execute(
                update(FlashSale).where(FlashSale.id == sale_id).values(allocation="held")
            )
    finally:
        engine.dispose()


def start_open_web(context: Context) -> tuple[Row, str, str]:
    """The shop's web app under gunicorn, alone: no order process drains the queue."""
    folder = context.folder / "open"
    folder.mkdir()
    database_url = f"sqlite:///{folder / 'orders.db'}"
    upgrade(SERVICE, database_url)
    amqp_url = context.stack.enter_context(fresh_vhost("flash-sale-open"))
    token = secrets.token_urlsafe(16)
    env = server_env(
        AMQP_URL=amqp_url,
        ORDER_DATABASE_URL=database_url,
        SHOP_ADMIN_TOKEN=token,
        FLASH_SALE_QUEUE_LIMIT=str(context.args.queue_limit),
    )
    port = free_port()
    pid = context.stack.enter_context(
        running(gunicorn_argv(port, SHOP_APP), folder, env, folder / "web.log")
    )
    return Row("open", "open, queue at limit", port, "", pid), amqp_url, token


def sell_out(context: Context, row: Row, token: str) -> str:
    """A product, a sale of quota 1, one purchase; wait until the sale says sold_out."""
    base = f"http://{HOST}:{row.port}"
    wait_for("`shop up`", f"{base}/healthz")
    sku = "BENCH-FLASH-1"
    product = {"sku": sku, "name": "Flash kettle", "price_cents": 2500, "stock": 10}
    post(f"{base}/api/products", product, token)
    sale = post(f"{base}/api/flash-sales", {"sku": sku, "price_cents": 999, "quota": 1}, token)
    sale_url = f"{base}/api/flash-sales/{sale['id']}"

    def opened() -> bool:  # once the inventory holds its unit
        return requests.get(sale_url, timeout=REQUEST_TIMEOUT).json()["status"] == "open"

    if wait_until(opened, SETTLE_SECONDS, pause=0.1) is None:
        raise BenchFailure(f"the sale did not open within {SETTLE_SECONDS:.0f} s")
    post(f"{sale_url}/purchases", {"customer": {"name": "First", "phone": "+4917012345"}})

    def sold_out() -> bool:
        return requests.get(sale_url, timeout=REQUEST_TIMEOUT).json()["status"] == "sold_out"

    if wait_until(sold_out, SETTLE_SECONDS, pause=0.1) is None:
        raise BenchFailure(f"the sale was not sold out within {SETTLE_SECONDS:.0f} s")
    row.path = f"/api/flash-sales/{sale['id']}/purchases"
    if context.args.warmup > 0:
        context.generator.run(row.port, row.path, context.args.warmup)
    return sale_url


def open_sale(context: Context, row: Row, amqp_url: str, token: str) -> None:
    """A sale with a huge quota; the warm-up's admissions fill the queue (pika tops it up)."""
    limit = context.args.queue_limit
    base = f"http://{HOST}:{row.port}"
    wait_for("the web app", f"{base}/healthz")
    sku = "BENCH-FLASH-2"
    product = {"sku": sku, "name": "Flash toaster", "price_cents": 3000}
    post(f"{base}/api/products", {**product, "stock": OPEN_SALE_QUOTA}, token)
    sale = post(
        f"{base}/api/flash-sales",
        {"sku": sku, "price_cents": 1500, "quota": OPEN_SALE_QUOTA},
        token,
    )
    hold_units_as_the_inventory_would(context.folder / "open" / "orders.db", sale["id"])
    row.path = f"/api/flash-sales/{sale['id']}/purchases"
    warmup = context.generator.run(row.port, row.path, max(1.0, context.args.warmup))
    admitted = warmup.statuses.get(202, 0)
    topped_up = 0
    if wait_until(lambda: queue_depth(amqp_url) >= limit, 2.0, pause=0.1) is None:
        topped_up = fill_queue(amqp_url, limit, sale["id"])
    depth = depth_at_limit(amqp_url, limit)
    row.notes.append(
        f"warm-up: {admitted} admitted (202) through the gate in {warmup.seconds:.1f} s, "
        f"{topped_up} topped up with pika; measured with the queue at {depth} "
        f"(limit {limit}), nobody draining"
    )


def fill_for_naive(context: Context, row: Row, amqp_url: str) -> None:
    limit = context.args.queue_limit
    wait_for("the bench app", f"http://{HOST}:{row.port}/healthz")
    warmup = context.generator.run(row.port, row.path, context.args.warmup)
    topped_up = fill_queue(amqp_url, limit, "s1")
    depth = depth_at_limit(amqp_url, limit)
    row.notes.append(
        f"warm-up: {warmup.statuses.get(202, 0)} published through the endpoint in "
        f"{warmup.seconds:.1f} s, {topped_up} topped up with pika; measured with the queue "
        f"at {depth} (limit {limit})"
    )


def run(context: Context) -> list[Row]:
    args = context.args
    generator = context.generator
    seconds = generator.slice_seconds(args.duration / args.rounds)
    print(
        f"gunicorn as the shop's web process ({gunicorn_flags()}); generator: "
        f"{generator.name}, {args.connections} connections; {args.rounds} rounds of "
        f"{seconds:g} s per row after {args.warmup:g} s of warm-up; "
        f"FLASH_SALE_QUEUE_LIMIT={args.queue_limit}",
        flush=True,
    )
    print("starting gunicorn (bench app), `shop up`, gunicorn (the shop's web app) ...")
    noop, naive, bench_amqp = start_bench_app(context)
    sold_out, _, shop_token = start_shop(context)
    open_row, open_amqp, open_token = start_open_web(context)
    rows = [noop, naive, sold_out, open_row]

    print("preparing: the no-op warm-up; the naive queue filled ...", flush=True)
    wait_for("the bench app", f"http://{HOST}:{noop.port}/healthz")
    if args.warmup > 0:
        generator.run(noop.port, noop.path, args.warmup)
    fill_for_naive(context, naive, bench_amqp)
    print("preparing: a sale sold out in the shop ...", flush=True)
    sale_url = sell_out(context, sold_out, shop_token)
    print("preparing: an open sale, its queue filled ...", flush=True)
    open_sale(context, open_row, open_amqp, open_token)
    for row in rows:
        row.processes = watched_processes(row.server_pid)

    for number in range(args.rounds):
        order = rows[number % len(rows) :] + rows[: number % len(rows)]
        measure_round(generator, order, seconds)
        rates = " | ".join(f"{row.name} {row.round_rates[-1]:,.0f}" for row in rows)
        print(f"round {number + 1}/{args.rounds} (req/s): {rates}", flush=True)

    if queue_depth(open_amqp) < args.queue_limit:
        open_row.notes.append("the queue fell below its limit during the run: drained?")
    if requests.get(sale_url, timeout=REQUEST_TIMEOUT).json()["status"] != "sold_out":
        sold_out.notes.append("the sale is no longer sold out after the run!")
    print("stopping the servers ...", flush=True)
    return rows


# --- The report ----------------------------------------------------------------------------------


def format_statuses(row: Row) -> str:
    parts = [f"{status}:{n}" for status, n in sorted(row.statuses.items())]
    if row.errors:
        parts.append(f"errors:{row.errors}")
    return " ".join(parts)


def print_table(rows: list[Row]) -> None:
    noop = rows[0]
    noop_p99 = noop.latency(0.99)
    print()
    print(
        f"| {'row':<22} | {'req/s':>7} | {'p50 ms':>6} | {'p99 ms':>6} | {'vs no-op':>8} "
        f"| {'p99 x':>5} | {'statuses (all rounds)':<26} |"
    )
    print(f"|{'-' * 24}|{'-' * 8}:|{'-' * 7}:|{'-' * 7}:|{'-' * 9}:|{'-' * 6}:|{'-' * 28}|")
    for row in rows:
        p99 = row.latency(0.99)
        print(
            f"| {row.name:<22} | {row.rate:>7,.0f} | {row.latency(0.5):>6.1f} | {p99:>6.1f} "
            f"| {row.rate / noop.rate:>7.2f}x | {p99 / noop_p99:>4.1f}x "
            f"| {format_statuses(row):<26} |"
        )
    cores = os.cpu_count() or 1
    print()
    print(
        f"Where the CPU went (% of one core; {cores} cores, so 'machine' is at most {100 * cores}):"
    )
    print()
    print(
        f"| {'row':<22} | {'web':>4} | {'supervisor':>10} | {'services':>8} | {'broker':>6} "
        f"| {'generator':>9} | {'other':>5} | {'machine':>7} | {'web ms/answer':>13} "
        f"| {'busiest worker':>14} |"
    )
    print(
        f"|{'-' * 24}|{'-' * 5}:|{'-' * 11}:|{'-' * 9}:|{'-' * 7}:|{'-' * 10}:|{'-' * 6}:"
        f"|{'-' * 8}:|{'-' * 14}:|{'-' * 15}:|"
    )
    for row in rows:
        share = sum(row.busiest_shares) / len(row.busiest_shares) if row.busiest_shares else 0
        print(
            f"| {row.name:<22} | {row.cpu_percent('web'):>4.0f} "
            f"| {row.cpu_percent('supervisor'):>10.0f} | {row.cpu_percent('services'):>8.0f} "
            f"| {row.cpu_percent('broker'):>6.0f} | {row.cpu_percent('generator'):>9.0f} "
            f"| {row.cpu_percent('other'):>5.0f} | {row.cpu_percent('machine'):>7.0f} "
            f"| {row.web_ms_per_answer:>13.3f} | {100 * share:>13.0f}% |"
        )
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


def print_goals(rows: list[Row]) -> None:
    noop, naive, sold_out, open_sale = rows
    noop_p99 = noop.latency(0.99)
    print()
    print("goals:")
    for what, value, goal, at_least in [
        ("sold out: throughput / no-op", sold_out.rate / noop.rate, SOLD_OUT_GOAL, True),
        ("sold out: p99 / no-op p99", sold_out.latency(0.99) / noop_p99, P99_GOAL, False),
        ("open, queue at limit: throughput / no-op", open_sale.rate / noop.rate, OPEN_GOAL, True),
        (
            "open, queue at limit: p99 / no-op p99",
            open_sale.latency(0.99) / noop_p99,
            P99_GOAL,
            False,
        ),
        ("open, queue at limit: throughput / naive", open_sale.rate / naive.rate, NAIVE_GOAL, True),
    ]:
        print(goal_line(what, value, goal, at_least))
    print(
        f"  (sold out / naive: {sold_out.rate / naive.rate:.1f}x; the no-op itself is "
        f"{noop.rate / naive.rate:.1f}x naive, the most any endpoint can reach on this machine "
        "with this server)"
    )


# --- Main ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.flash_sale",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--duration", type=float, default=8.0, help="seconds of load per row (default 8)"
    )
    parser.add_argument(
        "--rounds", type=int, default=4, help="rounds the duration is split into (default 4)"
    )
    parser.add_argument(
        "--connections", type=int, default=32, help="keep-alive connections (default 32)"
    )
    parser.add_argument("--threads", type=int, default=1, help="wrk threads, at most 9 (default 1)")
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="seconds of warm-up per row (default 1)"
    )
    parser.add_argument(
        "--queue-limit",
        type=int,
        default=Settings().flash_sale_queue_limit,
        help="FLASH_SALE_QUEUE_LIMIT for every row (default: the shop's default)",
    )
    parser.add_argument(
        "--generator",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="auto (default): wrk when installed, else the Python generator",
    )
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.duration <= 0 or args.connections < 1 or args.warmup < 0:
        parser.error("--rounds, --duration and --connections must be positive")
    return args


def print_log_tails(folder: Path, lines: int = 20) -> None:
    """The servers' logs go with the temporary folder: show their ends first."""
    for log in sorted(folder.rglob("*.log")):
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        print(f"--- the last lines of {log.relative_to(folder)}:")
        print("\n".join(tail))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    try:
        generator = pick_generator(args.generator, args.connections, args.threads)
    except BenchFailure as failure:
        print(f"FAIL: {failure}")
        return 1
    with tempfile.TemporaryDirectory(prefix="bench-flash-sale-") as folder:
        try:
            with ExitStack() as stack:
                rows = run(Context(args, Path(folder), generator, stack))
        except BenchFailure as failure:
            print(f"FAIL: {failure}")
            print_log_tails(Path(folder))
            return 1
    print_table(rows)
    print_generator(generator, rows[0])
    print_goals(rows)
    print(f"\n(the whole bench took {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
