"""How cheaply does the flash sale answer a crowd? Run `python -m bench.flash_sale`.

One run, one table. Every row is served by the same gunicorn command line, the shop's own
web process (shop.processes.process_specs: 2 gthread workers x 8 threads, access log to
stdout); only the app at its end differs. Every row gets its own fresh RabbitMQ vhost
(made and deleted through the management API), its own SQLite database in a temporary
folder, and FLASH_SALE_QUEUE_LIMIT (default 1000). Each row is a short warm-up (not
counted), then --duration seconds of closed-loop load from --connections keep-alive
connections; every request is a POST with a distinct customer (a new phone number each).

  no-op endpoint           bench_app() below: reads the body with the shop's own
                           read_body(PurchaseIn) and answers 202 with a ticket-shaped body.
                           No database, no broker. This is the yardstick: the cost of
                           gunicorn + Flask + the JSON parsing, which any endpoint pays.
  naive: connect + count   bench_app() below, the pattern the RabbitMQ tutorials teach: per
                           request a new pika.BlockingConnection, a passive queue_declare of
                           flash-sale.requests to read its length, compare with the limit,
                           publish when below (the count-then-publish race), close. Measured
                           with the queue at its limit (filled in the warm-up and topped up
                           with pika), as in the open-sale row.
  sold out (the shop)      the real shop: `python -m shop up` as a subprocess (every process,
                           SQLite under the temporary folder's var/), a product, a sale with
                           quota 1, one purchase, and a wait until GET /api/flash-sales/{id}
                           says sold_out. Then the crowd: every answer should be 410, from
                           the admission gate's memory (order_service/admission.py).
  open, queue at limit     the real web app (order_service.app:create_app()) under the same
                           gunicorn, without the order process: nobody drains
                           flash-sale.requests. A sale with quota 1,000,000; the warm-up's
                           first FLASH_SALE_QUEUE_LIMIT purchases are admitted (202) and fill
                           the queue; from then on every answer should be 429: from memory,
                           except one request per web process every 0.25 s that asks the
                           broker (and is refused by reject-publish).

How to read the table: `req/s` is answers per second (any status); p50/p99 are the
latencies the generator saw (closed loop: each connection sends its next request when the
previous answer is in, so latency and throughput move together, by Little's law about
connections / req/s); `statuses` counts the answers by HTTP status; `vs no-op` is the row's
req/s divided by the no-op's, and `p99 x` its p99 divided by the no-op's p99. The goals:
  - sold out: at least 0.90 of the no-op's throughput, p99 at most 2x the no-op's;
  - open, queue at limit: at least 0.50 of the no-op's throughput, p99 at most 2x;
  - the open-sale row at least 15x the naive baseline's throughput.
Below the table: where the CPU went in each row (% of one core, from /proc/PID/stat: the
web processes, the rest of the shop, RabbitMQ, the load generator, the whole machine) and
the web processes' CPU milliseconds per answer; then the goals, each "goal met" or
"goal NOT met".

The load generator is wrk (Debian package `wrk`, a C program: `apt-get install wrk`) with
a Lua script that makes each request's body and counts the statuses; when wrk is not
installed, a Python generator (threads, http.client keep-alive) runs instead. The output
says which one ran and its ceiling: the no-op row is the most the generator and the
server reach together, and the generator's CPU per request says how much it takes from
the server. This machine has few cores (`nproc`); the generator, RabbitMQ and the web
processes share them, so every number is "on this machine, with the generator
competing". The script exits 0 whether or not the goals are met (it is a benchmark, not a
test), and 1 when a measurement could not be made. The numbers move from run to run.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pika
import pika.exceptions
import requests
from flask import Flask, Response, jsonify

from messaging.connection import open_connection
from messaging.envelope import Envelope
from messaging.migrations import upgrade
from messaging.settings import Settings
from messaging.topology import FLASH_SALE_QUEUE, declare_topology
from order_service.api import read_body
from order_service.flash_sale import PURCHASE_REQUEST, PurchaseIn
from order_service.handlers import SERVICE
from order_service.problems import ApiProblem, problem
from shop.processes import process_specs

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
AMQP_PORT = 5672
MANAGEMENT_URL = f"http://{HOST}:15672"
USER, PASSWORD = "guest", "guest"

BENCH_APP = "bench.flash_sale:bench_app()"
SHOP_APP = "order_service.app:create_app()"
START_SECONDS = 60.0  # for `shop up` or gunicorn to answer
SETTLE_SECONDS = 30.0  # for the first sale to be decided, the queue to fill, ...
REQUEST_TIMEOUT = 10.0
OPEN_SALE_QUOTA = 1_000_000  # the most FlashSaleIn takes
CUSTOMER_NAME = "Crowd Member"

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


def wait_until(condition: Callable[[], object], seconds: float, pause: float = 0.05) -> bool:
    """Poll `condition` until it is truthy (True) or `seconds` have passed (False)."""
    deadline = time.monotonic() + seconds
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def percentile(values: list[float], fraction: float) -> float:
    """Nearest rank; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


# --- RabbitMQ: a fresh vhost per row ------------------------------------------------------------


@contextmanager
def fresh_vhost(label: str) -> Iterator[str]:
    """A new vhost for the block (guest has every right on it), deleted after; yields its URL."""
    vhost = f"bench-flash-sale-{label}-{secrets.token_hex(3)}"
    name = quote(vhost, safe="")
    auth = (USER, PASSWORD)
    response = requests.put(f"{MANAGEMENT_URL}/api/vhosts/{name}", auth=auth, timeout=10)
    response.raise_for_status()
    try:
        permissions = {"configure": ".*", "write": ".*", "read": ".*"}
        response = requests.put(
            f"{MANAGEMENT_URL}/api/permissions/{name}/{USER}",
            json=permissions,
            auth=auth,
            timeout=10,
        )
        response.raise_for_status()
        yield f"amqp://{USER}:{PASSWORD}@{HOST}:{AMQP_PORT}/{name}"
    finally:
        requests.delete(f"{MANAGEMENT_URL}/api/vhosts/{name}", auth=auth, timeout=30)


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
    if not wait_until(lambda: queue_depth(amqp_url) >= limit, SETTLE_SECONDS, pause=0.1):
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
    flags = []
    for flag in ("--workers", "--worker-class", "--threads"):
        flags.append(f"{flag} {argv[argv.index(flag) + 1]}")
    return " ".join(flags)


def descendants(root: int) -> list[int]:
    """Every process below `root` (from /proc/*/stat's parent ids)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = proc_stat(entry / "stat")
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def proc_stat(path: Path) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name; None once the process is gone."""
    try:
        text = path.read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


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
    """The server's processes by group: 'web' (gunicorn) or 'shop' (the rest); and RabbitMQ."""
    groups = {pid: "broker" for pid in rabbitmq_pids()}
    for pid in [server_pid, *descendants(server_pid)]:
        is_web = any("gunicorn" in arg for arg in command_line(pid))
        groups[pid] = "web" if is_web else "shop"
    return groups


class CpuMeter:
    """CPU seconds per group of processes between start() and stop()."""

    def __init__(self, processes: dict[int, str]) -> None:
        self.processes = processes
        self._before: dict[int, float] = {}
        self._machine = 0.0
        self._started = 0.0

    def start(self) -> None:
        self._before = {pid: cpu_seconds(pid) or 0.0 for pid in self.processes}
        self._machine = machine_busy_seconds()
        self._started = time.monotonic()

    def stop(self) -> dict[str, float]:
        """Percent of one core per group, and 'machine' (all cores, 200 % = 2 busy cores)."""
        elapsed = time.monotonic() - self._started
        used: Counter[str] = Counter()
        for pid, group in self.processes.items():
            now = cpu_seconds(pid)
            if now is not None:
                used[group] += now - self._before[pid]
        used["machine"] = machine_busy_seconds() - self._machine
        return {group: 100 * seconds / elapsed for group, seconds in used.items()}


@contextmanager
def running(argv: list[str], cwd: Path, env: dict[str, str], log: Path) -> Iterator[int]:
    """Run a server for the block, then Ctrl-C it (SIGINT) as a person would.

    gunicorn and `shop up` both stop their children on SIGINT; only if the server hangs are
    it and the processes it started killed, each by its id.
    """
    with log.open("w") as output:
        process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT)
        try:
            yield process.pid
        finally:
            family = descendants(process.pid)
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                for pid in [process.pid, *family]:
                    with suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                process.wait()


# --- The load generators ----------------------------------------------------------------------

# wrk calls request() for every request and response() for every answer, in each of its
# threads (each thread its own Lua state); setup() and done() run in the main state, which
# keeps the threads so that done() can add up their status counts.
WRK_SCRIPT = """
local threads = {}
local count = 0

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
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"errors": %d, "statuses": {%s}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, table.concat(parts, ", ")))
end
"""


@dataclass
class Load:
    """What one generator run saw."""

    seconds: float
    statuses: Counter[int]
    p50_ms: float
    p99_ms: float
    errors: int  # connection errors and timeouts (no answer at all)
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
    _series = 10  # a two-digit phone prefix per run, so no two runs share a customer

    def __init__(self, connections: int, threads: int) -> None:
        self.connections = connections
        self.threads = max(1, min(threads, connections, 9))

    def next_series(self) -> int:
        Generator._series += 1
        if Generator._series > 99:
            Generator._series = 11
        return Generator._series

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
            f"wrk ({version.split(' Copyright')[0]}), {self.threads} thread(s), "
            f"{self.connections} keep-alive connections, closed loop"
        )

    def run(self, port: int, path: str, seconds: float) -> Load:
        script = WRK_SCRIPT.replace("SERIES", str(self.next_series())).replace(
            "NAME", CUSTOMER_NAME
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
            f"{max(1, round(seconds))}s",
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
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        return Load(
            seconds=result["duration_us"] / 1e6,
            statuses=Counter({int(status): n for status, n in result["statuses"].items()}),
            p50_ms=result["p50_us"] / 1000,
            p99_ms=result["p99_us"] / 1000,
            errors=result["errors"],
            generator_cpu=cpu,
        )


class PythonLoad(Generator):
    """The fallback: one thread per connection, http.client keep-alive (the GIL is its limit)."""

    name = "python"

    def describe(self) -> str:
        return (
            f"Python (threads + http.client keep-alive), {self.connections} threads and "
            "connections, closed loop; wrk is not installed (apt-get install wrk)"
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
                latencies.append(time.perf_counter() - sent)
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
        latencies = [value for values, _, _ in results for value in values]
        statuses: Counter[int] = Counter()
        for _, counts, _ in results:
            statuses.update(counts)
        return Load(
            seconds=elapsed,
            statuses=statuses,
            p50_ms=1000 * percentile(latencies, 0.50),
            p99_ms=1000 * percentile(latencies, 0.99),
            errors=sum(errors for _, _, errors in results),
            generator_cpu=(after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
        )


def pick_generator(choice: str, connections: int, threads: int) -> Generator:
    binary = shutil.which("wrk")
    if choice == "wrk" and binary is None:
        raise BenchFailure("--generator wrk, but wrk is not installed (apt-get install wrk)")
    if binary is not None and choice != "python":
        return Wrk(connections, threads, binary)
    return PythonLoad(connections, threads)


# --- The rows ------------------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    load: Load
    cpu: dict[str, float]  # percent of one core per group of processes
    notes: list[str] = field(default_factory=list)

    @property
    def web_ms_per_answer(self) -> float:
        """CPU milliseconds the web processes spent per answer."""
        return 10 * self.cpu.get("web", 0.0) / max(self.load.rate, 1e-9)


@dataclass
class Context:
    args: argparse.Namespace
    folder: Path
    generator: Generator


def measure(
    context: Context, name: str, server_pid: int, port: int, path: str, warmup: bool = True
) -> Row:
    """A warm-up (not counted) and then the measured run, with CPU accounting around it."""
    args = context.args
    if warmup and args.warmup > 0:
        context.generator.run(port, path, args.warmup)
    meter = CpuMeter(watched_processes(server_pid))
    meter.start()
    load = context.generator.run(port, path, args.duration)
    cpu = meter.stop()
    cpu["generator"] = 100 * load.generator_cpu / load.seconds
    if load.answers == 0:
        raise BenchFailure(f"{name}: no answers at all ({load.errors} errors)")
    print(
        f"    {load.rate:,.0f} req/s, p50 {load.p50_ms:.1f} ms, p99 {load.p99_ms:.1f} ms, "
        f"{format_statuses(load)}",
        flush=True,
    )
    return Row(name, load, cpu)


def start_gunicorn(app: str, env: dict[str, str], log: Path) -> tuple[int, Iterator[int]]:
    port = free_port()
    return port, running(gunicorn_argv(port, app), log.parent, env, log)


def bench_rows(context: Context) -> list[Row]:
    """The no-op endpoint and the naive baseline: one gunicorn serving bench_app()."""
    limit = context.args.queue_limit
    with fresh_vhost("bench-app") as amqp_url:
        declare(amqp_url, limit)
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "AMQP_URL": amqp_url,
            "FLASH_SALE_QUEUE_LIMIT": str(limit),
        }
        port, server = start_gunicorn(BENCH_APP, env, context.folder / "bench-app.log")
        with server as pid:
            if not wait_until(lambda: answers(f"http://{HOST}:{port}/healthz"), START_SECONDS):
                raise BenchFailure("the bench app did not answer (its log follows)")
            print("(1) no-op endpoint ...", flush=True)
            noop = measure(context, "no-op endpoint", pid, port, "/noop/flash-sales/s1/purchases")
            print("(2) naive: connect + count + publish per request ...", flush=True)
            path = "/naive/flash-sales/s1/purchases"
            if context.args.warmup > 0:
                context.generator.run(port, path, context.args.warmup)
            admitted = queue_depth(amqp_url)
            topped_up = fill_queue(amqp_url, limit, "s1")
            depth = depth_at_limit(amqp_url, limit)
            naive = measure(context, "naive: connect+count", pid, port, path, warmup=False)
            naive.notes.append(
                f"warm-up: {admitted} published through the endpoint, {topped_up} topped up "
                f"with pika; measured with the queue at {depth} (limit {limit})"
            )
    return [noop, naive]


def admin(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def post(url: str, body: dict[str, object], token: str | None = None) -> dict:
    response = requests.post(
        url, json=body, headers=admin(token) if token else {}, timeout=REQUEST_TIMEOUT
    )
    if response.status_code not in (201, 202):
        raise BenchFailure(f"POST {url}: {response.status_code} {response.text[:300]}")
    return response.json()


def sold_out_row(context: Context) -> Row:
    """The real shop (`shop up`), a sale of quota 1 sold, then the crowd."""
    limit = context.args.queue_limit
    folder = context.folder / "shop"
    folder.mkdir()
    with fresh_vhost("shop") as amqp_url:
        port, token = free_port(), secrets.token_urlsafe(16)
        env = {k: v for k, v in os.environ.items() if not k.endswith("_DATABASE_URL")}
        env.update(
            AMQP_URL=amqp_url,
            SHOP_ADMIN_TOKEN=token,
            SHOP_HTTP_HOST=HOST,
            SHOP_HTTP_PORT=str(port),
            FLASH_SALE_QUEUE_LIMIT=str(limit),
        )
        base = f"http://{HOST}:{port}"
        argv = [sys.executable, "-m", "shop", "up"]
        print("(3) sold out: `shop up` ...", flush=True)
        with running(argv, folder, env, folder / "shop-up.log") as pid:
            if not wait_until(lambda: answers(f"{base}/healthz"), START_SECONDS):
                raise BenchFailure("`shop up` did not answer (its log follows)")
            sku = "BENCH-FLASH-1"
            product = {"sku": sku, "name": "Flash kettle", "price_cents": 2500, "stock": 10}
            post(f"{base}/api/products", product, token)
            sale = post(
                f"{base}/api/flash-sales", {"sku": sku, "price_cents": 999, "quota": 1}, token
            )
            sale_url = f"{base}/api/flash-sales/{sale['id']}"
            post(f"{sale_url}/purchases", {"customer": {"name": "First", "phone": "+4917012345"}})

            def sold_out() -> bool:
                return requests.get(sale_url, timeout=REQUEST_TIMEOUT).json()["status"] == (
                    "sold_out"
                )

            if not wait_until(sold_out, SETTLE_SECONDS, pause=0.1):
                raise BenchFailure(f"the sale was not sold out within {SETTLE_SECONDS:.0f} s")
            print("    sold out; the crowd ...", flush=True)
            row = measure(
                context,
                "sold out (the shop)",
                pid,
                port,
                f"/api/flash-sales/{sale['id']}/purchases",
            )
            row.notes.append(
                "`shop up`: the web processes' access log goes through the supervisor's pipe "
                "(the 'shop' CPU column)"
            )
    return row


def open_sale_row(context: Context) -> Row:
    """The real web app without the order process: the queue fills and stays full."""
    limit = context.args.queue_limit
    folder = context.folder / "open"
    folder.mkdir()
    database_url = f"sqlite:///{folder / 'orders.db'}"
    upgrade(SERVICE, database_url)
    with fresh_vhost("open") as amqp_url:
        token = secrets.token_urlsafe(16)
        env = {k: v for k, v in os.environ.items() if not k.endswith("_DATABASE_URL")}
        env.update(
            AMQP_URL=amqp_url,
            ORDER_DATABASE_URL=database_url,
            SHOP_ADMIN_TOKEN=token,
            FLASH_SALE_QUEUE_LIMIT=str(limit),
            PYTHONPATH=str(REPO),
        )
        print("(4) open sale, queue at its limit: gunicorn, no order process ...", flush=True)
        port, server = start_gunicorn(SHOP_APP, env, folder / "web.log")
        base = f"http://{HOST}:{port}"
        with server as pid:
            if not wait_until(lambda: answers(f"{base}/healthz"), START_SECONDS):
                raise BenchFailure("the web app did not answer (its log follows)")
            sku = "BENCH-FLASH-2"
            product = {"sku": sku, "name": "Flash toaster", "price_cents": 3000}
            post(f"{base}/api/products", {**product, "stock": OPEN_SALE_QUOTA}, token)
            sale = post(
                f"{base}/api/flash-sales",
                {"sku": sku, "price_cents": 1500, "quota": OPEN_SALE_QUOTA},
                token,
            )
            path = f"/api/flash-sales/{sale['id']}/purchases"
            warmup = context.generator.run(port, path, max(1.0, context.args.warmup))
            admitted = warmup.statuses.get(202, 0)
            topped_up = 0
            if not wait_until(lambda: queue_depth(amqp_url) >= limit, 2.0, pause=0.1):
                topped_up = fill_queue(amqp_url, limit, sale["id"])
            depth = depth_at_limit(amqp_url, limit)
            row = measure(context, "open, queue at limit", pid, port, path, warmup=False)
            row.notes.append(
                f"warm-up: {admitted} admitted (202) through the gate, {topped_up} topped up "
                f"with pika; measured with the queue at {depth} (limit {limit}), nobody draining"
            )
            if queue_depth(amqp_url) < limit:
                row.notes.append(
                    "the queue fell below its limit during the run: a worker drained it?"
                )
    return row


# --- The report ----------------------------------------------------------------------------------


def format_statuses(load: Load) -> str:
    parts = [f"{status}:{n}" for status, n in sorted(load.statuses.items())]
    if load.errors:
        parts.append(f"errors:{load.errors}")
    return " ".join(parts)


def print_table(rows: list[Row]) -> None:
    noop = rows[0].load
    print()
    print(
        f"| {'row':<22} | {'req/s':>7} | {'p50 ms':>6} | {'p99 ms':>6} | {'vs no-op':>8} "
        f"| {'p99 x':>5} | {'statuses (answers in ' + str(round(noop.seconds)) + ' s)':<32} |"
    )
    print(f"|{'-' * 24}|{'-' * 8}:|{'-' * 7}:|{'-' * 7}:|{'-' * 9}:|{'-' * 6}:|{'-' * 34}|")
    for row in rows:
        load = row.load
        print(
            f"| {row.name:<22} | {load.rate:>7,.0f} | {load.p50_ms:>6.1f} | {load.p99_ms:>6.1f} "
            f"| {load.rate / noop.rate:>7.2f}x | {load.p99_ms / noop.p99_ms:>4.1f}x "
            f"| {format_statuses(load):<32} |"
        )
    print()
    print(
        "Where the CPU went (% of one core; the machine has "
        f"{os.cpu_count()} cores, so 'machine' goes up to {100 * (os.cpu_count() or 1)} %):"
    )
    print()
    print(
        f"| {'row':<22} | {'web':>5} | {'shop':>5} | {'broker':>6} | {'generator':>9} "
        f"| {'machine':>7} | {'web CPU ms/answer':>17} |"
    )
    print(f"|{'-' * 24}|{'-' * 6}:|{'-' * 6}:|{'-' * 7}:|{'-' * 10}:|{'-' * 8}:|{'-' * 18}:|")
    for row in rows:
        cpu = row.cpu
        print(
            f"| {row.name:<22} | {cpu.get('web', 0):>5.0f} | {cpu.get('shop', 0):>5.0f} "
            f"| {cpu.get('broker', 0):>6.0f} | {cpu.get('generator', 0):>9.0f} "
            f"| {cpu.get('machine', 0):>7.0f} | {row.web_ms_per_answer:>17.3f} |"
        )
    print()
    for row in rows:
        for note in row.notes:
            print(f"  {row.name}: {note}")


def print_generator(context: Context, noop: Row) -> None:
    generator = context.generator
    load = noop.load
    per_request_us = 1e6 * load.generator_cpu / max(load.answers, 1)
    alone = 1e6 / per_request_us if per_request_us else float("inf")
    print()
    print(f"load generator: {generator.describe()}")
    print(
        f"  its ceiling here: {load.rate:,.0f} req/s against the no-op endpoint (generator and "
        f"server together); it spent {per_request_us:.0f} us of CPU per request, so alone on "
        f"one core it could offer about {alone:,.0f} req/s. It shares the machine's "
        f"{os.cpu_count()} cores with the server and RabbitMQ: every row pays for it alike."
    )


def goal_line(what: str, value: float, goal: float, at_least: bool) -> str:
    met = value >= goal if at_least else value <= goal
    sign = ">=" if at_least else "<="
    verdict = "goal met" if met else "goal NOT met"
    return f"  {what:<48} {value:>6.2f}  (goal {sign} {goal:g}): {verdict}"


def print_goals(rows: dict[str, Row]) -> None:
    noop, naive = rows["noop"].load, rows["naive"].load
    sold_out, open_sale = rows["sold_out"].load, rows["open"].load
    print()
    print("goals:")
    print(goal_line("sold out: throughput / no-op", sold_out.rate / noop.rate, SOLD_OUT_GOAL, True))
    print(goal_line("sold out: p99 / no-op p99", sold_out.p99_ms / noop.p99_ms, P99_GOAL, False))
    print(
        goal_line(
            "open, queue at limit: throughput / no-op", open_sale.rate / noop.rate, OPEN_GOAL, True
        )
    )
    print(
        goal_line(
            "open, queue at limit: p99 / no-op p99", open_sale.p99_ms / noop.p99_ms, P99_GOAL, False
        )
    )
    print(
        goal_line(
            "open, queue at limit: throughput / naive",
            open_sale.rate / naive.rate,
            NAIVE_GOAL,
            True,
        )
    )
    print(f"  (sold out / naive: {sold_out.rate / naive.rate:.1f}x)")


# --- Main -----------------------------------------------------------------------------------


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
        "--connections", type=int, default=32, help="keep-alive connections (default 32)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="wrk threads (default 1: leave the cores to the server)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=1.0,
        help="seconds of uncounted load before a row (default 1)",
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
        help="auto: wrk when installed, else the Python generator",
    )
    return parser.parse_args(argv)


def run(context: Context) -> dict[str, Row]:
    args = context.args
    print(
        f"gunicorn as the shop's web process ({gunicorn_flags()}); {args.connections} "
        f"connections, {args.duration:g} s per row after {args.warmup:g} s of warm-up; "
        f"FLASH_SALE_QUEUE_LIMIT={args.queue_limit}; generator: {context.generator.name}",
        flush=True,
    )
    noop, naive = bench_rows(context)
    sold_out = sold_out_row(context)
    open_sale = open_sale_row(context)
    return {"noop": noop, "naive": naive, "sold_out": sold_out, "open": open_sale}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    try:
        generator = pick_generator(args.generator, args.connections, args.threads)
    except BenchFailure as failure:
        print(f"FAIL: {failure}")
        return 1
    with tempfile.TemporaryDirectory(prefix="bench-flash-sale-") as folder:
        context = Context(args, Path(folder), generator)
        try:
            rows = run(context)
        except BenchFailure as failure:
            print(f"FAIL: {failure}")
            print_log_tails(Path(folder))
            return 1
    print_table(list(rows.values()))
    print_generator(context, rows["noop"])
    print_goals(rows)
    print(f"\n(the whole bench took {time.monotonic() - started:.0f} s)")
    return 0


def print_log_tails(folder: Path, lines: int = 20) -> None:
    """The servers' logs die with the temporary folder: show their ends first."""
    for log in sorted(folder.rglob("*.log")):
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        print(f"--- the last lines of {log.relative_to(folder)}:")
        print("\n".join(tail))


if __name__ == "__main__":
    sys.exit(main())
