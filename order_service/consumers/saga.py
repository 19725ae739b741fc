"""The choreographed saga, order side, on `orders.inventory`: the inventory's answer settles
a PENDING order (and its answer to a new flash sale opens the sale: sale_lifecycle.py).

`inventory.reserved` confirms it, `inventory.rejected` rejects it with the reason; either
way the order service announces the outcome (`order.confirmed` / `order.rejected`) through
its outbox, and the coupon and notification services take it from there. An order that is
no longer PENDING ignores a second answer; an unknown order is logged, never a crash loop.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from itertools import groupby

from pydantic import BaseModel
from sqlalchemy import Row, Update, bindparam, select, update
from sqlalchemy.orm import Session

from messaging import batch_reads, batch_writes
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
    """What settling an order needs of it: Core rows of the order joined with its lines
    (the ORM's get and lazy load of its lines cost more than everything else the saga did)."""

    id: str
    status: str
    customer_name: str
    customer_phone: str
    subtotal_cents: int
    discount_cents: int
    total_cents: int
    coupon_code: str | None
    lines: list[Row]  # a line's sku and quantity (and its order's columns)


ORDERS = "saga: orders"  # the batch's orders, read ahead (messaging/batch_reads.py)


def read_orders(session: Session, answers: list[InventoryReserved | InventoryRejected]) -> None:
    """The batch's orders with their lines, in one SELECT: once per batch, not per answer."""
    batch_reads.keep(session, ORDERS, _orders_by_id(session, [a.order_id for a in answers]))


def _orders_by_id(session: Session, order_ids: list[str]) -> dict[str, PendingOrder | None]:
    found: dict[str, PendingOrder | None] = dict.fromkeys(sorted(set(order_ids)))
    rows = session.connection().execute(THE_ORDERS, {"ids": list(found)}).all()
    for order_id, its_rows in groupby(rows, key=lambda row: row.id):
        rows_of_order = list(its_rows)  # a row per line; an order has one or more
        fields = {name: rows_of_order[0]._mapping[name] for name in ORDER_FIELDS}
        lines = [row for row in rows_of_order if row.sku is not None]
        found[order_id] = PendingOrder(**fields, lines=lines)
    return found


def _pending_order(session: Session, order_id: str, envelope: Envelope) -> PendingOrder | None:
    found = batch_reads.kept(session, ORDERS)
    if found is None or order_id not in found:  # not read ahead: read it now
        found = _orders_by_id(session, [order_id])
    order = found[order_id]
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


_orders, _lines, _timeline = Order.__table__, OrderLine.__table__, TimelineEntry.__table__
ORDER_FIELDS = [name for name in PendingOrder.__dataclass_fields__ if name != "lines"]
# Every order is settled here once: its reads and writes are Core statements, built once
# and run on the session's connection (several times cheaper than the ORM doing the same).
# The orders and their lines come in one SELECT, a row per line, in id order (so that two
# saga processes lock a batch's orders in one order on PostgreSQL, and never deadlock).
THE_ORDERS = (
    select(*(_orders.c[name] for name in ORDER_FIELDS), _lines.c.sku, _lines.c.quantity)
    .outerjoin(_lines, _lines.c.order_id == _orders.c.id)
    .where(_orders.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(_orders.c.id, _lines.c.position)
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
    outcome it led to. They go in with the batch's, one UPDATE and one INSERT before the
    commit; a later answer in the batch about this order finds it settled in what was read
    ahead."""
    now = utcnow()
    outcome = "order.confirmed" if status == "CONFIRMED" else "order.rejected"
    found = batch_reads.kept(session, ORDERS)
    if found is not None and order.id in found:
        found[order.id] = replace(order, status=status)
    settled = {"order_id": order.id, "status": status, "reason": reason, "now": now}
    batch_writes.write(session, SETTLE, settled, _settle_all)
    story = [
        {"order_id": order.id, "event": event, "service": by, "at": now, "detail": reason}
        for event, by in ((envelope.type, envelope.app_id), (outcome, SERVICE))
    ]
    batch_writes.insert(session, _timeline, *story)


def _settle_all(session: Session, statement: Update, settled: list[dict]) -> None:
    session.connection().execute(statement, settled)  # one executemany for the batch


ROUTES = Routes(
    Route("inventory.reserved", InventoryReserved, on_inventory_reserved, read_orders),
    Route("inventory.rejected", InventoryRejected, on_inventory_rejected, read_orders),
    Route(
        sale_lifecycle.ALLOCATED, sale_lifecycle.Allocated, sale_lifecycle.on_inventory_allocated
    ),
)
