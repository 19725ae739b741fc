"""Inventory rules: one function per event on `inventory.orders`, each given a session;
`ROUTES` says which model each event's body must match.

An order reserves every line or none; a flash-sale winner's order draws from its sale's
allocation instead (allocations.py). Each line is taken with one conditional UPDATE
(`available = available - q WHERE available >= q`): the database checks and decrements in
one step, so competing consumers can never drive stock below zero (PostgreSQL re-checks
the condition after waiting for a concurrent update; SQLite takes one writer at a time).
Lines are taken in sku order, so two orders never wait for each other in a cycle.

Every order of the shop passes through `on_order_created`, so its statements are Core,
built once and run on the session's connection (several times cheaper than the ORM's;
`make bench` shows the consumer's rate). The rarer events use the ORM.
"""

from __future__ import annotations

import json
import logging

from pydantic import BaseModel, Field
from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from inventory_service import allocations
from inventory_service.events import (
    InventoryRejected,
    InventoryReserved,
    ReservedLine,
    Stock,
    outbox,
    stock_changed,
)
from inventory_service.models import Reservation, StockItem
from messaging import batch_reads, batch_writes
from messaging.envelope import Envelope
from messaging.outbox import utcnow
from messaging.routes import Route, Routes

log = logging.getLogger(__name__)


class ProductCreated(BaseModel):
    sku: str
    stock: int = Field(ge=0)


class StockSet(BaseModel):
    sku: str
    stock: int = Field(ge=0)


class Line(BaseModel):
    sku: str
    quantity: int = Field(ge=1)


class OrderCreated(BaseModel):
    order_id: str
    items: list[Line] = Field(min_length=1)
    flash_sale_id: str | None = None  # a winner's order: its units are the sale's


class OutOfStock(Exception):
    """A line cannot be reserved; the whole order is rejected."""


def on_product_created(session: Session, envelope: Envelope) -> None:
    event = envelope.body_as(ProductCreated)
    if session.get(StockItem, event.sku) is not None:
        log.info("product.created for existing sku %s ignored", event.sku)
        return
    item = StockItem(sku=event.sku, available=event.stock, version=1)
    session.add(item)
    stock_changed(session, item)


def on_stock_set(session: Session, envelope: Envelope) -> None:
    event = envelope.body_as(StockSet)
    item = session.get(StockItem, event.sku, with_for_update=True)
    if item is None:
        item = StockItem(sku=event.sku, available=event.stock, version=1)
        session.add(item)
    else:
        item.available = event.stock
        item.version += 1
        item.updated_at = utcnow()
    session.flush()
    stock_changed(session, item)


def on_order_created(session: Session, envelope: Envelope) -> None:
    order = envelope.body_as(OrderCreated)
    if DECISIONS.done_before(session, order.order_id):
        log.info("order %s was decided before; ignored", order.order_id)
        return
    lines = _merge(order.items)
    try:
        taken = _reserve(session, order, lines)
    except (OutOfStock, allocations.AllocationOverdrawn) as refusal:
        _decide(session, order.order_id, lines, "REJECTED", str(refusal))
        outbox.add_event(
            session,
            InventoryRejected(order_id=order.order_id, reason=str(refusal)),
            correlation_id=order.order_id,
        )
        return
    _decide(session, order.order_id, lines, "RESERVED", None)
    reserved = [ReservedLine(sku=sku, quantity=quantity) for sku, quantity in lines.items()]
    outbox.add_event(
        session,
        InventoryReserved(order_id=order.order_id, items=reserved),
        correlation_id=order.order_id,
    )
    for item in taken:
        stock_changed(session, item)


def read_decisions(session: Session, orders: list[OrderCreated]) -> None:
    """Which of the batch's orders were decided before, with one SELECT for the batch."""
    DECISIONS.read_ahead(session, [order.order_id for order in orders])


def _reserve(session: Session, order: OrderCreated, lines: dict[str, int]) -> list[Stock]:
    """Take every line: from the sale's allocation for a winner, else from the stock; all
    lines or none (OutOfStock, and nothing taken)."""
    if order.flash_sale_id is not None and allocations.draw(
        session, order.flash_sale_id, sum(lines.values())
    ):
        return []  # the ordinary stock did not change
    if len(lines) == 1:  # one line: nothing to undo if it cannot be taken
        ((sku, quantity),) = lines.items()
        return [_take(session, sku, quantity)]
    with session.begin_nested():  # a SAVEPOINT: a line that cannot be taken undoes the others
        return [_take(session, sku, quantity) for sku, quantity in sorted(lines.items())]


def _merge(lines: list[Line]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for line in lines:
        merged[line.sku] = merged.get(line.sku, 0) + line.quantity
    return merged


_stock = StockItem.__table__
# Statements built once and run on the session's connection: the hot path of the service.
_decided = Reservation.__table__.c.order_id
DECISIONS = batch_reads.DoneOnce(
    "inventory: decided orders",
    select(_decided).where(_decided.in_(bindparam("ids", expanding=True))),
)
TAKE = (
    update(_stock)
    .where(_stock.c.sku == bindparam("key"), _stock.c.available >= bindparam("quantity"))
    .values(
        available=_stock.c.available - bindparam("quantity"),
        version=_stock.c.version + 1,
        updated_at=bindparam("now"),
    )
    .returning(_stock.c.sku, _stock.c.available, _stock.c.version)
)
LEFT = select(_stock.c.available).where(_stock.c.sku == bindparam("key"))
_reservations = Reservation.__table__


def _take(session: Session, sku: str, quantity: int) -> Stock:
    db = session.connection()
    taken = db.execute(TAKE, {"key": sku, "quantity": quantity, "now": utcnow()}).first()
    if taken is not None:
        return taken  # sku, available, version after the change
    left = db.execute(LEFT, {"key": sku}).scalar()
    if left is None:
        raise OutOfStock(f"unknown product {sku}")
    raise OutOfStock(f"not enough {sku}: {quantity} wanted, {left} left")


def _decide(
    session: Session, order_id: str, lines: dict[str, int], status: str, reason: str | None
) -> None:
    """Record the decision. It goes in with the batch's other decisions, in one INSERT
    before the commit; a second order.created for this order later in the batch finds it
    decided in what was read ahead (DECISIONS.done_before marks it). Without a read-ahead,
    that second one would take the stock again and break the INSERT's order_id key: the
    batch is then done again one message at a time, where DECISIONS sees the first."""
    lines_json = json.dumps([{"sku": s, "quantity": q} for s, q in lines.items()])
    row = {
        "order_id": order_id,
        "status": status,
        "lines": lines_json,
        "reason": reason,
        "decided_at": utcnow(),
    }
    batch_writes.insert(session, _reservations, row)


ROUTES = Routes(
    Route("product.created", ProductCreated, on_product_created),
    Route("product.stock_set", StockSet, on_stock_set),
    Route("order.created", OrderCreated, on_order_created, read_decisions),
    Route("flash_sale.created", allocations.SaleCreated, allocations.on_sale_created),
    Route("flash_sale.ended", allocations.SaleEnded, allocations.on_sale_ended),
)
