"""How fast is the whole order pipeline, and its consumers? Run `python -m bench.pipeline`.

One run measures three things and prints one table.

(a) The highest sustained order rate. `shop up` runs as a subprocess, exactly as `make run`
    starts it (SQLite files under var/, gunicorn with the shop's settings, every service as a
    process), in a temporary folder and on a fresh RabbitMQ vhost. A load generator POSTs
    valid orders (one line, no coupon) to /api/orders at a fixed rate R for --duration
    seconds. R is *sustained* when
      - the web app kept up: every answer was 201, the answers came in at R (at least 95 %),
        and the 99th percentile of the HTTP latency stayed under --max-http-p99;
      - the queues kept up: the ready messages over all work queues (sampled every 0.25 s
        with a passive queue_declare), averaged over the last quarter of the run, were at
        most one second of orders (R): a burst is fine, a backlog that grows is not;
      - within --settle seconds after the last POST every order was CONFIRMED, every work
        queue was empty and every service's outbox was published.
    R starts at --pipeline-start, doubles while it passes, then is bisected between the
    highest pass and the lowest failure (--refine-steps times).
    Beside it, the same search runs against a *bare* endpoint: a tiny Flask app (bare_app()
    below) that validates the same JSON with order_service.schemas.OrderIn and inserts one
    row into one SQLite table, served by the same gunicorn command line as the shop's web
    process. Ratio = pipeline rate / bare rate (goal: at least 0.5).
(b) Time from POST to CONFIRMED, p50 and p99, at half the rate found in (a). The generator
    records the wall-clock moment each POST was sent and the order id it got back; after
    the run the order database gives each order's updated_at, which the saga sets when it
    confirms the order. (Same machine, same clock.) Goal: p99 under 250 ms.
(c) Each consumer's messages per second: N messages of the right types are loaded into the
    consumer's quorum queue on a fresh vhost, then a ConsumerRunner from messaging.consumer,
    with the service's real handler and a fresh migrated SQLite database, drains them
    (inbox row + handler + commit + ack, one message at a time). Beside it, plain pika drains
    the same N messages from the same kind of queue with basic_ack and no database, with
    the same prefetch. The clock runs from the first delivery to the last ack.
    Goal: each consumer reaches at least 0.25 of raw pika.

The load generator is pure Python: one asyncio loop that starts each request at its
scheduled moment (open loop: a slow server does not slow the offered rate down; latency is
counted from the moment the request was due, so waiting for a free slot counts too), a
new TCP connection per request (`Connection: close`, as a crowd of browsers would rather
than one client re-using a connection). The output gives its ceiling: the CPU time it
spends per request, and so the most requests per second it could offer with one core to
itself.

How to read it: the machine has few cores (`nproc`), and the load generator, RabbitMQ, the
server's processes and anything else running on the machine share them, so every number
is "on this machine, with the generator competing". Each trial prints a line as it runs.
After the table:
  - for (a), a CPU table per search: each process's CPU (% of one core, from
    /proc/PID/stat) at the highest passing and the lowest failing rate; a Python process
    near 100 % is bound by its GIL, its threads cannot use a second core. Beside it, at the
    failing rate, what each process's threads were doing, sampled every 50 ms from
    /proc/PID/task/*/stat and wchan: running (or waiting for a core), asleep in SQLite's
    busy handler (waiting for another connection's write lock), on a futex (waiting for the
    GIL, or an idle thread), waiting on a socket (idle, or waiting for the broker). Then
    what that says, and what to try;
  - for (c), when a consumer misses its goal, the consumers run again under cProfile in
    this process: microseconds per message in each step of the runner's loop (envelope,
    inbox, handler, commit, ack), the time by layer (SQLAlchemy, sqlite3, pika, ...) for
    the worst one, and what to try.
The script exits 0 whether or not the goals are met (it is a benchmark, not a test), and 1
only when a measurement could not be made. The numbers move from run to run; on a busy
machine, by a lot.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import secrets
import sqlite3
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pika
import requests
from flask import Flask, jsonify, request
from pydantic import ValidationError
from sqlalchemy import Column, DateTime, Engine, Integer, MetaData, String, Table, insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

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
from coupon_service import handlers as coupon_handlers
from coupon_service.models import CouponInbox, CouponOutbox
from inventory_service import handlers as inventory_handlers
from inventory_service.models import InventoryInbox, InventoryOutbox
from messaging.connection import channel_for, close_quietly, open_connection
from messaging.consumer import ConsumerRunner, Handler, route_by_type
from messaging.database import make_engine, make_session_factory
from messaging.envelope import Envelope
from messaging.migrations import upgrade
from messaging.outbox import utcnow
from messaging.settings import Settings
from messaging.topology import WORK_QUEUES, declare_topology
from notification_service.handlers import make_handler as notification_handler
from notification_service.models import NotificationInbox, NotificationOutbox
from order_service import read_model, saga
from order_service.models import Order, OrderInbox, OrderLine, OrderOutbox, Product, TimelineEntry
from order_service.schemas import OrderIn
from shop.processes import SERVICE_DATABASES, process_specs

REPO = Path(__file__).resolve().parent.parent
FLASH_SALE_QUEUE_LIMIT = Settings().flash_sale_queue_limit

SKU, PRODUCT_NAME, PRICE_CENTS, STOCK = "BENCH-TEA", "Bench tea", 450, 1_000_000
CUSTOMER = {"name": "Ada Lovelace", "phone": "+442079460958"}
ORDER = {"customer": CUSTOMER, "items": [{"sku": SKU, "quantity": 1}]}  # a valid order

PIPELINE_GOAL = 0.5  # the pipeline's sustained rate, as a fraction of the bare endpoint's
LATENCY_GOAL = 0.250  # seconds, p99 of POST -> CONFIRMED at half the sustained rate
CONSUMER_GOAL = 0.25  # each consumer's rate, as a fraction of raw pika's

ACHIEVED_FRACTION = 0.95  # the answers must come in at this fraction of the offered rate
MAX_QUEUED_SECONDS = 1.0  # at the end of a run, the queues may hold this many seconds of orders
MAX_IN_FLIGHT = 256  # the generator's open connections; beyond, requests wait (and are late)
REQUEST_TIMEOUT = 10.0
START_SECONDS = 60.0  # for `shop up` and gunicorn to answer
DRAIN_BEFORE_SECONDS = 120.0  # a failed trial's backlog must be gone before the next trial
SAMPLE_INTERVAL = 0.25  # queue depths
WAIT_INTERVAL = 0.05  # thread states
PREFETCH = 20  # QueueWorker's default; raw pika uses the same

BARE_APP = "bench.pipeline:bare_app()"
BARE_DATABASE_VARIABLE = "BENCH_BARE_DATABASE_URL"
OUTBOXES = {  # service -> its outbox table, to see whether everything was published
    "order_service": OrderOutbox.__tablename__,
    "inventory_service": InventoryOutbox.__tablename__,
    "coupon_service": CouponOutbox.__tablename__,
    "notification_service": NotificationOutbox.__tablename__,
}


class BenchFailure(Exception):
    """A measurement could not be made: the numbers would be meaningless."""


# --- Small helpers -------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    """The value below which `fraction` of `values` lie (nearest rank); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


# --- RabbitMQ --------------------------------------------------


def ready_messages(channel: pika.adapters.blocking_connection.BlockingChannel) -> int:
    """Ready messages over every work queue (a passive declare changes nothing)."""
    return sum(
        channel.queue_declare(queue.name, passive=True).method.message_count
        for queue in WORK_QUEUES
    )


# --- The load generator ----------------------------------------------------------------------


@dataclass
class Reply:
    due: float  # seconds after the run's start when the request was due
    sent_at: float  # wall clock (time.time()) when the request went out
    latency: float  # seconds from when the request was due until its answer was read
    status: int  # the HTTP status; 0 for a connection error or a timeout
    order_id: str | None = None


@dataclass
class LoadRun:
    rate: float
    duration: float
    replies: list[Reply]
    lag_p99: float  # how late the generator itself started requests
    cpu_seconds: float  # CPU time the generator's thread spent

    @property
    def ok(self) -> int:
        return sum(1 for reply in self.replies if reply.status == 201)

    @property
    def errors(self) -> int:
        return len(self.replies) - self.ok

    @property
    def achieved(self) -> float:
        """201 answers per second during the run: the offered rate if the server keeps up."""
        answered = [reply.due + reply.latency for reply in self.replies if reply.status == 201]
        return sum(1 for moment in answered if moment <= self.duration) / self.duration

    def latency(self, fraction: float) -> float:
        return percentile([reply.latency for reply in self.replies], fraction)


def post_request(port: int, path: str, body: dict[str, object]) -> bytes:
    """The raw bytes of one HTTP/1.1 POST that asks the server to close afterwards."""
    payload = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + payload


async def exchange(port: int, raw_request: bytes) -> tuple[int, bytes]:
    """Send one request on a new connection; read the answer until the server closes."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(raw_request)
        answer = await reader.read()
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


async def one_request(
    port: int, raw_request: bytes, start: float, due: float, slots: asyncio.Semaphore, want_id: bool
) -> Reply:
    """One request, due at loop time `start + due`; waits for a free slot first."""
    loop = asyncio.get_running_loop()
    async with slots:
        sent_at = time.time()
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                status, body = await exchange(port, raw_request)
        except (OSError, TimeoutError, ValueError, IndexError):
            status, body = 0, b""
    order_id = json.loads(body)["id"] if want_id and status == 201 else None
    return Reply(due, sent_at, loop.time() - start - due, status, order_id)


async def offer_load_async(
    port: int, raw_request: bytes, rate: float, duration: float, want_ids: bool
) -> tuple[list[Reply], float]:
    """Start round(rate * duration) requests, request i at i / rate seconds after the start."""
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(MAX_IN_FLIGHT)
    start = loop.time() + 0.05
    tasks, lags = [], []
    for i in range(round(rate * duration)):
        due = i / rate
        if start + due > loop.time():
            await asyncio.sleep(start + due - loop.time())
        lags.append(loop.time() - start - due)
        request = one_request(port, raw_request, start, due, slots, want_ids)
        tasks.append(asyncio.create_task(request))
    replies = await asyncio.gather(*tasks)
    return list(replies), percentile(lags, 0.99)


def offer_load(
    port: int, raw_request: bytes, rate: float, duration: float, want_ids: bool = False
) -> LoadRun:
    cpu_before = time.thread_time()
    replies, lag_p99 = asyncio.run(offer_load_async(port, raw_request, rate, duration, want_ids))
    cpu = time.thread_time() - cpu_before
    return LoadRun(rate, duration, replies, lag_p99, cpu)


# --- CPU and waits per process, from /proc -------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = proc_stat(Path(f"/proc/{pid}/stat"))
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat: all but idle and iowait)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / CLOCK_TICKS


def process_label(pid: int) -> str:
    """A short name: 'web (gunicorn)', 'shop run inventory', 'shop up', ..."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return f"pid {pid}"
    if any("gunicorn" in arg for arg in argv):
        return "web (gunicorn)"
    if "run" in argv and argv.index("run") + 1 < len(argv):
        return f"shop run {argv[argv.index('run') + 1]}"
    if "up" in argv:
        return "shop up (supervisor, log pump)"
    return Path(argv[0]).name


def rabbitmq_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        with suppress(OSError):
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == "beam.smp":
                pids.append(int(entry.name))
    return pids


def watched_processes(root: int | None) -> dict[int, str]:
    """The processes a trial reports on: the server's, RabbitMQ and this one."""
    watched = {os.getpid(): "this process (load generator)"}
    for pid in rabbitmq_pids():
        watched[pid] = RABBITMQ
    if root is not None:
        watched[root] = process_label(root)
        for pid in descendants(root):
            watched[pid] = process_label(pid)
    # Two gunicorn workers and a master: number them so each gets its own line.
    webs = sorted(pid for pid, label in watched.items() if label == "web (gunicorn)")
    for index, pid in enumerate(webs):
        watched[pid] = "web: gunicorn master" if index == 0 else f"web: gunicorn worker {index}"
    return watched


OTHERS = "other processes on the machine"
RABBITMQ = "RabbitMQ (beam.smp)"


class CpuMeter:
    """CPU use of some processes, and of the whole machine, over a stretch of wall time."""

    def __init__(self, processes: dict[int, str]) -> None:
        self.processes = processes
        self.started = time.monotonic()
        self.machine_before = machine_busy_seconds()
        self.before = {pid: cpu_seconds(pid) for pid in processes}

    def percent(self) -> dict[str, float]:
        """% of one core per process label, plus OTHERS: what the rest of the machine used."""
        seconds = time.monotonic() - self.started
        usage: dict[str, float] = {}
        for pid, label in self.processes.items():
            used = cpu_seconds(pid) - self.before[pid]
            usage[label] = usage.get(label, 0.0) + 100 * used / seconds
        machine = 100 * (machine_busy_seconds() - self.machine_before) / seconds
        usage[OTHERS] = max(0.0, machine - sum(usage.values()))
        return usage


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


class WaitSampler:
    """Samples what every thread of some processes is doing, every WAIT_INTERVAL seconds."""

    def __init__(self, processes: dict[int, str]) -> None:
        self.processes = processes
        self.counts: dict[str, dict[str, int]] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wait sampler", daemon=True)

    def __enter__(self) -> WaitSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(WAIT_INTERVAL):
            self.samples += 1
            for pid, label in self.processes.items():
                if pid == os.getpid() or label == RABBITMQ:
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


# --- Trials: one fixed-rate run and its verdict ----------------------------------------------


@dataclass
class Trial:
    rate: float
    load: LoadRun
    cpu: dict[str, float]  # % of one core per process
    waits: dict[str, dict[str, float]]  # per process, % of a thread's time per WAIT_KINDS
    max_queued: int | None = None  # ready messages over all work queues, highest sample
    end_queued: float = 0.0  # the same, averaged over the last quarter of the run
    drained_after: float | None = None  # seconds after the last answer until all settled
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def line(self) -> str:
        load = self.load
        text = (
            f"{self.rate:7.0f}/s: {'ok  ' if self.passed else 'FAIL'} answered "
            f"{load.achieved:6.1f}/s, HTTP p50 {load.latency(0.5) * 1000:5.0f} ms "
            f"p99 {load.latency(0.99) * 1000:5.0f} ms"
        )
        if self.max_queued is not None:
            drained = "-" if self.drained_after is None else f"{self.drained_after:.1f} s"
            text += (
                f", queued max {self.max_queued} end {self.end_queued:.0f}, drained after {drained}"
            )
        text += f", others {self.cpu[OTHERS]:.0f} % CPU"
        if self.problems:
            text += f"  [{'; '.join(self.problems)}]"
        return text


def http_problems(load: LoadRun, max_http_p99: float) -> list[str]:
    """Why the web server did not keep up with `load`, if it did not."""
    problems = []
    if load.errors:
        problems.append(f"{load.errors} of {len(load.replies)} requests failed")
    if load.achieved < ACHIEVED_FRACTION * load.rate:
        problems.append(f"answered only {load.achieved:.0f}/s")
    if load.latency(0.99) > max_http_p99:
        problems.append(f"HTTP p99 {load.latency(0.99) * 1000:.0f} ms")
    return problems


@dataclass
class Search:
    """The trials of one rate search; `best` passed at the highest rate, `failed` did not."""

    trials: list[Trial]
    best: Trial | None
    failed: Trial | None


def find_max_rate(
    run_trial: Callable[[float], Trial], start: float, refine_steps: int, label: str
) -> Search:
    """Double the rate from `start` while trials pass, then bisect between the highest
    passing and the lowest failing rate `refine_steps` times."""
    trials: list[Trial] = []

    def attempt(rate: float) -> Trial:
        trial = run_trial(rate)
        trials.append(trial)
        print(f"  {label} {trial.line()}", flush=True)
        return trial

    best, failed, rate = None, None, start
    while failed is None:
        trial = attempt(rate)
        if trial.passed:
            best, rate = trial, rate * 2
        else:
            failed = trial
    while best is None and rate > 2:  # even the start rate failed: halve
        rate /= 2
        trial = attempt(rate)
        best, failed = (trial, failed) if trial.passed else (None, trial)
    for _ in range(refine_steps if best is not None else 0):
        middle = round((best.rate + failed.rate) / 2)
        if middle in (best.rate, failed.rate):
            break
        trial = attempt(middle)
        best, failed = (trial, failed) if trial.passed else (best, trial)
    return Search(trials, best, failed)


# --- The bare endpoint: validate the same JSON, insert one row ---------------------------------

BARE_METADATA = MetaData()
BARE_ORDERS = Table(
    "bare_orders",
    BARE_METADATA,
    Column("id", String(36), primary_key=True),
    Column("customer_name", String(200)),
    Column("customer_phone", String(32)),
    Column("sku", String(64)),
    Column("quantity", Integer),
    Column("created_at", DateTime(timezone=True)),
)


def bare_app() -> Flask:
    """The baseline: POST /api/orders validates with OrderIn and inserts one row. That is all.

    Served by `gunicorn 'bench.pipeline:bare_app()'`; the database is BENCH_BARE_DATABASE_URL
    (SQLite through messaging.database, as the shop's own databases).
    """
    url = os.environ.get(BARE_DATABASE_VARIABLE, "sqlite:///var/bench-bare.db")
    engine = make_engine(url)
    with suppress(OperationalError):  # two workers may both try; one wins
        BARE_METADATA.create_all(engine)
    app = Flask(__name__)

    @app.post("/api/orders")
    def place_order():  # type: ignore[no-untyped-def]
        try:
            order = OrderIn.model_validate(request.get_json())
        except ValidationError as error:
            return jsonify(errors=error.errors(include_url=False)), 422
        row = {
            "id": str(uuid.uuid4()),
            "customer_name": order.customer.name,
            "customer_phone": order.customer.phone,
            "sku": order.items[0].sku,
            "quantity": order.items[0].quantity,
            "created_at": utcnow(),
        }
        with engine.begin() as connection:
            connection.execute(insert(BARE_ORDERS).values(row))
        return jsonify(id=row["id"]), 201

    @app.get("/healthz")
    def healthz():  # type: ignore[no-untyped-def]
        return jsonify(status="ok")

    return app


def gunicorn_argv(port: int, app: str) -> list[str]:
    """The shop's own web command line (shop.processes), with another app at the end."""
    web = next(spec for spec in process_specs(Settings(http_port=port)) if spec.name == "web")
    if not web.argv[-1].endswith("create_app()"):
        raise BenchFailure(f"the web process no longer ends with the app: {web.argv}")
    return [*web.argv[:-1], app]


def web_concurrency() -> str:
    """'2 workers x 8 threads', read off the shop's gunicorn command line."""
    argv = gunicorn_argv(0, BARE_APP)

    def option(name: str, default: str) -> str:
        return argv[argv.index(name) + 1] if name in argv else default

    return f"{option('--workers', '1')} workers x {option('--threads', '1')} threads"


def bare_trial(port: int, pid: int, rate: float, duration: float, max_http_p99: float) -> Trial:
    processes = watched_processes(pid)
    meter = CpuMeter(processes)
    with WaitSampler(processes) as waits:
        load = offer_load(port, post_request(port, "/api/orders", ORDER), rate, duration)
    problems = http_problems(load, max_http_p99)
    return Trial(rate, load, meter.percent(), waits.percent(), problems=problems)


def measure_bare(args: argparse.Namespace, folder: Path) -> Search:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        BARE_DATABASE_VARIABLE: f"sqlite:///{folder / 'bare.db'}",
    }
    BARE_METADATA.create_all(make_engine(env[BARE_DATABASE_VARIABLE]))
    with running(gunicorn_argv(port, BARE_APP), folder, env, folder / "bare.log") as pid:
        if wait_until(lambda: answers(f"http://{HOST}:{port}/healthz"), START_SECONDS) is None:
            raise BenchFailure(f"the bare app did not answer; see {folder / 'bare.log'}")
        return find_max_rate(
            lambda rate: bare_trial(port, pid, rate, args.duration, args.max_http_p99),
            args.bare_start,
            args.refine_steps,
            "bare    ",
        )


# --- The pipeline: `shop up` -------------------------------------------------------------------


@dataclass
class Backlog:
    """Work the pipeline still has to do."""

    pending_orders: int
    queued: int  # ready messages over all work queues
    unsent: int  # outbox rows not yet published, all services

    @property
    def empty(self) -> bool:
        return self.pending_orders == 0 and self.queued == 0 and self.unsent == 0


@dataclass
class Shop:
    """`shop up` in `folder` (its var/ holds the SQLite files) on the vhost of `amqp_url`."""

    folder: Path
    amqp_url: str
    port: int
    token: str
    pid: int = 0

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"

    def database(self, service: str) -> Path:
        relative = make_url(SERVICE_DATABASES[service](Settings())).database
        return self.folder / str(relative)

    def query(self, service: str, sql: str) -> list[tuple]:
        """Read a service's SQLite file directly (plain SELECTs take no write lock)."""
        with closing(sqlite3.connect(self.database(service), timeout=15)) as db:
            return db.execute(sql).fetchall()

    def backlog(self, channel: pika.adapters.blocking_connection.BlockingChannel) -> Backlog:
        pending = self.query("order_service", "SELECT count(*) FROM orders WHERE status='PENDING'")
        unsent = sum(
            self.query(service, f"SELECT count(*) FROM {table} WHERE sent_at IS NULL")[0][0]
            for service, table in OUTBOXES.items()
        )
        return Backlog(pending[0][0], ready_messages(channel), unsent)

    def wait_drained(self, seconds: float) -> float | None:
        """Seconds until nothing is left to do; None at the deadline. "Nothing" must be seen
        twice in a row, 0.1 s apart: a consumer may hold a message that is neither in its
        queue nor yet in its outbox."""
        with channel_for(self.amqp_url, "bench: backlog") as channel:
            empty_in_a_row = 0

            def drained() -> bool:
                nonlocal empty_in_a_row
                empty_in_a_row = empty_in_a_row + 1 if self.backlog(channel).empty else 0
                return empty_in_a_row >= 2

            return wait_until(drained, seconds, pause=0.1)


@contextmanager
def shop_up(folder: Path) -> Iterator[Shop]:
    """Start `shop up` with the defaults (SQLite under var/) on a fresh vhost; stop it after."""
    with fresh_vhost("pipeline-shop") as amqp_url:
        shop = Shop(folder, amqp_url, free_port(), secrets.token_urlsafe(16))
        env = {k: v for k, v in os.environ.items() if not k.endswith("_DATABASE_URL")}
        env.update(
            AMQP_URL=amqp_url,
            SHOP_ADMIN_TOKEN=shop.token,
            SHOP_HTTP_PORT=str(shop.port),
            PYTHONUNBUFFERED="1",
        )
        argv = [sys.executable, "-m", "shop", "up"]
        with running(argv, folder, env, folder / "shop-up.log") as pid:
            shop.pid = pid
            if wait_until(lambda: answers(shop.url("/healthz")), START_SECONDS) is None:
                raise BenchFailure(f"`shop up` did not answer; see {folder / 'shop-up.log'}")
            yield shop


def stock_the_shop(shop: Shop) -> None:
    """Create the product with a large stock; wait until a first order is CONFIRMED."""
    product = {"sku": SKU, "name": PRODUCT_NAME, "price_cents": PRICE_CENTS, "stock": STOCK}
    headers = {"Authorization": f"Bearer {shop.token}"}
    response = requests.post(shop.url("/api/products"), json=product, headers=headers, timeout=10)
    if response.status_code != 201:
        raise BenchFailure(f"creating the product: {response.status_code} {response.text}")
    # Until the inventory has handled product.created, an order would be rejected.
    if shop.wait_drained(30) is None:
        raise BenchFailure("product.created did not make it through the pipeline")
    response = requests.post(shop.url("/api/orders"), json=ORDER, timeout=10)
    if response.status_code != 201:
        raise BenchFailure(f"the first order: {response.status_code} {response.text}")
    if shop.wait_drained(30) is None:
        raise BenchFailure("the first order was not CONFIRMED within 30 s")
    status = requests.get(shop.url(f"/api/orders/{response.json()['id']}"), timeout=10).json()
    if status["status"] != "CONFIRMED":
        raise BenchFailure(f"the first order is {status['status']}: {status.get('reject_reason')}")


class DepthSampler:
    """Samples the ready messages over all work queues in a thread, every SAMPLE_INTERVAL."""

    def __init__(self, amqp_url: str) -> None:
        self.amqp_url = amqp_url
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="depth sampler", daemon=True)

    def __enter__(self) -> DepthSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        connection = open_connection(self.amqp_url, "bench: depth sampler")
        channel = connection.channel()
        try:
            while not self._stop.wait(SAMPLE_INTERVAL):
                self.samples.append(ready_messages(channel))
        finally:
            close_quietly(connection)


def pipeline_trial(
    shop: Shop, rate: float, duration: float, args: argparse.Namespace, want_ids: bool = False
) -> Trial:
    if shop.wait_drained(DRAIN_BEFORE_SECONDS) is None:
        raise BenchFailure(f"the pipeline did not drain within {DRAIN_BEFORE_SECONDS:.0f} s")
    raw_request = post_request(shop.port, "/api/orders", ORDER)
    processes = watched_processes(shop.pid)
    meter = CpuMeter(processes)
    with DepthSampler(shop.amqp_url) as depths, WaitSampler(processes) as waits:
        load = offer_load(shop.port, raw_request, rate, duration, want_ids)
    cpu = meter.percent()
    drained_after = shop.wait_drained(args.settle)
    last_quarter = depths.samples[-max(1, len(depths.samples) // 4) :]
    end_queued = sum(last_quarter) / max(1, len(last_quarter))
    queued = max(depths.samples, default=0)
    trial = Trial(rate, load, cpu, waits.percent(), queued, end_queued, drained_after)
    trial.problems = http_problems(load, args.max_http_p99)
    if end_queued > MAX_QUEUED_SECONDS * rate:  # a spike is fine, a backlog that stays is not
        trial.problems.append(f"{end_queued:.0f} messages still queued at the end")
    if drained_after is None:
        trial.problems.append(f"not drained {args.settle:.0f} s after the run")
    return trial


@dataclass
class Latency:
    rate: float
    orders: int
    p50: float  # seconds, POST sent -> order CONFIRMED
    p99: float
    server_p50: float  # seconds, created_at -> updated_at (the order service's own clock)
    server_p99: float
    not_confirmed: int


def parse_time(value: str) -> float:
    """A SQLite DateTime column (naive, stored in UTC) as a Unix timestamp."""
    return datetime.fromisoformat(value).replace(tzinfo=UTC).timestamp()


def confirmation_latency(shop: Shop, rate: float, args: argparse.Namespace) -> Latency:
    """(b): a run at `rate`, then each order's updated_at (set when CONFIRMED) vs its POST."""
    trial = pipeline_trial(shop, rate, args.duration, args, want_ids=True)
    print(f"  latency  {trial.line()}", flush=True)
    sent = {reply.order_id: reply.sent_at for reply in trial.load.replies if reply.order_id}
    rows = shop.query("order_service", "SELECT id, status, created_at, updated_at FROM orders")
    confirmed = [row for row in rows if row[0] in sent and row[1] == "CONFIRMED"]
    total = [parse_time(updated) - sent[order_id] for order_id, _, _, updated in confirmed]
    server = [parse_time(updated) - parse_time(created) for _, _, created, updated in confirmed]
    return Latency(
        rate,
        len(sent),
        percentile(total, 0.5),
        percentile(total, 0.99),
        percentile(server, 0.5),
        percentile(server, 0.99),
        len(sent) - len(confirmed),
    )


def measure_pipeline(args: argparse.Namespace, folder: Path) -> tuple[Search, Latency | None]:
    with shop_up(folder) as shop:
        stock_the_shop(shop)
        search = find_max_rate(
            lambda rate: pipeline_trial(shop, rate, args.duration, args),
            args.pipeline_start,
            args.refine_steps,
            "pipeline",
        )
        if search.best is None:
            return search, None
        return search, confirmation_latency(shop, round(search.best.rate / 2), args)


# --- (c) consumers: ConsumerRunner vs raw pika --------------------------------------------------


def event(event_type: str, body: dict[str, object], app_id: str) -> Envelope:
    correlation = str(body.get("order_id") or body.get("sku"))
    return Envelope.new(event_type, body, correlation_id=correlation, app_id=app_id)


def order_created(order_id: str) -> Envelope:
    items = [{"sku": SKU, "quantity": 1, "unit_price_cents": PRICE_CENTS}]
    money = {"subtotal_cents": PRICE_CENTS, "discount_cents": 0, "total_cents": PRICE_CENTS}
    body = {"order_id": order_id, "customer": CUSTOMER, "items": items, **money}
    return event("order.created", {**body, "coupon_code": None}, "order_service")


def order_confirmed(order_id: str) -> Envelope:
    money = {"subtotal_cents": PRICE_CENTS, "discount_cents": 0, "total_cents": PRICE_CENTS}
    items = [{"sku": SKU, "quantity": 1}]
    body = {"order_id": order_id, "customer": CUSTOMER, "items": items, **money}
    return event("order.confirmed", {**body, "coupon_code": None}, "order_service")


def coupon_issued(order_id: str) -> Envelope:
    body = {
        "order_id": order_id,
        "code": f"THANKS-{secrets.token_hex(3).upper()}",
        "amount_off_cents": None,
        "percent_off": 10,
        "min_subtotal_cents": 0,
        "expires_at": (utcnow() + timedelta(days=30)).isoformat().replace("+00:00", "Z"),
        "customer_phone": CUSTOMER["phone"],
        "status": "ACTIVE",
    }
    return event("coupon.issued", body, "coupon_service")


def sms_sent(order_id: str, about: str) -> Envelope:
    body = {"order_id": order_id, "event": about, "phone": CUSTOMER["phone"], "text": "Thanks!"}
    return event("notification.sms_sent", body, "notification_service")


def insert_orders(engine: Engine, count: int, status: str) -> list[str]:
    """The product and `count` orders in the order database, as the web app would write them."""
    ids = [str(uuid.uuid4()) for _ in range(count)]
    with make_session_factory(engine).begin() as session:
        session.add(Product(sku=SKU, name=PRODUCT_NAME, price_cents=PRICE_CENTS, available=STOCK))
        for order_id in ids:
            now = utcnow()
            line = OrderLine(
                position=0, sku=SKU, name=PRODUCT_NAME, quantity=1, unit_price_cents=PRICE_CENTS
            )
            created = TimelineEntry(event="order.created", service="order_service", at=now)
            session.add(
                Order(
                    id=order_id,
                    status=status,
                    customer_name=CUSTOMER["name"],
                    customer_phone=CUSTOMER["phone"],
                    subtotal_cents=PRICE_CENTS,
                    discount_cents=0,
                    total_cents=PRICE_CENTS,
                    coupon_code=None,
                    created_at=now,
                    updated_at=now,
                    lines=[line],
                    timeline=[created],
                )
            )
    return ids


def inventory_messages(_engine: Engine, count: int) -> list[Envelope]:
    """product.created with a large stock, then order.created events that reserve one each."""
    product = {"sku": SKU, "name": PRODUCT_NAME, "price_cents": PRICE_CENTS, "stock": STOCK}
    first = event("product.created", product, "order_service")
    return [first, *(order_created(str(uuid.uuid4())) for _ in range(count - 1))]


def saga_messages(engine: Engine, count: int) -> list[Envelope]:
    """inventory.reserved for `count` PENDING orders: each one confirms its order."""
    return [
        event(
            "inventory.reserved",
            {"order_id": order_id, "items": [{"sku": SKU, "quantity": 1}]},
            "inventory_service",
        )
        for order_id in insert_orders(engine, count, "PENDING")
    ]


def read_model_messages(engine: Engine, count: int) -> list[Envelope]:
    """What a confirmed order sends the read model: stock_changed, coupon.issued, two SMS."""
    messages = []
    for number, order_id in enumerate(insert_orders(engine, count // 4, "CONFIRMED"), start=1):
        stock = {"sku": SKU, "available": STOCK - number, "version": number}
        messages += [
            event("inventory.stock_changed", stock, "inventory_service"),
            coupon_issued(order_id),
            sms_sent(order_id, "order.confirmed"),
            sms_sent(order_id, "coupon.issued"),
        ]
    return messages


def coupon_messages(_engine: Engine, count: int) -> list[Envelope]:
    """order.confirmed events without a coupon: each earns the customer a reward coupon."""
    return [order_confirmed(str(uuid.uuid4())) for _ in range(count)]


def notification_messages(_engine: Engine, count: int) -> list[Envelope]:
    """order.confirmed and coupon.issued, one of each per order: one SMS each."""
    messages = []
    for _ in range(count // 2):
        order_id = str(uuid.uuid4())
        messages += [order_confirmed(order_id), coupon_issued(order_id)]
    return messages


@dataclass(frozen=True)
class ConsumerCase:
    name: str
    queue: str
    service: str
    inbox: type
    handler: Callable[[], Handler]
    messages: Callable[[Engine, int], list[Envelope]]  # fills the database (untimed) too


CONSUMER_CASES = [
    ConsumerCase(
        "inventory consumer",
        "inventory.orders",
        "inventory_service",
        InventoryInbox,
        lambda: route_by_type(inventory_handlers.HANDLERS),
        inventory_messages,
    ),
    ConsumerCase(
        "order saga",
        "orders.inventory",
        "order_service",
        OrderInbox,
        lambda: route_by_type(saga.HANDLERS),
        saga_messages,
    ),
    ConsumerCase(
        "order read model",
        "orders.read-model",
        "order_service",
        OrderInbox,
        lambda: read_model.handle,
        read_model_messages,
    ),
    ConsumerCase(
        "coupon consumer",
        "coupons.orders",
        "coupon_service",
        CouponInbox,
        lambda: route_by_type(coupon_handlers.HANDLERS),
        coupon_messages,
    ),
    ConsumerCase(
        "notification consumer",
        "notifications.sms",
        "notification_service",
        NotificationInbox,
        notification_handler,  # it stores the SMS; the sender is not measured here
        notification_messages,
    ),
]


def preload(amqp_url: str, queue: str, messages: list[Envelope]) -> None:
    """Declare the topology and put `messages` straight into `queue`; wait until all landed."""
    connection = open_connection(amqp_url, "bench: preload")
    try:
        channel = connection.channel()
        declare_topology(channel, FLASH_SALE_QUEUE_LIMIT)
        for message in messages:
            channel.basic_publish("", queue, message.encoded_body(), message.properties())

        def landed() -> bool:
            return channel.queue_declare(queue, passive=True).method.message_count == len(messages)

        if wait_until(landed, 60) is None:
            raise BenchFailure(f"{queue}: the preloaded messages did not all land")
    finally:
        close_quietly(connection)


def raw_consume(amqp_url: str, queue: str, count: int) -> float:
    """Plain pika: consume and basic_ack `count` messages; seconds from first to last."""
    connection = open_connection(amqp_url, "bench: raw consumer")
    try:
        channel = connection.channel()
        channel.basic_qos(prefetch_count=PREFETCH)
        first = 0.0
        deliveries = channel.consume(queue, inactivity_timeout=10)
        for done, (method, _properties, _body) in enumerate(deliveries, start=1):
            if method is None:
                raise BenchFailure(f"{queue}: raw pika got only {done - 1} of {count} messages")
            if done == 1:
                first = time.perf_counter()
            channel.basic_ack(method.delivery_tag)
            if done == count:
                break
        seconds = time.perf_counter() - first
        channel.cancel()
        return seconds
    finally:
        close_quietly(connection)


class TimedRunner(ConsumerRunner):
    """A ConsumerRunner that notes its first delivery and stops once `expected` messages are
    settled (a requeued one comes back and counts when it is handled); it stops `profiler`
    right then, so that the runner's wait for `stop` is not profiled."""

    def __init__(
        self,
        *,
        expected: int,
        finished: threading.Event,
        profiler: cProfile.Profile | None = None,
        **options,  # type: ignore[no-untyped-def]
    ) -> None:
        super().__init__(**options)
        self.expected = expected
        self.finished = finished
        self.profiler = profiler
        self.first = self.last = 0.0

    def handle_delivery(self, connection, channel, method, properties, body) -> None:  # type: ignore[no-untyped-def]
        if self.first == 0.0:
            self.first = time.perf_counter()
        super().handle_delivery(connection, channel, method, properties, body)
        stats = self.stats
        if stats.handled + stats.duplicates + stats.dead_lettered == self.expected:
            self.last = time.perf_counter()
            if self.profiler is not None:
                self.profiler.disable()
            self.finished.set()


def run_consumer(
    case: ConsumerCase,
    engine: Engine,
    amqp_url: str,
    count: int,
    profiler: cProfile.Profile | None = None,
) -> float:
    """Run the service's ConsumerRunner in this thread until it handled `count` messages;
    return the seconds from its first delivery until the last one was acked."""
    finished = threading.Event()
    runner = TimedRunner(
        expected=count,
        finished=finished,
        profiler=profiler,
        queue=case.queue,
        handler=case.handler(),
        engine=engine,
        inbox_model=case.inbox,
        amqp_url=amqp_url,
        flash_sale_queue_limit=FLASH_SALE_QUEUE_LIMIT,
        name=f"bench {case.name}",
        prefetch=PREFETCH,
    )
    watchdog = threading.Timer(120, finished.set)  # never hang on a consumer that stalls
    watchdog.start()
    if profiler is not None:
        profiler.enable()
    try:
        runner.run(finished)
    finally:
        if profiler is not None:
            profiler.disable()
        watchdog.cancel()
    stats = runner.stats
    if stats.handled != count:
        raise BenchFailure(f"{case.name}: handled {stats.handled} of {count} ({stats})")
    return runner.last - runner.first


@dataclass
class ConsumerResult:
    case: ConsumerCase
    messages: int
    runner_seconds: float
    raw_seconds: float
    others: float  # % of a core other processes used meanwhile

    @property
    def rate(self) -> float:
        return self.messages / self.runner_seconds

    @property
    def raw_rate(self) -> float:
        return self.messages / self.raw_seconds

    @property
    def ratio(self) -> float:
        return self.rate / self.raw_rate


@contextmanager
def service_database(case: ConsumerCase) -> Iterator[Engine]:
    """A fresh, migrated SQLite database for the case's service."""
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-db-") as folder:
        url = f"sqlite:///{Path(folder) / 'service.db'}"
        upgrade(case.service, url)
        engine = make_engine(url)
        try:
            yield engine
        finally:
            engine.dispose()


def measure_consumer(case: ConsumerCase, count: int) -> ConsumerResult:
    meter = CpuMeter(watched_processes(None))
    with service_database(case) as engine:
        messages = case.messages(engine, count)
        with fresh_vhost("pipeline-raw") as amqp_url:
            preload(amqp_url, case.queue, messages)
            raw_seconds = raw_consume(amqp_url, case.queue, len(messages))
        with fresh_vhost("pipeline-runner") as amqp_url:
            preload(amqp_url, case.queue, messages)
            runner_seconds = run_consumer(case, engine, amqp_url, len(messages))
    others = meter.percent()[OTHERS]
    return ConsumerResult(case, len(messages), runner_seconds, raw_seconds, others)


def profile_consumer(case: ConsumerCase, count: int) -> Profile:
    """The same run as measure_consumer's, under cProfile (which slows Python code down)."""
    profiler = cProfile.Profile()
    with service_database(case) as engine, fresh_vhost("pipeline-profile") as amqp_url:
        messages = case.messages(engine, count)
        preload(amqp_url, case.queue, messages)
        run_consumer(case, engine, amqp_url, len(messages), profiler)
    return Profile(case, len(messages), pstats.Stats(profiler))


# --- Where the consumers' time goes ---------------------------------------------------------


@dataclass
class Profile:
    case: ConsumerCase
    messages: int
    stats: pstats.Stats

    def entries(self) -> list[tuple[str, str, float, float, int]]:
        """(file, function, own seconds, cumulative seconds, calls) for every function."""
        return [
            (filename, function, own, cumulative, calls)
            for (filename, _line, function), (_cc, calls, own, cumulative, _callers) in (
                self.stats.stats.items()  # type: ignore[attr-defined]
            )
        ]

    def cumulative(self, file_suffix: str, function: str) -> float:
        return sum(
            cum
            for filename, name, _own, cum, _calls in self.entries()
            if filename.endswith(file_suffix) and name == function
        )

    def stages(self) -> dict[str, float]:
        """Seconds per step of the runner's loop (see messaging/consumer.py)."""
        code = self.case.handler().__code__  # the function the runner calls for each message
        handler = sum(
            cum
            for filename, name, _own, cum, _calls in self.entries()
            if filename == code.co_filename and name == code.co_name
        )
        consume = self.cumulative("messaging/consumer.py", "_consume")
        delivery = self.cumulative("messaging/consumer.py", "handle_delivery")
        transaction = self.cumulative("messaging/consumer.py", "_handle_in_transaction")
        inbox = self.cumulative("messaging/inbox.py", "first_delivery")
        envelope = self.cumulative("messaging/envelope.py", "from_delivery")
        ack = self.cumulative("pika/adapters/blocking_connection.py", "basic_ack")
        return {
            "envelope": envelope,
            "inbox": inbox,
            "handler": handler,
            "commit": transaction - inbox - handler,
            "ack": ack,
            "waiting": consume - delivery,
        }


STAGE_LEGEND = """\
    envelope: Envelope.from_delivery; inbox: first_delivery, with the transaction's start
    (pool checkout, BEGIN IMMEDIATE, SELECT, SAVEPOINT, INSERT, RELEASE); handler: the
    service's handler; commit: the rest (flushing the handler's new rows, COMMIT); ack:
    basic_ack; waiting: for the next delivery."""


LAYERS = [  # (layer, a test on (file, function name)); the first that matches wins
    ("sqlite3 C calls (execute, commit)", lambda f, n: f == "~" and "sqlite3" in n),
    ("waiting for the broker (poll)", lambda f, n: f == "~" and "poll" in n),
    ("socket send/recv", lambda f, n: f == "~" and "socket" in n),
    ("SQLAlchemy (Python)", lambda f, n: "/sqlalchemy/" in f),
    ("pika (Python)", lambda f, n: "/pika/" in f),
    ("pydantic", lambda f, n: "pydantic" in f or "pydantic" in n),
    ("json", lambda f, n: "/json/" in f or "json" in n),
    ("logging", lambda f, n: "/logging/" in f),
    ("messaging/ (runner, inbox, outbox, envelope)", lambda f, n: "/messaging/" in f),
    ("service handlers", lambda f, n: "_service/" in f),
]


def layer_of(filename: str, function: str) -> str:
    for layer, matches in LAYERS:
        if matches(filename, function):
            return layer
    return "other (stdlib: uuid, datetime, threading, ...)"


def layers(profile: Profile) -> list[tuple[str, float]]:
    """Own time per layer, as fractions of all profiled time, biggest first."""
    totals: dict[str, float] = {}
    for filename, function, own, _cum, _calls in profile.entries():
        layer = layer_of(filename, function)
        totals[layer] = totals.get(layer, 0.0) + own
    whole = sum(totals.values()) or 1.0
    return sorted(((layer, own / whole) for layer, own in totals.items()), key=lambda x: -x[1])


def hot_functions(profile: Profile, count: int) -> list[tuple[str, float, int]]:
    """The `count` functions with the most own time: (name, fraction of all, calls)."""
    entries = profile.entries()
    whole = sum(entry[2] for entry in entries) or 1.0
    ranked = sorted(entries, key=lambda entry: -entry[2])[:count]
    return [
        (f"{function} ({'built-in' if filename == '~' else short_path(filename)})", own / whole, n)
        for filename, function, own, _cum, n in ranked
    ]


def short_path(filename: str) -> str:
    for marker in ("site-packages/", str(REPO) + "/", "/lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def print_stages(profiles: list[Profile]) -> None:
    """One line per consumer: microseconds per message in each step of the runner."""
    names = list(profiles[0].stages())
    print(
        "\n  (c) where a ConsumerRunner's time goes, under cProfile (it inflates Python code), "
        "in us per message:"
    )
    print(f"    {'consumer':<22}" + "".join(f"{name:>10}" for name in names) + f"{'total':>8}")
    for profile in profiles:
        stages = profile.stages()
        cells = "".join(f"{stages[name] / profile.messages * 1e6:>10.0f}" for name in names)
        total = sum(stages.values()) / profile.messages * 1e6
        print(f"    {profile.case.name:<22}{cells}{total:>8.0f}")
    print(STAGE_LEGEND)


def print_layers(profile: Profile) -> None:
    print(f"\n  {profile.case.name} under cProfile, own time by layer:")
    for layer, share in layers(profile):
        if share >= 0.02:
            print(f"    {share * 100:5.1f} %  {layer}")
    print("    hottest functions (own time, calls):")
    for name, share, calls in hot_functions(profile, 6):
        print(f"    {share * 100:5.1f} %  {calls:>7}  {name}")


CONSUMER_SUGGESTIONS = """\
  (c) suggestions, from the profile: per message the runner opens a session, takes SQLite's
      write lock (BEGIN IMMEDIATE), SELECTs the inbox, opens a SAVEPOINT, flushes the inbox
      row, runs the handler, flushes again, commits and acks; most of that is SQLAlchemy's
      own Python, not SQLite.
      - handle a batch of deliveries (up to the prefetch) in one transaction, each in its own
        SAVEPOINT so a poison message only rolls back itself, then commit once and ack once
        with multiple=True: the session, BEGIN, commit and ack are paid once per batch;
      - record the inbox row with one INSERT ... ON CONFLICT DO NOTHING (SQLite and PostgreSQL
        have it) and read the rowcount, instead of SELECT + SAVEPOINT + INSERT;
      - write inbox and outbox rows with Core insert() instead of session.add(), which skips
        the unit of work's bookkeeping."""


# --- The report ---------------------------------------------------------------------------------


def say(text: str) -> None:
    """Print a note, wrapped, indented under the table."""
    print(textwrap.fill(text, width=100, initial_indent="  ", subsequent_indent="    "))


def verdict(met: bool) -> str:
    return "goal met" if met else "goal NOT met"


COLUMN_WIDTHS = [46, 14, 18, 6, 10, 13]


def table_row(cells: list[str]) -> str:
    padded = [
        cell.ljust(width) if index == 0 else cell.rjust(width)
        for index, (cell, width) in enumerate(zip(cells, COLUMN_WIDTHS, strict=True))
    ]
    return "| " + " | ".join(padded) + " |"


def best_rate(search: Search | None) -> float:
    return search.best.rate if search is not None and search.best is not None else 0.0


def print_table(
    pipeline: Search | None,
    bare: Search | None,
    latency: Latency | None,
    consumers: list[ConsumerResult],
) -> None:
    print()
    print(table_row(["measurement", "shop", "baseline", "ratio", "goal", "verdict"]))
    print("|" + "|".join("-" * (width + 2) for width in COLUMN_WIDTHS) + "|")
    if pipeline is not None or bare is not None:
        shop_rate, bare_rate = best_rate(pipeline), best_rate(bare)
        both = pipeline is not None and bare is not None and bare_rate > 0
        ratio = shop_rate / bare_rate if both else 0.0
        print(
            table_row(
                [
                    "(a) sustained POST /api/orders rate",
                    f"{shop_rate:.0f} orders/s" if pipeline is not None else "-",
                    f"{bare_rate:.0f} req/s bare" if bare is not None else "-",
                    f"{ratio:.2f}" if both else "-",
                    f">= {PIPELINE_GOAL}",
                    verdict(ratio >= PIPELINE_GOAL) if both else "-",
                ]
            )
        )
    if latency is not None:
        label = f"(b) POST -> CONFIRMED at {latency.rate:.0f} orders/s"
        print(table_row([f"{label}, p50", f"{latency.p50 * 1000:.0f} ms", "", "", "", ""]))
        met = latency.p99 < LATENCY_GOAL and latency.not_confirmed == 0
        print(
            table_row(
                [
                    f"{label}, p99",
                    f"{latency.p99 * 1000:.0f} ms",
                    "",
                    "",
                    f"< {LATENCY_GOAL * 1000:.0f} ms",
                    verdict(met),
                ]
            )
        )
    for result in consumers:
        print(
            table_row(
                [
                    f"(c) {result.case.name} ({result.case.queue})",
                    f"{result.rate:.0f} msg/s",
                    f"{result.raw_rate:.0f} msg/s raw",
                    f"{result.ratio:.2f}",
                    f">= {CONSUMER_GOAL}",
                    verdict(result.ratio >= CONSUMER_GOAL),
                ]
            )
        )


def print_notes(
    pipeline: Search | None,
    bare: Search | None,
    latency: Latency | None,
    consumers: list[ConsumerResult],
) -> None:
    print()
    say(
        f"machine: {os.cpu_count()} cores, shared by the load generator, RabbitMQ and the server "
        "(every process of `shop up`, or the bare app's gunicorn), and by whatever else runs "
        "on the machine (the CPU tables below show how much): every number is 'on this "
        "machine, with the generator competing'."
    )
    say(f"web server (shop and bare app alike): gunicorn, {web_concurrency()}.")
    trials = [trial for search in (pipeline, bare) if search for trial in search.trials]
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
            "load generator: pure Python, one asyncio loop, open loop (each request starts on "
            "schedule), a new connection per request. Against the bare app at "
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
    outside = (OTHERS, RABBITMQ, "this process (load generator)")
    return {label: cpu for label, cpu in trial.cpu.items() if label not in outside}


def cpu_budget(trial: Trial, capacity: float) -> str:
    """CPU per request at a passing rate, and the rate that CPU alone would allow."""
    used = sum(server_processes(trial).values()) + trial.cpu.get(RABBITMQ, 0.0)
    per_request = used / 100 / trial.rate  # seconds of CPU
    generator = trial.cpu.get("this process (load generator)", 0.0)
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
      order process's relay, saga and read model, and messaging/database.py begins *every*
      transaction with BEGIN IMMEDIATE, reads too: the web's product lookup, GET
      /api/orders/{{id}}, the relay's poll every 20 ms even when the outbox is empty. A
      writer that finds the lock taken sleeps 1, 2, 5, 10, 15, 20, 25 ... ms (SQLite's busy
      handler) instead of waking when it frees, so under load the web threads sleep.
      - begin read-only transactions deferred (plain BEGIN): the product lookup in
        place_order, GET requests, the relay's claim when nothing is waiting;
      - take the write lock fewer times per order: batch consumer deliveries per transaction
        (see (c)); let the relay poll less often when it found nothing;
      - or put the order service on PostgreSQL (ORDER_DATABASE_URL), where writers lock rows,
        not the whole file."""


# --- Main ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.pipeline",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per trial (8)")
    parser.add_argument(
        "--settle", type=float, default=5.0, help="seconds after a trial to drain (5)"
    )
    parser.add_argument("--pipeline-start", type=float, default=10.0, help="first rate (10/s)")
    parser.add_argument("--bare-start", type=float, default=100.0, help="first rate (100/s)")
    parser.add_argument("--refine-steps", type=int, default=2, help="bisection steps (2)")
    parser.add_argument(
        "--max-http-p99", type=float, default=0.5, help="HTTP p99 bound, seconds (0.5)"
    )
    parser.add_argument("--messages", type=int, default=2000, help="N per consumer (2000)")
    parser.add_argument(
        "--only",
        choices=["pipeline", "bare", "consumers"],
        action="append",
        help="run only this part: pipeline ((a) and (b)), bare, consumers ((c)); repeatable",
    )
    parser.add_argument(
        "--profile-messages", type=int, default=500, help="N per profiled consumer (500)"
    )
    parser.add_argument("--no-profile", action="store_true", help="skip cProfile on a miss")
    return parser.parse_args(argv)


def run_http(args: argparse.Namespace, parts: set[str]) -> tuple[Search | None, ...]:
    pipeline = latency = bare = None
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as name:
        folder = Path(name)
        if "pipeline" in parts:
            print("(a) pipeline: `shop up`, doubling then bisecting the order rate ...", flush=True)
            (folder / "shop").mkdir()
            pipeline, latency = measure_pipeline(args, folder / "shop")
        if "bare" in parts:
            print("(a) bare endpoint, the same gunicorn command line ...", flush=True)
            (folder / "bare").mkdir()
            bare = measure_bare(args, folder / "bare")
    return pipeline, bare, latency


def run_consumers(args: argparse.Namespace) -> list[ConsumerResult]:
    print(f"(c) consumers: {args.messages} messages each, ConsumerRunner vs raw pika ...")
    results = []
    for case in CONSUMER_CASES:
        result = measure_consumer(case, args.messages)
        print(
            f"  {case.name:<22} {result.rate:7.0f} msg/s, raw {result.raw_rate:7.0f} msg/s, "
            f"{result.ratio:.2f}, others {result.others:.0f} % CPU",
            flush=True,
        )
        results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    pipeline = bare = latency = None
    consumers: list[ConsumerResult] = []
    parts = set(args.only or ["pipeline", "bare", "consumers"])
    try:
        if parts & {"pipeline", "bare"}:
            pipeline, bare, latency = run_http(args, parts)
        if "consumers" in parts:
            consumers = run_consumers(args)
    except BenchFailure as failure:
        print(f"FAIL: {failure}")
        return 1
    print_table(pipeline, bare, latency, consumers)
    print_notes(pipeline, bare, latency, consumers)
    print_cpu("(a) pipeline", pipeline)
    print_findings("(a) pipeline", pipeline)
    print_cpu("(a) bare endpoint", bare)
    print_findings("(a) bare endpoint", bare)
    missed = [result for result in consumers if result.ratio < CONSUMER_GOAL]
    if missed and not args.no_profile:
        print(f"\n(c) missed: profiling {len(missed)} consumers, {args.profile_messages} messages")
        profiles = [profile_consumer(result.case, args.profile_messages) for result in missed]
        print_stages(profiles)
        worst = min(missed, key=lambda result: result.ratio)
        print_layers(next(profile for profile in profiles if profile.case is worst.case))
        print(CONSUMER_SUGGESTIONS)
    print(f"\n  the whole bench took {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
