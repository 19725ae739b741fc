"""The notification service as the shop sees it: its line of the catalog (shop/catalog.py).

One queue, `notifications.sms`: order outcomes and reward coupons, each answered by one
SMS. Its process runs that consumer (which only stores each SMS and wakes the sender after
its commit), the SMS sender (which talks to the gateway outside any transaction:
sender.py) and its outbox relay, as threads. It also tells the dashboard its SMS backlog.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from messaging.service import Metric, Probe, Service, ServiceContext, Worker
from messaging.topology import WorkQueue
from notification_service import events, handlers
from notification_service.gateway import gateway_for
from notification_service.models import (
    FAILED,
    PENDING,
    Base,
    NotificationInbox,
    NotificationOutbox,
    Sms,
)
from notification_service.sender import SmsSender
from notification_service.settings import NotificationSettings

SMS_QUEUE = "notifications.sms"


def queues(_settings: NotificationSettings) -> tuple[WorkQueue, ...]:
    return (WorkQueue(SMS_QUEUE, bindings=tuple(handlers.ROUTES.models)),)


def workers(context: ServiceContext) -> list[Worker]:
    sender = SmsSender(engine=context.engine, gateway=gateway_for(context.settings.sms_gateway_url))
    return [
        context.consumer(
            SMS_QUEUE, handlers.ROUTES, name="notification consumer", after_commit=sender.wake
        ),
        sender,
        context.relay(name="notification relay"),
    ]


def sms_backlog(session: Session) -> dict[str, int]:
    """SMS the gateway has not taken yet (retries too), and those refused for good."""
    counts = dict(
        session.execute(
            select(Sms.status, func.count())
            .where(Sms.status.in_((PENDING, FAILED)))
            .group_by(Sms.status)
        ).all()
    )
    return {"pending": counts.get(PENDING, 0), "failed": counts.get(FAILED, 0)}


def sms_metrics(backlog: dict[str, int]) -> list[Metric]:
    return [
        Metric(
            "shop_sms_backlog",
            "gauge",
            "SMS not delivered: pending (waiting for the gateway, retries included) or failed.",
            [({"status": status}, n) for status, n in backlog.items()],
        )
    ]


SERVICE = Service(
    name="notification",
    package="notification_service",
    settings=NotificationSettings,
    metadata=Base.metadata,
    outbox=NotificationOutbox,
    inbox=NotificationInbox,
    queues=queues,
    workers=workers,
    reads={SMS_QUEUE: handlers.ROUTES.models},
    publishes=events.PUBLISHED,
    probes=(Probe("sms", sms_backlog, sms_metrics),),
    migrations=Path(__file__).parent / "migrations",
)
