"""The `notifications.sms` events: one SMS per `order.confirmed`, `order.rejected` and
`coupon.issued`, recorded with the event's message id and announced as `notification.sms_sent`.

The SMS row is unique per event and commits with the inbox row, so a redelivered event
finds both and sends nothing. With an HTTP gateway the one gap left is a crash after the
gateway accepted the SMS and before the commit; the SMS id travels as Idempotency-Key so
that the gateway can close it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from messaging.envelope import Envelope, PoisonMessage
from messaging.outbox import Outbox
from notification_service.gateway import SmsGateway
from notification_service.models import NotificationOutbox, Sms
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


def make_handler(gateway: SmsGateway) -> Callable[[Session, Envelope], None]:
    def handle(session: Session, envelope: Envelope) -> None:
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
            return
        try:
            text = template(envelope.body)
        except (KeyError, TypeError, ValueError) as error:
            raise PoisonMessage(f"{envelope.type} lacks what its SMS needs: {error}") from None
        sms = Sms(
            id=str(uuid.uuid4()),
            event_message_id=envelope.message_id,
            event=envelope.type,
            order_id=order_id,
            phone=phone,
            text=text,
        )
        session.add(sms)
        session.flush()  # claim the event's SMS before talking to the gateway
        gateway.send(sms.id, phone, text)
        outbox.add(
            session,
            "notification.sms_sent",
            {"order_id": order_id, "event": envelope.type, "phone": phone, "text": text},
            correlation_id=order_id or sms.id,
        )

    return handle
