"""The `notifications.sms` events: one SMS per `order.confirmed`, `order.rejected` and
`coupon.issued`, recorded PENDING with the event's message id; nothing is sent here.

The handler runs in the consumer's transaction with the inbox row, so it does no I/O:
the SMS row is unique per event and commits with the inbox row, and a redelivered event
finds both and records nothing. The sender (sender.py) delivers the row after the commit
and announces `notification.sms_sent` (or `notification.sms_failed`) once it is settled.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from pydantic import BaseModel
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from messaging.envelope import Envelope, PoisonMessage
from messaging.outbox import Outbox, utcnow
from notification_service.models import PENDING, NotificationOutbox, Sms
from notification_service.templates import TEMPLATES

SERVICE = "notification_service"
outbox = Outbox(NotificationOutbox, app_id=SERVICE)


class Customer(BaseModel):
    phone: str


class OrderOutcome(BaseModel):
    order_id: str
    customer: Customer


class CouponIssued(BaseModel):
    order_id: str | None = None
    customer_phone: str
    code: str


def make_handler(
    on_recorded: Callable[[], None] | None = None,
) -> Callable[[Session, Envelope], None]:
    """The consumer's handler; `on_recorded` runs after a commit that stored an SMS (it
    wakes the sender, which would otherwise find the SMS at its next look)."""

    def handle(session: Session, envelope: Envelope) -> None:
        if record_sms(session, envelope) and on_recorded is not None:
            event.listen(session, "after_commit", lambda _session: on_recorded(), once=True)

    return handle


def record_sms(session: Session, envelope: Envelope) -> bool:
    """Store the event's SMS as PENDING; False if it was stored already."""
    template = TEMPLATES.get(envelope.type)
    if template is None:
        raise PoisonMessage(f"no SMS for message type {envelope.type!r}")
    if envelope.type == "coupon.issued":
        issued = envelope.body_as(CouponIssued)
        order_id, phone = issued.order_id, issued.customer_phone
    else:
        outcome = envelope.body_as(OrderOutcome)
        order_id, phone = outcome.order_id, outcome.customer.phone
    if session.scalar(select(Sms.id).where(Sms.event_message_id == envelope.message_id)):
        return False
    try:
        text = template(envelope.body)
    except (KeyError, TypeError, ValueError) as error:
        raise PoisonMessage(f"{envelope.type} lacks what its SMS needs: {error}") from None
    now = utcnow()
    session.add(
        Sms(
            id=str(uuid.uuid4()),
            event_message_id=envelope.message_id,
            event=envelope.type,
            order_id=order_id,
            phone=phone,
            text=text,
            status=PENDING,
            created_at=now,
            next_attempt_at=now,
            attempts=0,
        )
    )
    return True
