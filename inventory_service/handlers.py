"""Inventory rules: one function per event on `inventory.orders`, each given a session;
`ROUTES` says which model each event's body must match.

An order reserves every line or none; a flash-sale winner's order draws from its sale's
allocation instead (allocations.py). Each line is taken with one conditional UPDATE
(`available = available - q WHERE available >= q`): the database checks and decrements in
one step, so competing consumers can never drive stock below zero (PostgreSQL re-checks
the condition after waiting for a concurrent update; SQLite takes one writer at a time).
Lines are taken in sku order, so two orders never wait for each other in a cycle.
"""

from __future__ import annotations

import json
import logging

from pydantic import BaseModel, Field
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from inventory_service import allocations
from inventory_service.events import (
    InventoryRejected,
    InventoryReserved,
    ReservedLine,
    outbox,
    stock_changed,
)
from inventory_service.models import Reservation, StockItem
from messaging.consumer import Route, Routes
from messaging.envelope import Envelope
from messaging.outbox import utcnow

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
    if session.get(Reservation, order.order_id) is not None:
        log.info("order %s was decided before; ignored", order.order_id)
        return
    lines = _merge(order.items)
    try:
        with session.begin_nested():  # all lines or none
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


def _reserve(session: Session, order: OrderCreated, lines: dict[str, int]) -> list[StockItem]:
    """Take every line: from the sale's allocation for a winner, else from the stock."""
    if order.flash_sale_id is not None and allocations.draw(
        session, order.flash_sale_id, sum(lines.values())
    ):
        return []  # the ordinary stock did not change
    return [_take(session, sku, quantity) for sku, quantity in sorted(lines.items())]


def _merge(lines: list[Line]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for line in lines:
        merged[line.sku] = merged.get(line.sku, 0) + line.quantity
    return merged


def _take(session: Session, sku: str, quantity: int) -> StockItem:
    taken = session.execute(
        update(StockItem)
        .where(StockItem.sku == sku, StockItem.available >= quantity)
        .values(
            available=StockItem.available - quantity,
            version=StockItem.version + 1,
            updated_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount == 1:
        item = session.scalar(
            select(StockItem).where(StockItem.sku == sku).execution_options(populate_existing=True)
        )
        assert item is not None
        return item
    item = session.get(StockItem, sku)
    if item is None:
        raise OutOfStock(f"unknown product {sku}")
    raise OutOfStock(f"not enough {sku}: {quantity} wanted, {item.available} left")


def _decide(
    session: Session, order_id: str, lines: dict[str, int], status: str, reason: str | None
) -> None:
    session.add(
        Reservation(
            order_id=order_id,
            status=status,
            lines=json.dumps([{"sku": s, "quantity": q} for s, q in lines.items()]),
            reason=reason,
        )
    )


ROUTES = Routes(
    Route("product.created", ProductCreated, on_product_created),
    Route("product.stock_set", StockSet, on_stock_set),
    Route("order.created", OrderCreated, on_order_created),
    Route("flash_sale.created", allocations.SaleCreated, allocations.on_sale_created),
    Route("flash_sale.ended", allocations.SaleEnded, allocations.on_sale_ended),
)
