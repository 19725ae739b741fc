"""The events the inventory announces, all through its outbox (in the caller's transaction)."""

from __future__ import annotations

from typing import Annotated, Protocol

from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from inventory_service.models import InventoryOutbox
from messaging.events import Event, with_example
from messaging.outbox import Outbox

SERVICE = "inventory_service"
outbox = Outbox(InventoryOutbox, app_id=SERVICE)

ORDER_ID = "5b0c7e0e-6f1e-4c55-9a34-2f6d1f0c9a11"
SALE_ID = "0a8f1c9e-2b7d-4f60-8d0e-3c1b5a7e9f42"


class ReservedLine(BaseModel):
    sku: str
    quantity: Annotated[int, Field(ge=1)]


class InventoryReserved(Event):
    TYPE = "inventory.reserved"
    SUMMARY = "Every line of the order is reserved."
    model_config = with_example(order_id=ORDER_ID, items=[{"sku": "TEA-1", "quantity": 2}])
    order_id: str
    items: list[ReservedLine]


class InventoryRejected(Event):
    TYPE = "inventory.rejected"
    SUMMARY = "The order cannot be served; nothing was reserved."
    model_config = with_example(order_id=ORDER_ID, reason="not enough TEA-1: 2 wanted, 1 left")
    order_id: str
    reason: str


class StockChanged(Event):
    TYPE = "inventory.stock_changed"
    SUMMARY = "A sku's available units changed; `version` orders the changes of one sku."
    model_config = with_example(sku="TEA-1", available=18, version=2)
    sku: str
    available: Annotated[int, Field(ge=0)]
    version: Annotated[int, Field(ge=1)]


class Allocated(Event):
    TYPE = "inventory.allocated"
    SUMMARY = "A flash sale's units are set aside: as many as the stock had, up to its quota."
    model_config = with_example(sale_id=SALE_ID, sku="PHONE", requested=10, units=10)
    sale_id: str
    sku: str
    requested: Annotated[int, Field(ge=1)]
    units: Annotated[int, Field(ge=0)]


PUBLISHED = (InventoryReserved, InventoryRejected, StockChanged, Allocated)


class Stock(Protocol):
    """A sku's stock as it is now (a StockItem, or a row a statement returned)."""

    sku: str
    available: int
    version: int


def stock_changed(session: Session, item: Stock) -> None:
    """`available` of a sku changed; `version` lets readers ignore an older change."""
    outbox.add_event(
        session,
        StockChanged(sku=item.sku, available=item.available, version=item.version),
        correlation_id=item.sku,
    )
