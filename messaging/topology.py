"""Exchanges, queues and bindings: how a topology is described and declared.

messaging/ knows no service: each service says which work queues it owns (its catalog
entry), and the composition root (shop/catalog.py) puts them together into the shop's one
`Topology`. The admin declares all of it (`shop up`, `shop topology`); each process, when
it connects, declares again only its service's part (`owned_by`), idempotently: its work
queues and their bindings. The exchanges and its dead-letter queues it only checks
(a passive declare, which needs no permission), and makes only those that are missing.

That split is what least privilege on the broker needs (shop/broker_users.py), as
RabbitMQ 3.10 checks it: declaring an exchange takes `configure` on it even when it
exists (and `configure` would let a service delete it); creating a queue with
`x-dead-letter-exchange` takes `write` on that exchange too (which would let a service
publish into every dead-letter queue), declaring it again once it exists only `configure`
on the queue; binding takes `write` on the queue and `read` on the exchange.

Two exchanges carry everything: `shop.events` (topic; every domain event, routing key =
event name) and `shop.dead-letter` (direct). Every work queue is a durable quorum queue
that dead-letters into `<name>.dead` through `shop.dead-letter`, and has a delivery limit,
so that a message that keeps failing stops bouncing and waits in its dead-letter queue for
`shop dlq replay`. A bounded queue (`max_length`) refuses publishes beyond its limit
(`x-overflow: reject-publish`), which its publisher learns through a nack.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

EVENTS_EXCHANGE = "shop.events"
DEAD_LETTER_EXCHANGE = "shop.dead-letter"
DELIVERY_LIMIT = 10
NOT_FOUND = 404  # the AMQP reply code of a passive declare of something missing


@dataclass(frozen=True)
class WorkQueue:
    name: str
    bindings: tuple[str, ...] = ()  # routing keys on shop.events; none: the default exchange
    max_length: int | None = None  # bounded: x-max-length with reject-publish
    owner: str = ""  # the service that consumes it (filled in by the catalog)

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.name}.dead"

    def arguments(self) -> dict[str, object]:
        arguments: dict[str, object] = {
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
            "x-dead-letter-routing-key": self.name,
            "x-delivery-limit": DELIVERY_LIMIT,
        }
        if self.max_length is not None:
            arguments["x-max-length"] = self.max_length
            arguments["x-overflow"] = "reject-publish"
        return arguments


@dataclass(frozen=True)
class Topology:
    """The work queues of the whole shop, and the events nobody needs to hear.

    `broadcasts` are events (such as `flash_sale.sold_out`) meant only for the web
    processes' exclusive queues: nobody listening is normal, so they are published without
    `mandatory`. Every other event must reach a durable queue, or it is an error.
    """

    queues: tuple[WorkQueue, ...]
    broadcasts: frozenset[str] = field(default_factory=frozenset)
    # One service's part (`owned_by`): the exchanges and dead-letter queues are the admin's,
    # checked when its process connects and made only where they are missing.
    part: bool = False

    def __post_init__(self) -> None:
        names = [queue.name for queue in self.queues]
        duplicated = sorted({name for name in names if names.count(name) > 1})
        if duplicated:
            raise ValueError(f"two services declare the queue(s) {', '.join(duplicated)}")

    def queue(self, name: str) -> WorkQueue:
        for queue in self.queues:
            if queue.name == name:
                return queue
        known = ", ".join(sorted(queue.name for queue in self.queues))
        raise KeyError(f"{name!r} is not a work queue; the work queues are: {known}")

    def is_broadcast(self, event_type: str) -> bool:
        return event_type in self.broadcasts

    def queues_of(self, owner: str) -> tuple[WorkQueue, ...]:
        return tuple(queue for queue in self.queues if queue.owner == owner)

    def owned_by(self, owner: str) -> Topology:
        """What a process of `owner` declares when it connects: its own queues."""
        return Topology(self.queues_of(owner), self.broadcasts, part=True)

    def declare(self, channel: BlockingChannel) -> None:
        """The whole topology (as the admin): every exchange, queue and binding. A part
        (`owned_by`): its queues and bindings, the exchanges and dead-letter queues only
        where they are missing. Idempotent: safe to call on every connect."""
        if not self.part:
            declare_exchanges(channel)
            declare_queues(channel, self.queues)
            return
        ensure_exchanges(channel)
        for queue in self.queues:
            if not exists(channel, queue.dead_letter_queue):
                declare_dead_letter_queue(channel, queue)
            declare_work_queue(channel, queue)


def declare_exchanges(channel: BlockingChannel) -> None:
    channel.exchange_declare(EVENTS_EXCHANGE, exchange_type="topic", durable=True)
    channel.exchange_declare(DEAD_LETTER_EXCHANGE, exchange_type="direct", durable=True)


def ensure_exchanges(channel: BlockingChannel) -> None:
    """The shop's exchanges, declared only if one is missing (a check needs no permission)."""
    if not (
        exists(channel, EVENTS_EXCHANGE, "exchange")
        and exists(channel, DEAD_LETTER_EXCHANGE, "exchange")
    ):
        declare_exchanges(channel)


def exists(channel: BlockingChannel, name: str, kind: str = "queue") -> bool:
    """Whether the queue (or exchange) exists: a passive declare on a channel of its own,
    which the broker closes when it does not (404)."""
    probe = channel.connection.channel()
    try:
        if kind == "exchange":
            probe.exchange_declare(name, passive=True)
        else:
            probe.queue_declare(name, passive=True)
    except pika.exceptions.ChannelClosedByBroker as closed:
        if closed.reply_code == NOT_FOUND:
            return False
        raise
    probe.close()
    return True


def declare_queues(channel: BlockingChannel, queues: Iterable[WorkQueue]) -> None:
    """Each queue, its dead-letter queue and its bindings (the exchanges must exist)."""
    for queue in queues:
        declare_dead_letter_queue(channel, queue)
        declare_work_queue(channel, queue)


def declare_dead_letter_queue(channel: BlockingChannel, queue: WorkQueue) -> None:
    channel.queue_declare(
        queue.dead_letter_queue, durable=True, arguments={"x-queue-type": "quorum"}
    )
    channel.queue_bind(queue.dead_letter_queue, DEAD_LETTER_EXCHANGE, queue.name)


def declare_work_queue(channel: BlockingChannel, queue: WorkQueue) -> None:
    channel.queue_declare(queue.name, durable=True, arguments=queue.arguments())
    for routing_key in queue.bindings:
        channel.queue_bind(queue.name, EVENTS_EXCHANGE, routing_key)
