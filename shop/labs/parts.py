"""The one door from the labs to the shop's own mechanisms: messaging/ and the services.

Labs 10-17 build their experiments from the shop's real parts (the outbox and its relay,
the consumer runner and its inbox, dead-letter replay, the confirming publisher, the
bounded queue, the services themselves) and reach them only through this module, so when
a constructor changes, this is the one file that follows it. A lab keeps its own tables
in a small SQLite database in its scratch directory.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pika
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from messaging.connection import CONNECTION_ERRORS, close_quietly, open_connection
from messaging.consumer import ConsumerRunner
from messaging.database import make_engine, make_session_factory
from messaging.dead_letters import replay_dead_letters
from messaging.delivery import Delivery
from messaging.envelope import Envelope, PoisonMessage
from messaging.inbox import InboxColumns
from messaging.outbox import Outbox, OutboxColumns
from messaging.publisher import ConfirmingPublisher, Outcome, Outgoing, PublishFailed
from messaging.queue_worker import QueueWorker
from messaging.relay import OutboxRelay
from messaging.topology import (
    DELIVERY_LIMIT,
    EVENTS_EXCHANGE,
    WorkQueue,
)
from shop.catalog import CATALOG
from shop.in_process import Running, ServiceThread

__all__ = [
    "CONNECTION_ERRORS",
    "DELIVERY_LIMIT",
    "EVENTS_EXCHANGE",
    "SERVICE_QUEUES",
    "SHOP_QUEUE",
    "ConfirmingPublisher",
    "Envelope",
    "InboxColumns",
    "Outbox",
    "OutboxColumns",
    "Outcome",
    "Outgoing",
    "PoisonMessage",
    "PublishFailed",
    "Running",
]

SHOP_QUEUE = "inventory.orders"  # a work queue of the shop, declared as the shop declares it
SHOP_TOPOLOGY = CATALOG.topology()  # the shop's exchanges and queues (shop/catalog.py)
SERVICE_QUEUES = tuple(queue.name for queue in SHOP_TOPOLOGY.queues)  # each its service's


def database(workdir: Path, metadata: Any) -> tuple[Engine, sessionmaker[Session]]:
    """The lab's SQLite database, with the shop's engine settings and the lab's tables."""
    engine = make_engine(f"sqlite:///{workdir / 'lab.db'}")
    metadata.create_all(engine)
    return engine, make_session_factory(engine)


def declare_shop_topology(amqp_url: str) -> None:
    """Every exchange and queue of the shop (CONTRACT.md), in the lab's vhost."""
    connection = open_connection(amqp_url, "lab: topology")
    try:
        SHOP_TOPOLOGY.declare(connection.channel())
    finally:
        close_quietly(connection)


def declare_work_queue(channel: Any, name: str, *, delivery_limit: bool = True) -> None:
    """A queue shaped like the shop's work queues (quorum, dead-lettering into NAME.dead
    through `shop.dead-letter`), with or without the delivery limit."""
    SHOP_TOPOLOGY.declare(channel)  # the dead-letter exchange among it
    arguments = WorkQueue(name).arguments()
    if not delivery_limit:
        del arguments["x-delivery-limit"]
    channel.queue_declare(f"{name}.dead", durable=True, arguments={"x-queue-type": "quorum"})
    channel.queue_bind(f"{name}.dead", arguments["x-dead-letter-exchange"], name)
    channel.queue_declare(name, durable=True, arguments=arguments)


def declare_bounded_queue(channel: Any, name: str, limit: int | None) -> None:
    """A queue shaped like `flash-sale.requests`: at most `limit` messages, and a publish
    beyond that is refused (`reject-publish`: the publisher's confirm is a nack); with
    `limit` None, the same queue without the bound."""
    SHOP_TOPOLOGY.declare(channel)  # the dead-letter exchange among it
    channel.queue_declare(
        name, durable=True, arguments=WorkQueue(name, max_length=limit).arguments()
    )


def make_relay(engine: Engine, model: type[OutboxColumns], amqp_url: str) -> OutboxRelay:
    return OutboxRelay(
        engine=engine,
        model=model,
        amqp_url=amqp_url,
        topology=SHOP_TOPOLOGY,  # declared on every connect, as the shop's relays do
        name="lab relay",
    )


def make_consumer(
    queue: str,
    handler: Callable[[Session, Envelope], None],
    engine: Engine,
    inbox_model: type[InboxColumns],
    amqp_url: str,
    **options: Any,
) -> ConsumerRunner:
    """The shop's consumer runner: inbox and handler in one transaction, ack after commit;
    options: `prefetch`, `max_retry_delay`, `name`."""
    return ConsumerRunner(
        queue=queue,
        handler=handler,
        engine=engine,
        inbox_model=inbox_model,
        amqp_url=amqp_url,
        topology=SHOP_TOPOLOGY,  # declared on every connect, as the shop's consumers do
        **{"name": f"lab consumer {queue}", **options},
    )


def make_worker(
    queue: str, amqp_url: str, on_message: Callable[[bytes], None], name: str, prefetch: int = 20
) -> QueueWorker:
    """The shop's reconnecting worker loop (its prefetch, its reconnects), calling
    `on_message(body)` and acking after it, one message at a time; for work that keeps its
    state elsewhere."""
    return _AckAfter(
        on_message=on_message,
        queue=queue,
        engine=make_engine("sqlite://"),  # the worker base wants one; this work needs none
        amqp_url=amqp_url,
        topology=SHOP_TOPOLOGY,
        name=name,
        prefetch=prefetch,
    )


class _AckAfter(QueueWorker):
    def __init__(self, *, on_message: Callable[[bytes], None], **options: Any) -> None:
        super().__init__(**options)
        self.on_message = on_message

    def handle(self, delivery: Delivery) -> None:
        self.on_message(delivery.body)
        delivery.ack()


def replay(amqp_url: str, queue: str) -> int:
    """`shop dlq replay QUEUE`: move its dead letters back; how many moved."""
    connection = open_connection(amqp_url, "lab: replay")
    try:
        return replay_dead_letters(connection, connection.channel(), SHOP_TOPOLOGY, queue)
    finally:
        close_quietly(connection)


def event_to_queue(queue: str, envelope: Envelope) -> Outgoing:
    return Outgoing.to_queue(queue, envelope)


def confirming_publisher(
    connection: pika.BlockingConnection, confirm_timeout: float = 10.0
) -> ConfirmingPublisher:
    return ConfirmingPublisher(connection, connection.channel(), confirm_timeout)


# The whole shop, for the saga lab: the four services as threads, the web app in process.

_migrations = threading.Lock()


@dataclass
class Shop:
    settings: Any
    client: Any  # a Flask test client of the order service's web app
    app: Any
    services: list[Running]

    def close(self) -> None:
        for service in self.services:
            service.close()
        self.app.extensions["shop"].flash_sales.close()


def start_shop(workdir: Path, amqp_url: str, admin_token: str) -> Shop:
    """Every service on its own migrated SQLite database in `workdir`, running as threads,
    and a test client of the web app, all on the lab's vhost."""
    from messaging.migrations import upgrade
    from shop.web import create_app

    settings = CATALOG.default_settings().with_changes(amqp_url=amqp_url, admin_token=admin_token)
    with _migrations:  # alembic keeps global state: one migration at a time per process
        for service in CATALOG:
            url = f"sqlite:///{workdir / f'{service.package}.db'}"
            upgrade(service, url)
            settings = settings.with_service(service.name, database_url=url)
    declare_shop_topology(amqp_url)
    services = [Running(ServiceThread(name, settings)) for name in CATALOG.names]
    app = create_app(settings)
    return Shop(settings, app.test_client(), app, services)


def consumers_of(amqp_url: str, queue: str) -> int:
    connection = open_connection(amqp_url, "lab: consumers")
    try:
        return connection.channel().queue_declare(queue, passive=True).method.consumer_count
    finally:
        close_quietly(connection)


def unbind_event(amqp_url: str, queue: str, event_type: str) -> None:
    """Take one binding of the shop's topology away: `queue` no longer hears `event_type`."""
    connection = open_connection(amqp_url, "lab: unbind")
    try:
        connection.channel().queue_unbind(queue, EVENTS_EXCHANGE, event_type)
    finally:
        close_quietly(connection)
