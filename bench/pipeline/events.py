"""The shop's data in bench.pipeline: one product with a large stock, one customer, one
valid order (what the load generator POSTs), and for (c) the messages each consumer is
given: events of the types its queue is bound to, with the bodies their producers publish.
Each `*_messages(engine, count)` also writes what the consumer's database must hold first
(the PENDING orders the saga confirms, say); that part is not timed.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta

from sqlalchemy import Engine

from bench import parts
from messaging.envelope import Envelope
from messaging.outbox import utcnow

SKU, PRODUCT_NAME, PRICE_CENTS, STOCK = "BENCH-TEA", "Bench tea", 450, 1_000_000
PRODUCT = parts.ProductRow(SKU, PRODUCT_NAME, PRICE_CENTS, STOCK)
CUSTOMER = {"name": "Ada Lovelace", "phone": "+442079460958"}
ORDER = {"customer": CUSTOMER, "items": [{"sku": SKU, "quantity": 1}]}  # a valid order


def event(event_type: str, body: dict[str, object], app_id: str) -> Envelope:
    correlation = str(body.get("order_id") or body.get("sku"))
    return Envelope.new(event_type, body, correlation_id=correlation, app_id=app_id)


def order_created(order_id: str) -> Envelope:
    items = [{"sku": SKU, "quantity": 1, "unit_price_cents": PRICE_CENTS}]
    money = {"subtotal_cents": PRICE_CENTS, "discount_cents": 0, "total_cents": PRICE_CENTS}
    body = {"order_id": order_id, "customer": CUSTOMER, "items": items, **money}
    return event("order.created", {**body, "coupon_code": None}, "order_service")


def order_confirmed(order_id: str) -> Envelope:
    money = {"subtotal_cents": PRICE_CENTS, "discount_cents": 0, "total_cents": PRICE_CENTS}
    items = [{"sku": SKU, "quantity": 1}]
    body = {"order_id": order_id, "customer": CUSTOMER, "items": items, **money}
    return event("order.confirmed", {**body, "coupon_code": None}, "order_service")


def coupon_issued(order_id: str) -> Envelope:
    body = {
        "order_id": order_id,
        "code": f"THANKS-{secrets.token_hex(3).upper()}",
        "amount_off_cents": None,
        "percent_off": 10,
        "min_subtotal_cents": 0,
        "expires_at": (utcnow() + timedelta(days=30)).isoformat().replace("+00:00", "Z"),
        "customer_phone": CUSTOMER["phone"],
        "status": "ACTIVE",
    }
    return event("coupon.issued", body, "coupon_service")


def sms_sent(order_id: str, about: str) -> Envelope:
    body = {"order_id": order_id, "event": about, "phone": CUSTOMER["phone"], "text": "Thanks!"}
    return event("notification.sms_sent", body, "notification_service")


def inventory_messages(_engine: Engine, count: int) -> list[Envelope]:
    """product.created with a large stock, then order.created events that reserve one each."""
    product = {"sku": SKU, "name": PRODUCT_NAME, "price_cents": PRICE_CENTS, "stock": STOCK}
    first = event("product.created", product, "order_service")
    return [first, *(order_created(str(uuid.uuid4())) for _ in range(count - 1))]


def saga_messages(engine: Engine, count: int) -> list[Envelope]:
    """inventory.reserved for `count` PENDING orders: each one confirms its order."""
    return [
        event(
            "inventory.reserved",
            {"order_id": order_id, "items": [{"sku": SKU, "quantity": 1}]},
            "inventory_service",
        )
        for order_id in parts.insert_orders(engine, PRODUCT, CUSTOMER, count, "PENDING")
    ]


def read_model_messages(engine: Engine, count: int) -> list[Envelope]:
    """What a confirmed order sends the read model: stock_changed, coupon.issued, two SMS."""
    messages = []
    for number, order_id in enumerate(
        parts.insert_orders(engine, PRODUCT, CUSTOMER, count // 4, "CONFIRMED"), start=1
    ):
        stock = {"sku": SKU, "available": STOCK - number, "version": number}
        messages += [
            event("inventory.stock_changed", stock, "inventory_service"),
            coupon_issued(order_id),
            sms_sent(order_id, "order.confirmed"),
            sms_sent(order_id, "coupon.issued"),
        ]
    return messages


def coupon_messages(_engine: Engine, count: int) -> list[Envelope]:
    """order.confirmed events without a coupon: each earns the customer a reward coupon."""
    return [order_confirmed(str(uuid.uuid4())) for _ in range(count)]


def notification_messages(_engine: Engine, count: int) -> list[Envelope]:
    """order.confirmed and coupon.issued, one of each per order: one SMS each."""
    messages = []
    for _ in range(count // 2):
        order_id = str(uuid.uuid4())
        messages += [order_confirmed(order_id), coupon_issued(order_id)]
    return messages


# Which messages each consumer of bench/parts.py gets, by its name.
MESSAGES = {
    "inventory consumer": inventory_messages,
    "order saga": saga_messages,
    "order read model": read_model_messages,
    "coupon consumer": coupon_messages,
    "notification consumer": notification_messages,
}
