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
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import requests
from pika.adapters.blocking_connection import BlockingChannel

from bench import parts
from bench.cpu import CpuMeter, watched_processes
from bench.pipeline.events import ORDER, PRODUCT
from bench.pipeline.trials import Search, Trial, find_max_rate, http_problems, offer_orders
from bench.pipeline.waits import WaitSampler
from bench.support import BenchFailure, ShopUp, queue_depth, shop_up, wait_until
from loadtest.sampler import Sampler
from loadtest.stats import percentile
from messaging.connection import channel_for, close_quietly, open_connection

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


def query(shop: ShopUp, service: str, sql: str) -> list[tuple]:
    """Read a service's SQLite file directly (plain SELECTs take no write lock)."""
    database = shop.folder / parts.sqlite_file(service)
    with closing(sqlite3.connect(database, timeout=15)) as db:
        return db.execute(sql).fetchall()


def backlog(shop: ShopUp, channel: BlockingChannel) -> Backlog:
    orders = f"SELECT count(*) FROM {parts.ORDERS_TABLE} WHERE status='PENDING'"
    pending = query(shop, parts.ORDER_SERVICE, orders)
    unsent = sum(
        query(shop, service, f"SELECT count(*) FROM {table} WHERE sent_at IS NULL")[0][0]
        for service, table in parts.OUTBOX_TABLES.items()
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


def parse_time(value: str) -> float:
    """A SQLite DateTime column (naive, stored in UTC) as a Unix timestamp."""
    return datetime.fromisoformat(value).replace(tzinfo=UTC).timestamp()


def confirmation_latency(shop: ShopUp, rate: float, args: argparse.Namespace) -> Latency:
    """(b): a run at `rate`, then each order's updated_at (set when CONFIRMED) vs its POST."""
    trial = pipeline_trial(shop, rate, args.duration, args, want_ids=True)
    print(f"  latency  {trial.line()}", flush=True)
    sent = {reply.order_id: reply.sent_at for reply in trial.load.replies if reply.order_id}
    rows = query(
        shop,
        parts.ORDER_SERVICE,
        f"SELECT id, status, created_at, updated_at FROM {parts.ORDERS_TABLE}",
    )
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
    with shop_up(folder, "pipeline-shop") as shop:
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
