"""The order service as the shop sees it: its line of the catalog (shop/catalog.py).

Three queues: `orders.inventory` (the inventory's answers: the saga), `orders.read-model`
(stock figures and every service's events about an order: the timeline) and the bounded
`flash-sale.requests` (admitted purchases: the ticket worker). Its process runs those
consumers, its outbox relay and the closer of flash sales whose time is up, as threads;
its web app (web/app.py) runs under gunicorn. It also tells the dashboard its flash-sale
numbers.
"""

from __future__ import annotations

from pathlib import Path

from messaging.service import Metric, Probe, Service, ServiceContext, Worker
from messaging.topology import WorkQueue
from order_service import coupon_client, events, sale_lifecycle
from order_service.consumers import flash_worker, read_model, saga
from order_service.models import Base, OrderInbox, OrderOutbox
from order_service.settings import OrderSettings
from order_service.use_cases import flash_sales

INVENTORY_ANSWERS = "orders.inventory"
READ_MODEL = "orders.read-model"
FLASH_SALE_REQUESTS = "flash-sale.requests"  # the default exchange; bounded
FLASH_SALE_WORKER = "flash-sale worker"


def queues(settings: OrderSettings) -> tuple[WorkQueue, ...]:
    return (
        WorkQueue(INVENTORY_ANSWERS, bindings=tuple(saga.ROUTES.models)),
        WorkQueue(READ_MODEL, bindings=("inventory.stock_changed", "coupon.#", "notification.#")),
        WorkQueue(FLASH_SALE_REQUESTS, max_length=settings.flash_sale_queue_limit),
    )


def workers(context: ServiceContext) -> list[Worker]:
    """Every thread of the order process (tests start some of them on their own)."""
    return [
        context.relay(name="order relay"),
        context.consumer(INVENTORY_ANSWERS, saga.ROUTES, name="order saga"),
        context.consumer(
            FLASH_SALE_REQUESTS, flash_worker.ROUTES, name=FLASH_SALE_WORKER, prefetch=100
        ),
        context.consumer(READ_MODEL, read_model.ROUTES, name="order read model"),
        sale_lifecycle.SaleCloser(context.engine),
    ]


def flash_sale_metrics(numbers: dict) -> list[Metric]:
    return [
        Metric(
            "shop_flash_sale_requests_total",
            "counter",
            "Purchase requests at the flash-sale gate: accepted, or shed and why.",
            [({"outcome": "accepted"}, numbers["accepted"])]
            + [({"outcome": reason}, n) for reason, n in sorted(numbers["shed"].items())],
        ),
        Metric(
            "shop_flash_sale_tickets_decided_total",
            "counter",
            "Admitted tickets the flash-sale worker decided, by result.",
            [({"result": result}, n) for result, n in numbers["decided"].items()],
        ),
    ]


SERVICE = Service(
    name="order",
    package="order_service",
    settings=OrderSettings,
    metadata=Base.metadata,
    outbox=OrderOutbox,
    inbox=OrderInbox,
    queues=queues,
    workers=workers,
    reads={
        INVENTORY_ANSWERS: saga.ROUTES.models,
        READ_MODEL: read_model.ROUTES.models,
        FLASH_SALE_REQUESTS: flash_worker.ROUTES.models,
    },
    publishes=events.PUBLISHED,
    broadcasts=events.BROADCASTS,
    # The web app asks the coupon service (RPC) and admits flash-sale purchases into its
    # own bounded queue, both through the default exchange; each web process hears the
    # flash-sale news on a server-named queue of its own.
    sends_to=(coupon_client.RPC_QUEUE, FLASH_SALE_REQUESTS),
    listens_for=(events.BROADCAST_BINDING,),
    probes=(Probe("flash_sale", flash_sales.numbers, flash_sale_metrics),),
    migrations=Path(__file__).parent / "migrations",
)
