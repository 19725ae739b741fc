"""How fast does the outbox relay publish, compared with plain pika? Run `python -m bench.outbox`.

It measures, in one run, four ways of getting N `order.created` events into the
`inventory.orders` quorum queue (through `shop.events`, routing key `order.created`), each
with the body and properties of a real event (`Envelope.properties()`, persistent):

  raw pika, no confirms       a BlockingChannel.basic_publish loop without publisher
                              confirms; the clock stops when the last publish returns. This
                              is the ceiling: nothing is read from a database, nothing is
                              confirmed, so a crash may lose messages.
  outbox relay (SQLite)       N rows are first written into a fresh, migrated SQLite outbox
                              (not timed); then the clock runs while `OutboxRelay.relay_once`
                              drains it batch by batch: read rows, publish, wait for the
                              confirms, mark the rows sent.
  outbox relay (PostgreSQL)   the same on a fresh PostgreSQL database (skipped when no server
                              answers; base URL from BENCH_POSTGRES_URL or TEST_POSTGRES_URL).
  per-message sync confirms   the naive safe way: BlockingChannel.confirm_delivery() and one
                              publish at a time, each waiting for its own confirm (N/5 messages,
                              so compare the msg/s column, not the seconds).

Every measurement gets its own fresh RabbitMQ vhost (made and deleted by shop/vhosts.py,
through the management API where it answers, else rabbitmqctl), so the queue starts
empty. After each one the script waits until the queue holds exactly the expected number
of messages, and after the relay runs it checks the outbox backlog is 0; if not it prints
a FAIL line and exits 1.

How to read the table: `msg/s` is messages divided by seconds; `vs raw` is that rate divided
by the raw rate (1.00 = as fast as unconfirmed pika). The goal is that the relay reaches at
least 0.5 of raw, on SQLite and on PostgreSQL. (Raw pika's clock stops when its last
publish returns, before the broker has stored anything; the relay's runs until the broker
confirmed the last batch, so it pays the quorum queue's writes too.) The script exits 0
whether or not the goal is met: it is a benchmark, not a test. Run it on a quiet machine
and more than once; the numbers move.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from pika.adapters.blocking_connection import BlockingChannel
from sqlalchemy import Engine

from bench import parts
from bench.support import (
    CANNOT_MEASURE,
    BenchFailure,
    amqp_url,
    create_vhost,
    delete_vhost,
    fresh_postgres,
    queue_depth,
    wait_for_depth,
)
from bench.table import table
from messaging.connection import open_connection
from messaging.database import make_engine, make_session_factory
from messaging.envelope import Envelope
from messaging.publisher import ConfirmingPublisher

QUEUE = "inventory.orders"
EVENT_TYPE = "order.created"
DEFAULT_BATCH_SIZE = 500  # OutboxRelay's default batch_size
INSERTS_PER_TRANSACTION = 5_000
QUEUE_WAIT_SECONDS = 60.0
GOAL = 0.5  # the relay, on either database, must reach this fraction of the raw rate


@dataclass
class Result:
    method: str
    messages: int
    seconds: float | None = None  # None when the measurement was skipped
    note: str = ""

    @property
    def rate(self) -> float | None:
        if self.seconds is None:
            return None
        return self.messages / self.seconds


# --- RabbitMQ ------------------------------------------------------------------------------


def prepare_queue(channel: BlockingChannel) -> None:
    """Declare the shop's topology and make sure the queue starts empty."""
    parts.declare_shop_topology(channel)
    channel.queue_purge(QUEUE)
    if queue_depth(channel, QUEUE) != 0:
        raise BenchFailure(f"{QUEUE} is not empty before the measurement")


# --- The events ----------------------------------------------------------------------------


def order_body() -> dict[str, object]:
    """A body shaped like order_service.handlers.order_created_event() makes."""
    return {
        "order_id": str(uuid.uuid4()),
        "customer": {"name": "Ada Lovelace", "phone": "+44 20 7946 0958"},
        "items": [
            {"sku": "TEA-EARL-GREY", "quantity": 2, "unit_price_cents": 450},
            {"sku": "MUG-ENAMEL-WHITE", "quantity": 1, "unit_price_cents": 1200},
        ],
        "subtotal_cents": 2100,
        "discount_cents": 0,
        "total_cents": 2100,
        "coupon_code": None,
    }


def new_event() -> Envelope:
    body = order_body()
    return Envelope.new(
        EVENT_TYPE, body, correlation_id=body["order_id"], app_id=parts.ORDER_APP_ID
    )


def body_size() -> int:
    return len(new_event().encoded_body())


# --- (a), (d) plain pika, without and with per-message confirms ----------------------------


def measure_pika(method: str, messages: int, confirm_each: bool) -> Result:
    """A basic_publish loop on a fresh vhost; the clock runs from the first publish until the
    last one returns. With `confirm_each`, each publish waits for its own confirm."""
    events = [new_event() for _ in range(messages)]
    ready = [(event.encoded_body(), event.properties()) for event in events]
    vhost = create_vhost("outbox-sync" if confirm_each else "outbox-raw")
    try:
        connection = open_connection(amqp_url(vhost), f"bench: {method}")
        channel = connection.channel()
        prepare_queue(channel)
        if confirm_each:
            channel.confirm_delivery()
        started = time.perf_counter()
        for body, properties in ready:
            channel.basic_publish(
                parts.EVENTS_EXCHANGE, EVENT_TYPE, body, properties, mandatory=confirm_each
            )
        seconds = time.perf_counter() - started
        landed = wait_for_depth(connection, QUEUE, messages, QUEUE_WAIT_SECONDS)
        connection.close()
    finally:
        delete_vhost(vhost)
    if confirm_each:
        return Result(method, messages, seconds, "fewer messages: compare msg/s")
    note = f"all {messages} in the queue {landed:.2f} s after the last publish returned"
    return Result(method, messages, seconds, note)


# --- (b), (c) the outbox relay --------------------------------------------------------------


def fill_outbox(engine: Engine, messages: int) -> None:
    """Write `messages` order.created rows the way the order service does (not timed)."""
    sessions = make_session_factory(engine)
    left = messages
    while left > 0:
        count = min(left, INSERTS_PER_TRANSACTION)
        with sessions() as session, session.begin():
            for _ in range(count):
                parts.add_to_order_outbox(session, EVENT_TYPE, order_body())
        left -= count


def drain(relay: parts.OutboxRelay, publisher: ConfirmingPublisher) -> int:
    """Call relay_once until it claims nothing; return how many rows it published."""
    published = 0
    while True:
        batch = relay.relay_once(publisher)
        if batch.claimed == 0:
            return published
        if batch.refused:
            raise BenchFailure(f"the broker refused {batch.refused} messages of a batch")
        published += batch.claimed


def measure_relay(method: str, database_url: str, messages: int, batch_size: int) -> Result:
    """Fill a fresh outbox, then time an OutboxRelay publishing all of it with confirms."""
    parts.migrate(parts.ORDER_SERVICE, database_url)
    engine = make_engine(database_url)
    vhost = create_vhost("outbox-relay")
    try:
        fill_outbox(engine, messages)
        url = amqp_url(vhost)
        relay = parts.order_relay(engine, url, batch_size)
        connection = open_connection(url, "bench-relay")
        channel = connection.channel()
        prepare_queue(channel)
        publisher = ConfirmingPublisher(connection, channel)
        started = time.perf_counter()
        published = drain(relay, publisher)
        seconds = time.perf_counter() - started
        wait_for_depth(connection, QUEUE, messages, QUEUE_WAIT_SECONDS)
        connection.close()
        backlog = parts.order_outbox_backlog(engine)
    finally:
        delete_vhost(vhost)
        engine.dispose()
    if published != messages:
        raise BenchFailure(f"{method}: the relay published {published} rows, expected {messages}")
    if backlog != 0:
        raise BenchFailure(f"{method}: {backlog} rows are still unsent in the outbox")
    return Result(method, messages, seconds, f"batch size {batch_size}")


def sqlite_url(folder: str) -> str:
    return f"sqlite:///{Path(folder) / 'orders.db'}"


def measure_relay_postgres(messages: int, batch_size: int) -> Result:
    method = "outbox relay (PostgreSQL)"
    with fresh_postgres("bench_outbox") as url:
        if url is None:
            return Result(method, messages, note="skipped: PostgreSQL is not reachable")
        return measure_relay(method, url, messages, batch_size)


# --- The report ---------------------------------------------------------------------------


def table_row(result: Result, raw_rate: float) -> list[str]:
    if result.seconds is None or result.rate is None:
        return [result.method, str(result.messages), "-", "-", "-"]
    return [
        result.method,
        str(result.messages),
        f"{result.seconds:.2f}",
        f"{result.rate:.0f}",
        f"{result.rate / raw_rate:.2f}x",
    ]


def print_table(results: list[Result]) -> None:
    raw_rate = results[0].rate
    header = ["method", "messages", "seconds", "msg/s", "vs raw"]
    print()
    print(table(header, [table_row(result, raw_rate) for result in results], align="lrrrr"))
    print()
    for result in results:
        if result.note:
            print(f"  {result.method}: {result.note}")


def print_goals(raw: Result, relays: list[Result]) -> None:
    print()
    for relay in relays:
        if relay.rate is None:
            print(f"goal: {relay.method} >= {GOAL:.2f} of raw; not measured ({relay.note})")
            continue
        ratio = relay.rate / raw.rate
        verdict = "goal met" if ratio >= GOAL else "goal NOT met"
        print(f"goal: {relay.method} >= {GOAL:.2f} of raw; it reached {ratio:.2f}: {verdict}")


# --- Main -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.outbox", description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000, help="N (default 20000)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help=f"the relay's batch size (default {DEFAULT_BATCH_SIZE}, as OutboxRelay)",
    )
    return parser.parse_args(argv)


def run(messages: int, batch_size: int) -> list[Result]:
    sync_messages = max(1, messages // 5)
    print(f"{messages} messages of {body_size()} body bytes each; relay batch size {batch_size}")

    print("(a) raw pika, no confirms ...", flush=True)
    results = [measure_pika("raw pika, no confirms", messages, confirm_each=False)]

    print("(b) outbox relay (SQLite) ...", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-outbox-") as folder:
        url = sqlite_url(folder)
        results.append(measure_relay("outbox relay (SQLite)", url, messages, batch_size))

    print("(c) outbox relay (PostgreSQL) ...", flush=True)
    results.append(measure_relay_postgres(messages, batch_size))

    print(f"(d) per-message sync confirms ({sync_messages} messages) ...", flush=True)
    results.append(measure_pika("per-message sync confirms", sync_messages, confirm_each=True))
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        results = run(args.messages, args.batch_size)
    except CANNOT_MEASURE as failure:
        print(f"FAIL: {failure}")
        return 1
    print_table(results)
    print_goals(raw=results[0], relays=results[1:3])
    return 0


if __name__ == "__main__":
    sys.exit(main())
