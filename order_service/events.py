"""The events the order service announces, as typed models, and the builders that make them
from its tables. All of them go through its outbox, in the transaction of the change they
report (messaging/outbox.py); `flash_sale.sold_out` is a broadcast for the web processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Protocol

from pydantic import BaseModel, Field

from messaging.database import iso
from messaging.events import Event, with_example
from messaging.outbox import Outbox
from order_service.models import FlashSale, Order, OrderOutbox

SERVICE = "order_service"
outbox = Outbox(OrderOutbox, app_id=SERVICE)

ORDER_ID = "5b0c7e0e-6f1e-4c55-9a34-2f6d1f0c9a11"
SALE_ID = "0a8f1c9e-2b7d-4f60-8d0e-3c1b5a7e9f42"
CUSTOMER = {"name": "Ann Lee", "phone": "+4930123456"}
AMOUNTS = {"subtotal_cents": 900, "discount_cents": 100, "total_cents": 800, "coupon_code": "LAB"}


class Customer(BaseModel):
    name: str
    phone: str


Count = Annotated[int, Field(ge=0)]
Positive = Annotated[int, Field(ge=1)]


class PricedLine(BaseModel):
    sku: str
    quantity: Positive
    unit_price_cents: Count


class Line(BaseModel):
    sku: str
    quantity: Positive


class ProductCreated(Event):
    TYPE = "product.created"
    SUMMARY = "A new product in the catalog, with its first stock."
    model_config = with_example(sku="TEA-1", name="Green tea", price_cents=450, stock=20)
    sku: str
    name: str
    price_cents: Count
    stock: Count


class StockSet(Event):
    TYPE = "product.stock_set"
    SUMMARY = "An admin sets a sku's stock; the inventory decides and reports it back."
    model_config = with_example(sku="TEA-1", stock=50)
    sku: str
    stock: Count


class OrderCreated(Event):
    TYPE = "order.created"
    SUMMARY = "A new PENDING order; a flash-sale winner's names its sale."
    model_config = with_example(
        order_id=ORDER_ID,
        customer=CUSTOMER,
        items=[{"sku": "TEA-1", "quantity": 2, "unit_price_cents": 450}],
        **AMOUNTS,
        flash_sale_id=None,
    )
    order_id: str
    customer: Customer
    items: Annotated[list[PricedLine], Field(min_length=1)]
    subtotal_cents: Count
    discount_cents: Count
    total_cents: Count
    coupon_code: str | None
    flash_sale_id: str | None = None  # a winner's order: its units are the sale's


class OrderConfirmed(Event):
    TYPE = "order.confirmed"
    SUMMARY = "The inventory reserved every line: the order is CONFIRMED."
    model_config = with_example(
        order_id=ORDER_ID, customer=CUSTOMER, items=[{"sku": "TEA-1", "quantity": 2}], **AMOUNTS
    )
    order_id: str
    customer: Customer
    items: Annotated[list[Line], Field(min_length=1)]
    subtotal_cents: Count
    discount_cents: Count
    total_cents: Count
    coupon_code: str | None


class OrderRejected(OrderConfirmed):
    TYPE = "order.rejected"
    SUMMARY = "The inventory could not serve the order: it is REJECTED, with the reason."
    model_config = with_example(
        order_id=ORDER_ID,
        customer=CUSTOMER,
        items=[{"sku": "TEA-1", "quantity": 2}],
        **AMOUNTS,
        reason="not enough TEA-1: 2 wanted, 1 left",
    )
    reason: str


class FlashSaleCreated(Event):
    TYPE = "flash_sale.created"
    SUMMARY = "A new flash sale: the inventory is asked to set its units aside."
    model_config = with_example(
        sale_id=SALE_ID,
        sku="PHONE",
        quota=10,
        starts_at="2026-12-24T10:00:00Z",
        ends_at="2026-12-24T11:00:00Z",
    )
    sale_id: str
    sku: str
    quota: Positive
    starts_at: str | None
    ends_at: str | None


class FlashSaleEnded(Event):
    TYPE = "flash_sale.ended"
    SUMMARY = "The sale is over (sold out, or past its end) with its final `sold`."
    model_config = with_example(sale_id=SALE_ID, sku="PHONE", sold=10, reason="sold_out")
    sale_id: str
    sku: str
    sold: Count
    reason: str  # sold_out or ended


class FlashSaleSoldOut(Event):
    TYPE = "flash_sale.sold_out"
    SUMMARY = "Broadcast to the web processes: the sale's last unit is gone."
    model_config = with_example(sale_id=SALE_ID)
    sale_id: str


PUBLISHED = (
    ProductCreated,
    StockSet,
    OrderCreated,
    OrderConfirmed,
    OrderRejected,
    FlashSaleCreated,
    FlashSaleEnded,
    FlashSaleSoldOut,
)
BROADCASTS = frozenset({FlashSaleSoldOut.TYPE})
# What each web process hears on its exclusive queue: the sold-out news, and the end of a
# sale (to forget it).
BROADCAST_BINDING = "flash_sale.#"


def order_created(order: Order, flash_sale_id: str | None = None) -> OrderCreated:
    return OrderCreated(
        order_id=order.id,
        customer=Customer(name=order.customer_name, phone=order.customer_phone),
        items=[
            PricedLine(sku=line.sku, quantity=line.quantity, unit_price_cents=line.unit_price_cents)
            for line in order.lines
        ],
        subtotal_cents=order.subtotal_cents,
        discount_cents=order.discount_cents,
        total_cents=order.total_cents,
        coupon_code=order.coupon_code,
        flash_sale_id=flash_sale_id,
    )


class SettledLine(Protocol):
    sku: str
    quantity: int


class SettledOrder(Protocol):
    """What an outcome event tells of its order: an Order, or the saga's Core read of one."""

    id: str
    customer_name: str
    customer_phone: str
    subtotal_cents: int
    discount_cents: int
    total_cents: int
    coupon_code: str | None
    lines: Sequence[SettledLine]


def order_confirmed(order: SettledOrder) -> OrderConfirmed:
    return OrderConfirmed(**_outcome(order))


def order_rejected(order: SettledOrder, reason: str) -> OrderRejected:
    return OrderRejected(**_outcome(order), reason=reason)


def _outcome(order: SettledOrder) -> dict[str, object]:
    return {
        "order_id": order.id,
        "customer": Customer(name=order.customer_name, phone=order.customer_phone),
        "items": [Line(sku=line.sku, quantity=line.quantity) for line in order.lines],
        "subtotal_cents": order.subtotal_cents,
        "discount_cents": order.discount_cents,
        "total_cents": order.total_cents,
        "coupon_code": order.coupon_code,
    }


def flash_sale_created(sale: FlashSale) -> FlashSaleCreated:
    return FlashSaleCreated(
        sale_id=sale.id,
        sku=sale.sku,
        quota=sale.requested_quota,
        starts_at=iso(sale.starts_at),
        ends_at=iso(sale.ends_at),
    )
