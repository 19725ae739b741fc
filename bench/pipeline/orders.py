"""(a) and (b) through the whole shop: `shop up` as `make run` starts it, at a fixed order rate.

`shop up` runs as a subprocess (bench/support.py: SQLite files under its folder's var/,
gunicorn with the shop's settings, every service as a process) on a fresh vhost. A trial
(`pipeline_trial`) first waits until the pipeline has nothing left to do (no PENDING
order, no ready message in a work queue, no unsent outbox row, seen twice in a row), then
offers orders at the rate, sampling the ready messages over all work queues every 0.25 s,
the CPU of every process (bench/cpu.py) and what their threads do (waits.py). R passes when
the web app kept up (trials.py), the ready messages averaged over the last quarter of the
run are at most one second of orders, and within --settle seconds everything is done.
(b) is one more trial at half the best rate: each order's updated_at (the saga sets it when
it confirms) minus the moment its POST went out.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import requests
from pika.adapters.blocking_connection import BlockingChannel
from sqlalchemy import ColumnElement, Engine, Executable, Row, Table, func, select

from bench import parts
from bench.cpu import GENERATOR, OTHERS, POSTGRES, RABBITMQ, CpuMeter, watched_processes
from bench.pipeline.events import ORDER, PRODUCT
from bench.pipeline.trials import Search, Trial, find_max_rate, http_problems, offer_orders
from bench.pipeline.waits import WaitSampler
from bench.support import BenchFailure, ShopUp, queue_depth, shop_up, wait_until
from loadtest.sampler import Sampler
from loadtest.stats import percentile
from messaging.connection import channel_for, close_quietly, open_connection
from messaging.database import make_engine

MAX_QUEUED_SECONDS = 1.0  # at the end of a run, the queues may hold this many seconds of orders
DRAIN_BEFORE_SECONDS = 120.0  # a failed trial's backlog must be gone before the next trial


def ready_messages(channel: BlockingChannel) -> int:
    """Ready messages over every work queue."""
    return sum(queue_depth(channel, queue) for queue in parts.WORK_QUEUE_NAMES)


@dataclass
class Backlog:
    """Work the pipeline still has to do."""

    pending_orders: int
    queued: int  # ready messages over all work queues
    unsent: int  # outbox rows not yet published, all services

    @property
    def empty(self) -> bool:
        return self.pending_orders == 0 and self.queued == 0 and self.unsent == 0


# Engines that read the shop's databases, one per URL, disposed when its shop stops.
_readers: dict[str, Engine] = {}


def database_url(shop: ShopUp, service: str) -> str:
    """The shop's PostgreSQL database, or the service's SQLite file under its folder."""
    return shop.postgres_url or f"sqlite:///{shop.folder / parts.sqlite_file(service)}"


def query(shop: ShopUp, service: str, statement: Executable) -> list[Row]:
    """Read a service's database directly (plain SELECTs take no write lock)."""
    url = database_url(shop, service)
    if url not in _readers:
        _readers[url] = make_engine(url)
    with _readers[url].connect() as connection:
        return list(connection.execute(statement))


def close_readers() -> None:
    for engine in _readers.values():
        engine.dispose()
    _readers.clear()


def count(table: Table, condition: ColumnElement[bool]) -> Executable:
    return select(func.count()).select_from(table).where(condition)


def backlog(shop: ShopUp, channel: BlockingChannel) -> Backlog:
    orders = parts.ORDERS
    pending = query(shop, parts.ORDER_SERVICE, count(orders, orders.c.status == "PENDING"))
    unsent = sum(
        query(shop, service, count(outbox, outbox.c.sent_at.is_(None)))[0][0]
        for service, outbox in parts.OUTBOXES.items()
    )
    return Backlog(pending[0][0], ready_messages(channel), unsent)


def wait_drained(shop: ShopUp, seconds: float) -> float | None:
    """Seconds until nothing is left to do; None at the deadline. "Nothing" must be seen
    twice in a row, 0.1 s apart: a consumer may hold a message that is neither in its
    queue nor yet in its outbox."""
    with channel_for(shop.amqp_url, "bench: backlog") as channel:
        empty_in_a_row = 0

        def drained() -> bool:
            nonlocal empty_in_a_row
            empty_in_a_row = empty_in_a_row + 1 if backlog(shop, channel).empty else 0
            return empty_in_a_row >= 2

        return wait_until(drained, seconds, pause=0.1)


def stock_the_shop(shop: ShopUp) -> None:
    """Create the product with a large stock; wait until a first order is CONFIRMED."""
    product = {
        "sku": PRODUCT.sku,
        "name": PRODUCT.name,
        "price_cents": PRODUCT.price_cents,
        "stock": PRODUCT.stock,
    }
    response = requests.post(
        shop.url("/api/products"), json=product, headers=shop.admin, timeout=10
    )
    if response.status_code != 201:
        raise BenchFailure(f"creating the product: {response.status_code} {response.text}")
    # Until the inventory has handled product.created, an order would be rejected.
    if wait_drained(shop, 30) is None:
        raise BenchFailure("product.created did not make it through the pipeline")
    response = requests.post(shop.url("/api/orders"), json=ORDER, timeout=10)
    if response.status_code != 201:
        raise BenchFailure(f"the first order: {response.status_code} {response.text}")
    if wait_drained(shop, 30) is None:
        raise BenchFailure("the first order was not CONFIRMED within 30 s")
    status = requests.get(shop.url(f"/api/orders/{response.json()['id']}"), timeout=10).json()
    if status["status"] != "CONFIRMED":
        raise BenchFailure(f"the first order is {status['status']}: {status.get('reject_reason')}")


class DepthSampler(Sampler):
    """The ready messages over all work queues, every 0.25 s, on a connection of its own."""

    interval = 0.25
    name = "depth sampler"

    def __init__(self, amqp_url: str) -> None:
        super().__init__()
        self.amqp_url = amqp_url
        self.samples: list[int] = []

    def setup(self) -> None:
        self.connection = open_connection(self.amqp_url, "bench: depth sampler")
        self.channel = self.connection.channel()

    def sample(self) -> None:
        self.samples.append(ready_messages(self.channel))

    def teardown(self) -> None:
        close_quietly(self.connection)


def pipeline_trial(
    shop: ShopUp, rate: float, duration: float, args: argparse.Namespace, want_ids: bool = False
) -> Trial:
    if wait_drained(shop, DRAIN_BEFORE_SECONDS) is None:
        raise BenchFailure(f"the pipeline did not drain within {DRAIN_BEFORE_SECONDS:.0f} s")
    processes = watched_processes(shop.pid)
    meter = CpuMeter(processes)
    with DepthSampler(shop.amqp_url) as depths, WaitSampler(processes) as waits:
        load = offer_orders(shop.port, rate, duration, want_ids)
    cpu = meter.read().percent()
    drained_after = wait_drained(shop, args.settle)
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


def confirmation_latency(shop: ShopUp, rate: float, args: argparse.Namespace) -> Latency:
    """(b): a run at `rate`, then each order's updated_at (set when CONFIRMED) vs its POST."""
    trial = pipeline_trial(shop, rate, args.duration, args, want_ids=True)
    print(f"  latency  {trial.line()}", flush=True)
    sent = {reply.order_id: reply.sent_at for reply in trial.load.replies if reply.order_id}
    orders = parts.ORDERS
    columns = orders.c.id, orders.c.status, orders.c.created_at, orders.c.updated_at
    rows = query(shop, parts.ORDER_SERVICE, select(*columns))
    confirmed = [row for row in rows if row.id in sent and row.status == "CONFIRMED"]
    total = [row.updated_at.timestamp() - sent[row.id] for row in confirmed]
    server = [(row.updated_at - row.created_at).total_seconds() for row in confirmed]
    return Latency(
        rate,
        len(sent),
        percentile(total, 0.5),
        percentile(total, 0.99),
        percentile(server, 0.5),
        percentile(server, 0.99),
        len(sent) - len(confirmed),
    )


@dataclass
class IdleUse:
    """What the whole shop used while it had nothing to do, in % of one core."""

    seconds: float
    shop: float  # every process of `shop up`: supervisor, web, every service
    busiest: tuple[str, float]  # the process that used the most, and its share
    rabbitmq: float
    postgres: float  # the PostgreSQL server's processes (on SQLite: someone else's)


def idle_use(shop: ShopUp, seconds: float) -> IdleUse:
    """CPU of every process of `shop up` over `seconds` with no order coming in (after a
    drain, so nothing is left over): the pollers', heartbeats' and timers' cost."""
    if wait_drained(shop, DRAIN_BEFORE_SECONDS) is None:
        raise BenchFailure("the pipeline did not drain before the idle measurement")
    meter = CpuMeter(watched_processes(shop.pid))
    time.sleep(seconds)  # the measurement is of doing nothing: there is no condition to wait on
    use = meter.read().percent()
    outside = (OTHERS, RABBITMQ, POSTGRES, GENERATOR)
    shop_processes = {label: cpu for label, cpu in use.items() if label not in outside}
    busiest = max(shop_processes.items(), key=lambda item: item[1])
    return IdleUse(
        seconds,
        sum(shop_processes.values()),
        busiest,
        use.get(RABBITMQ, 0.0),
        use.get(POSTGRES, 0.0),
    )


@dataclass
class PipelineRun:
    """One `shop up`'s results: its rate search, (b) if asked, and its idle CPU."""

    search: Search
    latency: Latency | None
    idle: IdleUse


def measure_pipeline(
    args: argparse.Namespace,
    folder: Path,
    with_latency: bool = True,
    up_args: tuple[str, ...] = (),
    postgres_url: str | None = None,
    label: str = "pipeline",
) -> PipelineRun:
    """`shop up UP_ARGS...` (on SQLite, or every service on `postgres_url`): the idle CPU,
    the highest sustained order rate, and (b) at half of it if `with_latency`."""
    try:
        with shop_up(folder, "pipeline-shop", up_args=up_args, postgres_url=postgres_url) as shop:
            stock_the_shop(shop)
            idle = idle_use(shop, args.idle_seconds)
            print(
                f"  {label} idle for {idle.seconds:.0f} s: {idle.shop:.1f} % of a core over "
                f"every process of `shop up` (RabbitMQ {idle.rabbitmq:.1f} %, PostgreSQL "
                f"{idle.postgres:.1f} %)",
                flush=True,
            )
            search = find_max_rate(
                lambda rate: pipeline_trial(shop, rate, args.duration, args),
                args.pipeline_start,
                args.refine_steps,
                label,
            )
            latency = None
            if with_latency and search.best is not None:
                latency = confirmation_latency(shop, round(search.best.rate / 2), args)
            return PipelineRun(search, latency, idle)
    finally:
        close_readers()
