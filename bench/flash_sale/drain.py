"""How fast does the ticket worker drain a full `flash-sale.requests`? Part of bench.flash_sale.

A bounded queue is only as good as its drain: the gate admits at most the queue's limit,
and every admitted customer waits until the order service's ticket worker has decided the
ticket (WON, with an order, or LOST, and why). Each measurement takes a fresh vhost and a
fresh migrated order database (SQLite, then PostgreSQL where one answers), opens a sale,
fills the queue to its limit with purchase requests of distinct customers (as the gate
publishes them), then starts the worker exactly as the order process makes it
(bench/parts.py: service_consumer) and times its first delivery to the moment every ticket
is decided. Two sales:

  quota = 10 % of the queue   the usual flash sale: a few winners (each an order with its
                              `order.created`), then the rest LOST at once ("sold out");
  every ticket wins           the worst case for the drain: each ticket is an order.

Each row is the median of --drain-rounds rounds. Goal: at least 1,000 tickets/s.
"""

from __future__ import annotations

import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from statistics import median

from sqlalchemy import Engine

from bench import parts
from bench.support import BenchFailure, fresh_postgres, fresh_vhost, wait_for_depth
from bench.table import table
from messaging.connection import close_quietly, open_connection
from messaging.envelope import Envelope

DRAIN_GOAL = 1_000.0  # tickets per second
SALE_ID = "bench-sale"
DRAIN_DEADLINE = 120.0  # seconds: a worker that stalls fails the bench, it does not hang it


@dataclass
class Drain:
    database: str
    sale: str
    tickets: int
    rates: list[float]  # tickets/s, one per round

    @property
    def rate(self) -> float:
        return median(self.rates)


@contextmanager
def database_url(kind: str) -> Iterator[str | None]:
    """A fresh database of `kind`; None where PostgreSQL does not answer."""
    if kind == "postgresql":
        with fresh_postgres("bench_drain") as url:
            yield url
        return
    with tempfile.TemporaryDirectory(prefix="bench-drain-") as folder:
        yield f"sqlite:///{Path(folder) / 'orders.db'}"


@contextmanager
def order_database(kind: str) -> Iterator[Engine | None]:
    """A fresh, migrated order database of `kind`; None where PostgreSQL does not answer."""
    with database_url(kind) as url:
        if url is None:
            yield None
            return
        with parts.migrated_engine(parts.ORDER_SERVICE, url) as engine:
            yield engine


def fill_queue(amqp_url: str, tickets: int) -> None:
    """`tickets` purchase requests of distinct customers, as the gate publishes them."""
    connection = open_connection(amqp_url, "bench: fill the sale's queue")
    try:
        channel = connection.channel()
        parts.declare_shop_topology(channel, limit=tickets)
        for number in range(tickets):
            request = Envelope.new(
                parts.PURCHASE_REQUEST,
                {
                    "ticket_id": str(uuid.uuid4()),
                    "sale_id": SALE_ID,
                    "customer": {"name": "Bench", "phone": f"+4915{number:09d}"},
                },
                correlation_id=SALE_ID,
                app_id=parts.ORDER_APP_ID,
            )
            channel.basic_publish(
                "", parts.FLASH_SALE_QUEUE, request.encoded_body(), request.properties()
            )
        wait_for_depth(connection, parts.FLASH_SALE_QUEUE, tickets)
    finally:
        close_quietly(connection)


def drain_once(kind: str, tickets: int, quota: int) -> float | None:
    """Tickets per second from a full queue; None where the database is not there."""
    with order_database(kind) as engine, fresh_vhost("flash-drain") as amqp_url:
        if engine is None:
            return None
        parts.open_sale(engine, SALE_ID, quota)
        fill_queue(amqp_url, tickets)
        worker = parts.service_consumer(
            parts.ORDER_SERVICE, parts.FLASH_SALE_QUEUE, engine, amqp_url
        )
        stop = threading.Event()
        thread = threading.Thread(target=worker.run, args=(stop,), name="ticket worker")
        started = time.perf_counter()
        thread.start()
        try:
            while worker.stats.handled < tickets:
                if time.perf_counter() - started > DRAIN_DEADLINE:
                    raise BenchFailure(
                        f"the ticket worker decided {worker.stats.handled} of {tickets} "
                        f"tickets in {DRAIN_DEADLINE:.0f} s ({worker.stats})"
                    )
                time.sleep(0.005)
            seconds = time.perf_counter() - started
        finally:
            stop.set()
            thread.join()
    return tickets / seconds


def measure_drains(tickets: int, rounds: int) -> list[Drain]:
    sales = [("quota = 10 % of the queue", max(1, tickets // 10)), ("every ticket wins", tickets)]
    drains = []
    for kind in ("sqlite", "postgresql"):
        for sale, quota in sales:
            rates = [drain_once(kind, tickets, quota) for _ in range(rounds)]
            if any(rate is None for rate in rates):
                print(f"  ticket worker on {kind}: skipped, PostgreSQL does not answer")
                break
            drain = Drain(kind, sale, tickets, [rate for rate in rates if rate is not None])
            print(f"  ticket worker, {kind}, {sale}: {drain.rate:,.0f} tickets/s", flush=True)
            drains.append(drain)
    return drains


def print_drains(drains: list[Drain]) -> None:
    if not drains:
        return
    rounds = len(drains[0].rates)
    header = ["ticket worker", "database", "tickets", "tickets/s", "goal", "verdict"]
    cells = [
        [
            drain.sale,
            drain.database,
            f"{drain.tickets:,}",
            f"{drain.rate:,.0f}",
            f">= {DRAIN_GOAL:,.0f}",
            "goal met" if drain.rate >= DRAIN_GOAL else "goal NOT met",
        ]
        for drain in drains
    ]
    print()
    print(f"The ticket worker from a full queue (median of {rounds} rounds):")
    print()
    print(table(header, cells, align="llrrrr"))
