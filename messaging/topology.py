"""The whole AMQP topology of CONTRACT.md, as one table, declared idempotently by every process.

Every work queue is a durable quorum queue that dead-letters into `<name>.dead` through
the direct exchange `shop.dead-letter`, and has a delivery limit so that a message that
keeps failing stops bouncing and waits in its dead-letter queue for `shop dlq replay`.
"""

from __future__ import annotations

from dataclasses import dataclass

from pika.adapters.blocking_connection import BlockingChannel

EVENTS_EXCHANGE = "shop.events"
DEAD_LETTER_EXCHANGE = "shop.dead-letter"
DELIVERY_LIMIT = 10
FLASH_SALE_QUEUE = "flash-sale.requests"
COUPONS_RPC_QUEUE = "coupons.rpc"


@dataclass(frozen=True)
class WorkQueue:
    name: str
    owner: str
    bindings: tuple[str, ...] = ()
    bounded: bool = False  # x-max-length with reject-publish (the flash-sale gate)

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.name}.dead"


WORK_QUEUES: tuple[WorkQueue, ...] = (
    WorkQueue(
        "inventory.orders",
        "inventory",
        (
            "order.created",
            "product.created",
            "product.stock_set",
            "flash_sale.created",
            "flash_sale.ended",
        ),
    ),
    WorkQueue(
        "orders.inventory",
        "order",
        ("inventory.reserved", "inventory.rejected", "inventory.allocated"),
    ),
    WorkQueue(
        "orders.read-model", "order", ("inventory.stock_changed", "coupon.#", "notification.#")
    ),
    WorkQueue("coupons.orders", "coupon", ("order.created", "order.confirmed", "order.rejected")),
    WorkQueue(
        "notifications.sms", "notification", ("order.confirmed", "order.rejected", "coupon.issued")
    ),
    WorkQueue(COUPONS_RPC_QUEUE, "coupon"),
    WorkQueue(FLASH_SALE_QUEUE, "order", bounded=True),
)

QUEUES_BY_NAME = {queue.name: queue for queue in WORK_QUEUES}

# Web processes bind an exclusive queue to every flash-sale event, as a hint for their
# in-memory caches. `flash_sale.sold_out` is a broadcast only those queues hear: nobody
# listening is normal, so the relay publishes it without `mandatory` (every other event,
# `flash_sale.created` and `flash_sale.ended` among them, must reach a durable queue).
BROADCAST_BINDING = "flash_sale.#"
BROADCAST_EVENTS = frozenset({"flash_sale.sold_out"})


def is_broadcast(event_type: str) -> bool:
    return event_type in BROADCAST_EVENTS


def queue_arguments(queue: WorkQueue, flash_sale_queue_limit: int) -> dict[str, object]:
    arguments: dict[str, object] = {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
        "x-dead-letter-routing-key": queue.name,
        "x-delivery-limit": DELIVERY_LIMIT,
    }
    if queue.bounded:
        arguments["x-max-length"] = flash_sale_queue_limit
        arguments["x-overflow"] = "reject-publish"
    return arguments


def declare_topology(channel: BlockingChannel, flash_sale_queue_limit: int) -> None:
    """Declare every exchange, queue and binding; safe to call from every process."""
    channel.exchange_declare(EVENTS_EXCHANGE, exchange_type="topic", durable=True)
    channel.exchange_declare(DEAD_LETTER_EXCHANGE, exchange_type="direct", durable=True)
    for queue in WORK_QUEUES:
        channel.queue_declare(
            queue.dead_letter_queue, durable=True, arguments={"x-queue-type": "quorum"}
        )
        channel.queue_bind(queue.dead_letter_queue, DEAD_LETTER_EXCHANGE, queue.name)
        channel.queue_declare(
            queue.name, durable=True, arguments=queue_arguments(queue, flash_sale_queue_limit)
        )
        for routing_key in queue.bindings:
            channel.queue_bind(queue.name, EVENTS_EXCHANGE, routing_key)
