"""The notification process: the `notifications.sms` consumer, the SMS sender and the
outbox relay, as threads. The consumer only stores each SMS and wakes the sender after
its commit; the sender talks to the gateway outside any transaction (sender.py)."""

from __future__ import annotations

import threading

from messaging.consumer import ConsumerRunner
from messaging.database import make_engine
from messaging.relay import OutboxRelay
from messaging.service import run_together
from messaging.settings import Settings
from notification_service.gateway import gateway_for
from notification_service.handlers import make_handler
from notification_service.models import NotificationInbox, NotificationOutbox
from notification_service.sender import SmsSender


def run(settings: Settings, stop: threading.Event) -> None:
    engine = make_engine(settings.notification_database_url)
    common = {
        "amqp_url": settings.amqp_url,
        "flash_sale_queue_limit": settings.flash_sale_queue_limit,
    }
    sender = SmsSender(engine=engine, gateway=gateway_for(settings.sms_gateway_url))
    run_together(
        [
            ConsumerRunner(
                queue="notifications.sms",
                handler=make_handler(on_recorded=sender.wake),
                engine=engine,
                inbox_model=NotificationInbox,
                inbox_retention_days=settings.inbox_retention_days,
                name="notification consumer",
                **common,
            ),
            sender,
            OutboxRelay(
                engine=engine,
                model=NotificationOutbox,
                name="notification relay",
                outbox_retention_days=settings.outbox_retention_days,
                **common,
            ),
        ],
        stop,
    )
