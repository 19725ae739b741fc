"""The order service's background process: its outbox relay, the saga consumer on
`orders.inventory`, the flash-sale worker on `flash-sale.requests` and the read model
on `orders.read-model`, as threads. (The web app
runs under gunicorn: app.py.)"""

from __future__ import annotations

import threading

from messaging.consumer import ConsumerRunner, route_by_type
from messaging.database import make_engine
from messaging.relay import OutboxRelay
from messaging.service import run_together
from messaging.settings import Settings
from messaging.topology import FLASH_SALE_QUEUE
from order_service import flash_sale, read_model, saga
from order_service.models import OrderInbox, OrderOutbox


def run(settings: Settings, stop: threading.Event) -> None:
    engine = make_engine(settings.order_database_url)
    common = {
        "amqp_url": settings.amqp_url,
        "flash_sale_queue_limit": settings.flash_sale_queue_limit,
    }
    run_together(
        [
            OutboxRelay(
                engine=engine,
                model=OrderOutbox,
                name="order relay",
                outbox_retention_days=settings.outbox_retention_days,
                **common,
            ),
            ConsumerRunner(
                queue="orders.inventory",
                handler=route_by_type(saga.HANDLERS),
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
                name="flash-sale worker",
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
        ],
        stop,
    )
