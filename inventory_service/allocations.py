"""Flash-sale allocations: the inventory holds a sale's units from its creation to its end.

A flash sale sells units the inventory owns, so the inventory sets them aside:
- `flash_sale.created`: move min(quota, available) units of the sku out of the ordinary
  stock into an allocation, and answer `inventory.allocated` with how many it could. From
  then on ordinary orders can only take what is left.
- a winner's order (`order.created` with `flash_sale_id`) draws its unit from the
  allocation, never from the ordinary stock, so it cannot be rejected for stock.
- `flash_sale.ended` (sold out, or past `ends_at`) carries the sale's final `sold`: the
  allocation keeps that many units for the winners' orders still on their way and gives
  the rest back to the ordinary stock.

Each step is one transaction with the allocation (and the stock row) locked, so a
redelivered or reordered event changes nothing twice: an allocation is made once per sale,
and an `ended` that arrives before its `created` closes an empty allocation, so a late
`created` sets nothing aside.
"""

from __future__ import annotations

import logging

from pydantic import BaseModel, Field
from sqlalchemy import update
from sqlalchemy.orm import Session

from inventory_service.events import Allocated, outbox, stock_changed
from inventory_service.models import Allocation, StockItem
from messaging.envelope import Envelope
from messaging.outbox import utcnow

log = logging.getLogger(__name__)


class SaleCreated(BaseModel):
    sale_id: str
    sku: str
    quota: int = Field(ge=1)


class SaleEnded(BaseModel):
    sale_id: str
    sku: str
    sold: int = Field(ge=0)


class AllocationOverdrawn(Exception):
    """A winner's order found no unit left in its sale's allocation."""


def on_sale_created(session: Session, envelope: Envelope) -> None:
    """Set the sale's units aside, as many as the stock has up to its quota, once."""
    sale = envelope.body_as(SaleCreated)
    if session.get(Allocation, sale.sale_id, with_for_update=True) is not None:
        log.info("flash sale %s has its allocation already", sale.sale_id)
        return
    item = session.get(StockItem, sale.sku, with_for_update=True)
    units = min(sale.quota, item.available) if item is not None else 0
    session.add(
        Allocation(sale_id=sale.sale_id, sku=sale.sku, requested=sale.quota, units=units, taken=0)
    )
    if item is not None and units:
        item.available -= units
        item.version += 1
        item.updated_at = utcnow()
        session.flush()
        stock_changed(session, item)
    if units < sale.quota:
        log.warning(
            "flash sale %s asked for %d of %s; %d could be set aside",
            sale.sale_id,
            sale.quota,
            sale.sku,
            units,
            extra={"correlation_id": sale.sale_id},
        )
    outbox.add_event(
        session,
        Allocated(sale_id=sale.sale_id, sku=sale.sku, requested=sale.quota, units=units),
        correlation_id=sale.sale_id,
    )


def on_sale_ended(session: Session, envelope: Envelope) -> None:
    """Keep what the sale sold for its winners' orders; give the rest back to the stock."""
    sale = envelope.body_as(SaleEnded)
    allocation = session.get(Allocation, sale.sale_id, with_for_update=True)
    now = utcnow()
    if allocation is None:  # the end overtook the creation: nothing will be set aside
        session.add(
            Allocation(
                sale_id=sale.sale_id,
                sku=sale.sku,
                requested=0,
                units=0,
                taken=0,
                status="CLOSED",
                closed_at=now,
            )
        )
        return
    if allocation.status == "CLOSED":
        return
    keep = min(max(sale.sold, allocation.taken), allocation.units)
    returned = allocation.units - keep
    allocation.units, allocation.status, allocation.closed_at = keep, "CLOSED", now
    if returned:
        item = session.get(StockItem, allocation.sku, with_for_update=True)
        if item is not None:
            item.available += returned
            item.version += 1
            item.updated_at = now
            session.flush()
            stock_changed(session, item)
    log.info(
        "flash sale %s ended with %d sold; %d units back in stock",
        sale.sale_id,
        sale.sold,
        returned,
        extra={"correlation_id": sale.sale_id},
    )


def draw(session: Session, sale_id: str, quantity: int) -> bool:
    """Take a winner's units from its sale's allocation (in the caller's transaction).

    False when the sale has no allocation at all: a sale made before the inventory held
    sales' units (migration 0003) sells from the ordinary stock, as it did then.
    """
    if session.get(Allocation, sale_id) is None:
        return False
    drawn = session.execute(
        update(Allocation)
        .where(Allocation.sale_id == sale_id, Allocation.taken + quantity <= Allocation.units)
        .values(taken=Allocation.taken + quantity)
        .execution_options(synchronize_session=False)
    )
    if drawn.rowcount != 1:
        raise AllocationOverdrawn(f"flash sale {sale_id} has no unit left for this order")
    return True
