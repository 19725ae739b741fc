"""Order rules: business functions that take a session and a command.

They know nothing of Flask or pika. Each writes its state change and its event (through
the outbox) in the caller's transaction, so both commit or neither does. The one
exception is `place_order`, which orchestrates: it prices the order in one short
transaction, asks the coupon service over RPC (outside any transaction: a database write
lock must never wait on the network), and stores the order and its event in another.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from messaging.outbox import Outbox, utcnow
from order_service.models import (
    IdempotencyKey,
    Order,
    OrderLine,
    OrderOutbox,
    Product,
    TimelineEntry,
)
from order_service.schemas import OrderIn, ProductIn, StockIn

SERVICE = "order_service"
ORDER_IDS = uuid.UUID("6f6b1d2c-5e0a-4c1e-9f3b-2a7d8c4e1b90")  # the namespace of keyed order ids
outbox = Outbox(OrderOutbox, app_id=SERVICE)


class DomainError(Exception):
    """A request the rules refuse; the API turns it into problem+json."""

    status = 422
    title = "Invalid request"

    def __init__(self, detail: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []


class NotFound(DomainError):
    status = 404
    title = "Not found"


class Conflict(DomainError):
    status = 409
    title = "Conflict"


class InvalidOrder(DomainError):
    status = 422
    title = "Invalid order"


class ServiceUnavailable(DomainError):
    status = 503
    title = "Service Unavailable"


class CouponRefused(DomainError):
    """The coupon service said no; `status` is 422 (not valid) or 409 (code exists)."""

    title = "Coupon refused"

    def __init__(self, detail: str, status: int = 422, errors: list[dict[str, str]] | None = None):
        super().__init__(detail, errors)
        self.status = status


class CouponServiceUnavailable(ServiceUnavailable):
    """No answer from the coupon service in time."""


class Coupons(Protocol):
    """What the order rules need of the coupon service (order_service.coupons.CouponDesk)."""

    def reserve(self, code: str, order_id: str, phone: str, subtotal_cents: int) -> int: ...


@dataclass
class PlacedOrder:
    order: Order
    replayed: bool = False  # True when an Idempotency-Key matched an earlier request


def list_products(session: Session) -> list[Product]:
    return list(session.scalars(select(Product).order_by(Product.name, Product.sku)))


def get_product(session: Session, sku: str) -> Product:
    product = session.get(Product, sku)
    if product is None:
        raise NotFound(f"No product has sku {sku!r}.")
    return product


def create_product(session: Session, command: ProductIn) -> Product:
    if session.get(Product, command.sku) is not None:
        raise Conflict(f"A product with sku {command.sku!r} exists already.")
    product = Product(
        sku=command.sku,
        name=command.name,
        price_cents=command.price_cents,
        available=command.stock,
    )
    session.add(product)
    outbox.add(
        session,
        "product.created",
        {
            "sku": command.sku,
            "name": command.name,
            "price_cents": command.price_cents,
            "stock": command.stock,
        },
        correlation_id=command.sku,
    )
    return product


def set_stock(session: Session, sku: str, command: StockIn) -> None:
    """Ask the inventory to set the stock; `available` follows when it reports back."""
    get_product(session, sku)
    outbox.add(
        session, "product.stock_set", {"sku": sku, "stock": command.stock}, correlation_id=sku
    )


def get_order(session: Session, order_id: str) -> Order:
    order = session.scalar(
        select(Order)
        .where(Order.id == order_id)
        .options(selectinload(Order.lines), selectinload(Order.timeline))
    )
    if order is None:
        raise NotFound(f"No order has id {order_id!r}.")
    return order


def find_replay(session: Session, idempotency_key: str, request_hash: str) -> Order | None:
    """The order an earlier request with this key made; Conflict if its body differed."""
    earlier = session.get(IdempotencyKey, idempotency_key)
    if earlier is None:
        return None
    if earlier.request_hash != request_hash:
        raise Conflict(
            "This Idempotency-Key was used with a different request body; "
            "use a new key for a new order."
        )
    return get_order(session, earlier.order_id)


def place_order(
    sessions: sessionmaker[Session],
    command: OrderIn,
    *,
    coupons: Coupons,
    read_sessions: sessionmaker[Session] | None = None,
    idempotency_key: str | None = None,
    request_hash: str = "",
) -> PlacedOrder:
    """Price, reserve the coupon (RPC), then store the order and `order.created` together."""
    with (read_sessions or sessions)() as session:
        if idempotency_key is not None:
            earlier = find_replay(session, idempotency_key, request_hash)
            if earlier is not None:
                return PlacedOrder(earlier, replayed=True)
        products = _products_for(session, command)
    order = new_order(
        command.customer.name,
        command.customer.phone,
        [
            (products[line.sku], line.quantity, products[line.sku].price_cents)
            for line in command.items
        ],
        order_id=order_id_for_key(idempotency_key) if idempotency_key else None,
    )
    if command.coupon_code:
        order.coupon_code = command.coupon_code
        order.discount_cents = _reserve_coupon(coupons, command.coupon_code, order)
        order.total_cents = order.subtotal_cents - order.discount_cents
    try:
        with sessions.begin() as session:
            session.add(order)
            if idempotency_key is not None:
                session.add(
                    IdempotencyKey(key=idempotency_key, request_hash=request_hash, order=order)
                )
            outbox.add(
                session, "order.created", order_created_event(order), correlation_id=order.id
            )
    except IntegrityError:
        if idempotency_key is None:
            raise
        # A concurrent request with the same key won the race: answer as its replay.
        # (A coupon reserved for this lost order is left to expire.)
        with sessions() as session:
            earlier = find_replay(session, idempotency_key, request_hash)
        if earlier is None:
            raise
        return PlacedOrder(earlier, replayed=True)
    return PlacedOrder(order)


def order_id_for_key(idempotency_key: str) -> str:
    """The order id an Idempotency-Key stands for, the same on every retry.

    A retry after a 503 then asks the coupon service to reserve for the same order, which
    it grants again, instead of finding the coupon held by the attempt that timed out.
    """
    return str(uuid.uuid5(ORDER_IDS, idempotency_key))


def new_order(
    name: str, phone: str, lines: list[tuple[Product, int, int]], order_id: str | None = None
) -> Order:
    """A PENDING order of (product, quantity, unit price) lines, its story begun."""
    now = utcnow()
    order = Order(
        id=order_id or str(uuid.uuid4()),
        status="PENDING",
        customer_name=name,
        customer_phone=phone,
        coupon_code=None,
        created_at=now,
        updated_at=now,
    )
    order.lines = [
        OrderLine(
            position=position,
            sku=product.sku,
            name=product.name,
            quantity=quantity,
            unit_price_cents=unit_price,
        )
        for position, (product, quantity, unit_price) in enumerate(lines)
    ]
    order.subtotal_cents = sum(line.quantity * line.unit_price_cents for line in order.lines)
    order.discount_cents = 0
    order.total_cents = order.subtotal_cents
    order.timeline = [TimelineEntry(event="order.created", service=SERVICE, at=now)]
    return order


def store_order(session: Session, order: Order, flash_sale_id: str | None = None) -> None:
    """The order and its `order.created` event, in the caller's transaction.

    A flash-sale winner's order names its sale, so the inventory takes its units from the
    sale's allocation rather than from the ordinary stock.
    """
    session.add(order)
    event = order_created_event(order)
    if flash_sale_id is not None:
        event["flash_sale_id"] = flash_sale_id
    outbox.add(session, "order.created", event, correlation_id=order.id)


def _reserve_coupon(coupons: Coupons, code: str, order: Order) -> int:
    try:
        return coupons.reserve(code, order.id, order.customer_phone, order.subtotal_cents)
    except CouponRefused as refusal:
        raise InvalidOrder(
            "The coupon is not valid.", [{"field": "coupon_code", "message": refusal.detail}]
        ) from None


def _products_for(session: Session, command: OrderIn) -> dict[str, Product]:
    skus = [line.sku for line in command.items]
    products = {p.sku: p for p in session.scalars(select(Product).where(Product.sku.in_(skus)))}
    errors = []
    seen: set[str] = set()
    for index, sku in enumerate(skus):
        if sku not in products:
            errors.append({"field": f"items[{index}].sku", "message": f"unknown sku {sku!r}"})
        elif sku in seen:
            errors.append(
                {
                    "field": f"items[{index}].sku",
                    "message": f"{sku!r} appears more than once; combine the quantities",
                }
            )
        seen.add(sku)
    if errors:
        raise InvalidOrder("The order names products that cannot be ordered.", errors)
    return products


def order_created_event(order: Order) -> dict[str, object]:
    return {
        "order_id": order.id,
        "customer": {"name": order.customer_name, "phone": order.customer_phone},
        "items": [
            {"sku": line.sku, "quantity": line.quantity, "unit_price_cents": line.unit_price_cents}
            for line in order.lines
        ],
        "subtotal_cents": order.subtotal_cents,
        "discount_cents": order.discount_cents,
        "total_cents": order.total_cents,
        "coupon_code": order.coupon_code,
    }
