"""The choreographed saga, order side: the inventory's answer settles a PENDING order.

`inventory.reserved` confirms it, `inventory.rejected` rejects it with the reason; either
way the order service announces the outcome (`order.confirmed` / `order.rejected`) through
its outbox, and the coupon and notification services take it from there. An order that is
no longer PENDING ignores a second answer; an unknown order is logged, never a crash loop.
"""

from __future__ import annotations

import logging

from pydantic import BaseModel
from sqlalchemy.orm import Session

from messaging.envelope import Envelope
from messaging.outbox import utcnow
from order_service.handlers import SERVICE, outbox
from order_service.models import Order, TimelineEntry

log = logging.getLogger(__name__)


class InventoryReserved(BaseModel):
    order_id: str


class InventoryRejected(BaseModel):
    order_id: str
    reason: str


def on_inventory_reserved(session: Session, envelope: Envelope) -> None:
    answer = envelope.body_as(InventoryReserved)
    order = _pending_order(session, answer.order_id, envelope)
    if order is None:
        return
    _settle(session, order, "CONFIRMED", envelope, None)
    outbox.add(session, "order.confirmed", outcome_event(order), correlation_id=order.id)


def on_inventory_rejected(session: Session, envelope: Envelope) -> None:
    answer = envelope.body_as(InventoryRejected)
    order = _pending_order(session, answer.order_id, envelope)
    if order is None:
        return
    _settle(session, order, "REJECTED", envelope, answer.reason)
    outbox.add(
        session,
        "order.rejected",
        {**outcome_event(order), "reason": answer.reason},
        correlation_id=order.id,
    )


def _pending_order(session: Session, order_id: str, envelope: Envelope) -> Order | None:
    order = session.get(Order, order_id, with_for_update=True)
    if order is None:
        log.error(
            "%s for unknown order %s ignored",
            envelope.type,
            order_id,
            extra={"correlation_id": order_id, "message_id": envelope.message_id},
        )
        return None
    if order.status != "PENDING":
        log.info(
            "%s for order %s, already %s, ignored",
            envelope.type,
            order_id,
            order.status,
            extra={"correlation_id": order_id},
        )
        return None
    return order


def _settle(
    session: Session, order: Order, status: str, envelope: Envelope, reason: str | None
) -> None:
    now = utcnow()
    order.status, order.reject_reason, order.updated_at = status, reason, now
    outcome = "order.confirmed" if status == "CONFIRMED" else "order.rejected"
    session.add_all(
        [
            TimelineEntry(
                order_id=order.id,
                event=envelope.type,
                service=envelope.app_id,
                at=now,
                detail=reason,
            ),
            TimelineEntry(order_id=order.id, event=outcome, service=SERVICE, at=now, detail=reason),
        ]
    )


def outcome_event(order: Order) -> dict[str, object]:
    return {
        "order_id": order.id,
        "customer": {"name": order.customer_name, "phone": order.customer_phone},
        "items": [{"sku": line.sku, "quantity": line.quantity} for line in order.lines],
        "subtotal_cents": order.subtotal_cents,
        "discount_cents": order.discount_cents,
        "total_cents": order.total_cents,
        "coupon_code": order.coupon_code,
    }


HANDLERS = {
    "inventory.reserved": on_inventory_reserved,
    "inventory.rejected": on_inventory_rejected,
}
