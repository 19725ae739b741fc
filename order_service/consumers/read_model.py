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
from sqlalchemy import Insert, String, bindparam, insert, select, update
from sqlalchemy.orm import Session

from messaging import batch_writes
from messaging.database import UtcDateTime
from messaging.envelope import Envelope
from messaging.outbox import utcnow
from messaging.routes import Route, Routes
from order_service.models import Order, Product, TimelineEntry

log = logging.getLogger(__name__)


class StockChanged(BaseModel):
    sku: str
    available: int
    version: int


_products, _orders, _timeline = Product.__table__, Order.__table__, TimelineEntry.__table__
# Every order sends several events here: Core statements, built once, on the session's
# connection (several times cheaper than the ORM doing the same).
NEWER_STOCK = (
    update(_products)
    .where(_products.c.sku == bindparam("the_sku"), _products.c.stock_version < bindparam("v"))
    .values(available=bindparam("available"), stock_version=bindparam("v"))
)
A_LINE_IF_OURS = insert(_timeline).from_select(  # nothing when the order is not ours
    ["order_id", "event", "service", "at", "detail"],
    select(
        _orders.c.id,
        bindparam("event", type_=String),
        bindparam("service", type_=String),
        bindparam("at", type_=UtcDateTime()),
        bindparam("detail", type_=String),
    ).where(_orders.c.id == bindparam("order_id")),
)


def on_stock_changed(session: Session, envelope: Envelope) -> None:
    change = envelope.body_as(StockChanged)
    db = session.connection()
    values = {"the_sku": change.sku, "available": change.available, "v": change.version}
    if db.execute(NEWER_STOCK, values).rowcount == 0 and session.get(Product, change.sku) is None:
        log.warning("stock of unknown sku %s ignored", change.sku)
    # else: shown, or an older change arriving late (its version is not newer)


def on_order_story(session: Session, envelope: Envelope) -> None:
    order_id = envelope.body.get("order_id")
    if not isinstance(order_id, str):
        return  # not about an order (a coupon made by an admin, say)
    line = {
        "order_id": order_id,
        "event": envelope.type,
        "service": envelope.app_id,
        "at": utcnow(),
        "detail": story_detail(envelope),
    }
    batch_writes.write(session, A_LINE_IF_OURS, line, _add_lines)


def _add_lines(session: Session, statement: Insert, lines: list[dict[str, object]]) -> None:
    session.connection().execute(statement, lines)


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
