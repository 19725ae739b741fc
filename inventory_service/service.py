"""The inventory service as the shop sees it: its line of the catalog (shop/catalog.py).

One queue, `inventory.orders`: the orders to reserve, the catalog's products and stock
settings, and the flash sales whose units it holds. Its process runs that consumer and
its outbox relay, as threads.
"""

from __future__ import annotations

from pathlib import Path

from inventory_service import events, handlers
from inventory_service.models import Base, InventoryInbox, InventoryOutbox
from inventory_service.settings import InventorySettings
from messaging.service import Service, ServiceContext, Worker
from messaging.topology import WorkQueue

ORDERS_QUEUE = "inventory.orders"


def queues(_settings: InventorySettings) -> tuple[WorkQueue, ...]:
    return (WorkQueue(ORDERS_QUEUE, bindings=tuple(handlers.ROUTES.models)),)


def workers(context: ServiceContext) -> list[Worker]:
    return [
        context.consumer(ORDERS_QUEUE, handlers.ROUTES, name="inventory consumer"),
        context.relay(name="inventory relay"),
    ]


SERVICE = Service(
    name="inventory",
    package="inventory_service",
    settings=InventorySettings,
    metadata=Base.metadata,
    outbox=InventoryOutbox,
    inbox=InventoryInbox,
    queues=queues,
    workers=workers,
    reads={ORDERS_QUEUE: handlers.ROUTES.models},
    publishes=events.PUBLISHED,
    migrations=Path(__file__).parent / "migrations",
)
