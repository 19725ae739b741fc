"""The order service's read model, fed by `orders.read-model`.

- `inventory.stock_changed` sets a product's `available`. Each carries the stock item's
  version, and an older version than the one shown is ignored, so events that arrive out
  of order can never show a stale number.
- every `coupon.*` and `notification.*` event about an order becomes a line of its
  timeline, so `GET /api/orders/{id}` tells the whole story from every service. The queue
  is bound to `coupon.#` and `notification.#`; a type not in `ROUTES` is poison, as on
  every queue (a new event must be given its line here).
"""

from __future__ import annotations

import logging

from pydantic import BaseModel
from sqlalchemy.orm import Session

from messaging.envelope import Envelope
from messaging.outbox import utcnow
from messaging.routes import Route, Routes
from order_service.models import Order, Product, TimelineEntry

log = logging.getLogger(__name__)


class StockChanged(BaseModel):
    sku: str
    available: int
    version: int


def on_stock_changed(session: Session, envelope: Envelope) -> None:
    change = envelope.body_as(StockChanged)
    product = session.get(Product, change.sku, with_for_update=True)
    if product is None:
        log.warning("stock of unknown sku %s ignored", change.sku)
        return
    if change.version <= product.stock_version:
        return  # an older change arriving late
    product.available, product.stock_version = change.available, change.version


def on_order_story(session: Session, envelope: Envelope) -> None:
    order_id = envelope.body.get("order_id")
    if not isinstance(order_id, str) or session.get(Order, order_id) is None:
        return  # not about an order this service knows (a coupon made by an admin, say)
    session.add(
        TimelineEntry(
            order_id=order_id,
            event=envelope.type,
            service=envelope.app_id,
            at=utcnow(),
            detail=story_detail(envelope),
        )
    )


def story_detail(envelope: Envelope) -> str | None:
    body = envelope.body
    if envelope.type == "notification.sms_sent":
        return body.get("text")
    if envelope.type == "notification.sms_failed":
        return f"SMS not delivered: {body.get('error')}"
    if envelope.type == "coupon.issued":
        off = f"{body['percent_off']}% off" if body.get("percent_off") else "a discount"
        return f"reward coupon {body.get('code')}: {off}"
    if envelope.type in ("coupon.redeemed", "coupon.released"):
        return f"coupon {body.get('code')}"
    return None


class OrderStory(BaseModel):
    """Any event about an order: its timeline takes it (if the order is one of ours)."""

    order_id: str | None = None


ROUTES = Routes(
    Route("inventory.stock_changed", StockChanged, on_stock_changed),
    *(
        Route(event, OrderStory, on_order_story)
        for event in (
            "coupon.redeemed",
            "coupon.released",
            "coupon.issued",
            "notification.sms_sent",
            "notification.sms_failed",
        )
    ),
)
