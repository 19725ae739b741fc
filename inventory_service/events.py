"""The events the inventory publishes, all through its outbox (in the caller's transaction)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from inventory_service.models import InventoryOutbox, StockItem
from messaging.outbox import Outbox

SERVICE = "inventory_service"
outbox = Outbox(InventoryOutbox, app_id=SERVICE)


def stock_changed(session: Session, item: StockItem) -> None:
    """`available` of a sku changed; `version` lets readers ignore an older change."""
    outbox.add(
        session,
        "inventory.stock_changed",
        {"sku": item.sku, "available": item.available, "version": item.version},
        correlation_id=item.sku,
    )
