"""The order service's background process, as threads: its outbox relay, the saga consumer
on `orders.inventory` (the inventory's answers to orders and to flash-sale allocations), the
flash-sale worker on `flash-sale.requests`, the read model on `orders.read-model`, and the
closer that ends flash sales whose time is up. (The web app runs under gunicorn: app.py.)"""

from __future__ import annotations

import threading

from messaging.consumer import ConsumerRunner, route_by_type
from messaging.database import make_engine
from messaging.relay import OutboxRelay
from messaging.service import Worker, run_together
from messaging.settings import Settings
from messaging.topology import FLASH_SALE_QUEUE
from order_service import flash_sale, read_model, saga, sale_lifecycle
from order_service.models import OrderInbox, OrderOutbox

FLASH_SALE_WORKER = "flash-sale worker"


def run(settings: Settings, stop: threading.Event) -> None:
    run_together(workers(settings), stop)


def workers(settings: Settings) -> list[Worker]:
    """Every thread of the order process (tests start some of them on their own)."""
    engine = make_engine(settings.order_database_url)
    common = {
        "amqp_url": settings.amqp_url,
        "flash_sale_queue_limit": settings.flash_sale_queue_limit,
    }
    return [
        OutboxRelay(
            engine=engine,
            model=OrderOutbox,
            name="order relay",
            outbox_retention_days=settings.outbox_retention_days,
            **common,
        ),
        ConsumerRunner(
            queue="orders.inventory",
            handler=route_by_type({**saga.HANDLERS, **sale_lifecycle.HANDLERS}),
            engine=engine,
            inbox_model=OrderInbox,
            inbox_retention_days=settings.inbox_retention_days,
            name="order saga",
            **common,
        ),
        ConsumerRunner(
            queue=FLASH_SALE_QUEUE,
            handler=flash_sale.decide_ticket,
            engine=engine,
            inbox_model=OrderInbox,
            inbox_retention_days=settings.inbox_retention_days,
            name=FLASH_SALE_WORKER,
            prefetch=100,
            **common,
        ),
        ConsumerRunner(
            queue="orders.read-model",
            handler=read_model.handle,
            engine=engine,
            inbox_model=OrderInbox,
            inbox_retention_days=settings.inbox_retention_days,
            name="order read model",
            **common,
        ),
        sale_lifecycle.SaleCloser(engine),
    ]
