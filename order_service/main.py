"""The order service's background processes (the web app runs under gunicorn: app.py)."""

from __future__ import annotations

import threading

from messaging.database import make_engine
from messaging.relay import OutboxRelay
from messaging.settings import Settings
from order_service.models import OrderOutbox


def run_relay(settings: Settings, stop: threading.Event) -> None:
    """Publish the order service's outbox to `shop.events` until stopped."""
    relay = OutboxRelay(
        engine=make_engine(settings.order_database_url),
        model=OrderOutbox,
        amqp_url=settings.amqp_url,
        flash_sale_queue_limit=settings.flash_sale_queue_limit,
        name="order_service relay",
    )
    relay.run(stop)
