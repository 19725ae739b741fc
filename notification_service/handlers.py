"""The `notifications.sms` events: one SMS per `order.confirmed`, `order.rejected` and
`coupon.issued`, recorded PENDING with the event's message id; nothing is sent here.

The handler runs in the consumer's transaction with the inbox row, so it does no I/O:
the SMS row commits with the inbox row, and a redelivered event stops at the inbox and
records nothing. (The row is also unique per event, in the table: a second one could only
fail its message, never make a second SMS.) In a batch, its rows go in with one INSERT.
The consumer wakes the sender (sender.py) after each commit; it delivers the row and
announces `notification.sms_sent` (or `notification.sms_failed`) once it is settled.
"""

from __future__ import annotations

import uuid

from pydantic import BaseModel, model_validator
from sqlalchemy.orm import Session

from messaging import batch_writes
from messaging.envelope import Envelope, PoisonMessage
from messaging.outbox import utcnow
from messaging.routes import Route, Routes
from notification_service.models import PENDING, Sms
from notification_service.templates import TEMPLATES


class Customer(BaseModel):
    phone: str


class OrderOutcome(BaseModel):
    """What an order's SMS needs of `order.confirmed` / `order.rejected` (templates.py)."""

    order_id: str
    customer: Customer
    total_cents: int = 0
    reason: str | None = None


class CouponIssued(BaseModel):
    """What a reward coupon's SMS needs of `coupon.issued`."""

    order_id: str | None = None
    customer_phone: str
    code: str
    percent_off: int | None = None
    amount_off_cents: int | None = None

    @model_validator(mode="after")
    def says_what_it_takes_off(self) -> CouponIssued:
        if self.percent_off is None and self.amount_off_cents is None:
            raise ValueError("the SMS needs the amount or the percentage it takes off")
        return self


def record_sms(session: Session, envelope: Envelope) -> None:
    """Store the event's SMS as PENDING."""
    template = TEMPLATES.get(envelope.type)
    if template is None:
        raise PoisonMessage(f"no SMS for message type {envelope.type!r}")
    if envelope.type == "coupon.issued":
        issued = envelope.body_as(CouponIssued)
        order_id, phone = issued.order_id, issued.customer_phone
    else:
        outcome = envelope.body_as(OrderOutcome)
        order_id, phone = outcome.order_id, outcome.customer.phone
    try:
        text = template(envelope.body)
    except (KeyError, TypeError, ValueError) as error:
        raise PoisonMessage(f"{envelope.type} lacks what its SMS needs: {error}") from None
    now = utcnow()
    sms = {
        "id": str(uuid.uuid4()),
        "event_message_id": envelope.message_id,
        "event": envelope.type,
        "order_id": order_id,
        "phone": phone,
        "text": text,
        "status": PENDING,
        "created_at": now,
        "next_attempt_at": now,
        "attempts": 0,
        "last_error": None,
        "sent_at": None,
    }
    batch_writes.insert(session, SMS, sms)


SMS = Sms.__table__


ROUTES = Routes(
    Route("order.confirmed", OrderOutcome, record_sms),
    Route("order.rejected", OrderOutcome, record_sms),
    Route("coupon.issued", CouponIssued, record_sms),
)
