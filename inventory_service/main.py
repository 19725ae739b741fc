"""The inventory process: its consumer on `inventory.orders` and its outbox relay."""

from __future__ import annotations

import threading

from inventory_service.handlers import HANDLERS
from inventory_service.models import InventoryInbox, InventoryOutbox
from messaging.consumer import ConsumerRunner, route_by_type
from messaging.database import make_engine
from messaging.relay import OutboxRelay
from messaging.service import run_together
from messaging.settings import Settings

QUEUE = "inventory.orders"


def run(settings: Settings, stop: threading.Event) -> None:
    engine = make_engine(settings.inventory_database_url)
    common = {
        "amqp_url": settings.amqp_url,
        "flash_sale_queue_limit": settings.flash_sale_queue_limit,
    }
    run_together(
        [
            ConsumerRunner(
                queue=QUEUE,
                handler=route_by_type(HANDLERS),
                engine=engine,
                inbox_model=InventoryInbox,
                inbox_retention_days=settings.inbox_retention_days,
                name="inventory consumer",
                **common,
            ),
            OutboxRelay(
                engine=engine,
                model=InventoryOutbox,
                name="inventory relay",
                outbox_retention_days=settings.outbox_retention_days,
                **common,
            ),
        ],
        stop,
    )
