"""The choreographed saga, order side, on `orders.inventory`: the inventory's answer settles
a PENDING order (and its answer to a new flash sale opens the sale: sale_lifecycle.py).

`inventory.reserved` confirms it, `inventory.rejected` rejects it with the reason; either
way the order service announces the outcome (`order.confirmed` / `order.rejected`) through
its outbox, and the coupon and notification services take it from there. An order that is
no longer PENDING ignores a second answer; an unknown order is logged, never a crash loop.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pydantic import BaseModel
from sqlalchemy import Row, bindparam, select, update
from sqlalchemy.orm import Session

from messaging import batch_writes
from messaging.envelope import Envelope
from messaging.outbox import utcnow
from messaging.routes import Route, Routes
from order_service import sale_lifecycle
from order_service.events import SERVICE, order_confirmed, order_rejected, outbox
from order_service.models import Order, OrderLine, TimelineEntry

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
    outbox.add_event(session, order_confirmed(order), correlation_id=order.id)
    _settle(session, order, "CONFIRMED", envelope, None)


def on_inventory_rejected(session: Session, envelope: Envelope) -> None:
    answer = envelope.body_as(InventoryRejected)
    order = _pending_order(session, answer.order_id, envelope)
    if order is None:
        return
    outbox.add_event(session, order_rejected(order, answer.reason), correlation_id=order.id)
    _settle(session, order, "REJECTED", envelope, answer.reason)


@dataclass(frozen=True)
class PendingOrder:
    """What settling an order needs of it, read with one Core SELECT of the order joined
    with its lines (the ORM's get and lazy load of its lines cost more than everything else
    the saga does)."""

    id: str
    status: str
    customer_name: str
    customer_phone: str
    subtotal_cents: int
    discount_cents: int
    total_cents: int
    coupon_code: str | None
    lines: list[Row]  # a line's sku and quantity (and its order's columns)


def _pending_order(session: Session, order_id: str, envelope: Envelope) -> PendingOrder | None:
    rows = session.connection().execute(THE_ORDER, {"order_id": order_id}).all()
    if not rows:
        log.error(
            "%s for unknown order %s ignored",
            envelope.type,
            order_id,
            extra={"correlation_id": order_id, "message_id": envelope.message_id},
        )
        return None
    order = rows[0]
    if order.status != "PENDING":
        log.info(
            "%s for order %s, already %s, ignored",
            envelope.type,
            order_id,
            order.status,
            extra={"correlation_id": order_id},
        )
        return None
    fields = {name: order._mapping[name] for name in ORDER_FIELDS}
    lines = [row for row in rows if row.sku is not None]  # an order has one or more
    return PendingOrder(**fields, lines=lines)


_orders, _lines, _timeline = Order.__table__, OrderLine.__table__, TimelineEntry.__table__
ORDER_FIELDS = [name for name in PendingOrder.__dataclass_fields__ if name != "lines"]
# Every order is settled here once: its reads and writes are Core statements, built once
# and run on the session's connection (several times cheaper than the ORM doing the same).
# The order and its lines come in one SELECT, a row per line.
THE_ORDER = (
    select(*(_orders.c[name] for name in ORDER_FIELDS), _lines.c.sku, _lines.c.quantity)
    .outerjoin(_lines, _lines.c.order_id == _orders.c.id)
    .where(_orders.c.id == bindparam("order_id"))
    .order_by(_lines.c.position)
    .with_for_update(of=_orders)  # two answers for one order settle it once (PostgreSQL)
)
SETTLE = (
    update(_orders)
    .where(_orders.c.id == bindparam("order_id"))
    .values(
        status=bindparam("status"), reject_reason=bindparam("reason"), updated_at=bindparam("now")
    )
)


def _settle(
    session: Session, order: PendingOrder, status: str, envelope: Envelope, reason: str | None
) -> None:
    """The order's new status and two lines of its story: the inventory's answer and the
    outcome it led to (nothing in the batch reads the story: its lines go in with the
    batch's, in one INSERT before the commit)."""
    now = utcnow()
    outcome = "order.confirmed" if status == "CONFIRMED" else "order.rejected"
    session.connection().execute(
        SETTLE, {"order_id": order.id, "status": status, "reason": reason, "now": now}
    )
    for event, by in ((envelope.type, envelope.app_id), (outcome, SERVICE)):
        row = {"order_id": order.id, "event": event, "service": by, "at": now, "detail": reason}
        batch_writes.insert(session, _timeline, row)


ROUTES = Routes(
    Route("inventory.reserved", InventoryReserved, on_inventory_reserved),
    Route("inventory.rejected", InventoryRejected, on_inventory_rejected),
    Route(
        sale_lifecycle.ALLOCATED, sale_lifecycle.Allocated, sale_lifecycle.on_inventory_allocated
    ),
)
