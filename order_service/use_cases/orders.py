"""Orders: place one (with its coupon), show one, and the rules shared with the flash sale's
winners (a new PENDING order, and storing it with its `order.created`).

`place_order` orchestrates: it prices the order in one short transaction, asks the coupon
service to reserve the coupon (over RPC, outside any transaction: a database write lock
must never wait on the network), and stores the order and its event in another. An
Idempotency-Key makes a retry answer with the order the first attempt made.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import Row, bindparam, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from messaging import batch_writes
from messaging.outbox import utcnow
from order_service.commands import OrderIn
from order_service.errors import Conflict, CouponRefused, InvalidOrder, NotFound
from order_service.events import SERVICE, order_created, outbox
from order_service.models import IdempotencyKey, Order, OrderLine, Product, TimelineEntry

ORDER_IDS = uuid.UUID("6f6b1d2c-5e0a-4c1e-9f3b-2a7d8c4e1b90")  # the namespace of keyed order ids


class Coupons(Protocol):
    """What placing an order needs of the coupon service (order_service/coupon_client.py;
    the unit tests give a fake)."""

    def reserve(self, code: str, order_id: str, phone: str, subtotal_cents: int) -> int: ...


@dataclass
class PlacedOrder:
    order: Order
    replayed: bool = False  # True when an Idempotency-Key matched an earlier request


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
            store_order(session, order)
            if idempotency_key is not None:  # a second request with the key collides here
                session.connection().execute(
                    insert(IdempotencyKey.__table__),
                    {
                        "key": idempotency_key,
                        "request_hash": request_hash,
                        "order_id": order.id,
                        "created_at": order.created_at,
                    },
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


class Sold(Protocol):
    """What an order line takes of its product: a Product, or a row of its sku and name."""

    sku: str
    name: str


def new_order(
    name: str, phone: str, lines: list[tuple[Sold, int, int]], order_id: str | None = None
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
    """The order (made by new_order), its lines, its story so far and its `order.created`
    event, in the caller's transaction.

    Every order of the shop is stored here, the web's and the flash-sale winners', so it
    writes with Core INSERTs (several times cheaper than the ORM's flush): at once for the
    web, with the batch's other orders in the ticket worker (messaging/batch_writes.py). The
    Order object stays as it was made, for the answer. A flash-sale winner's order names its
    sale, so the inventory takes its units from the sale's allocation, not from the stock.
    """
    row = {column: getattr(order, column) for column in ORDER_COLUMNS}
    batch_writes.insert(session, _orders, row)
    lines = [
        {column: getattr(line, column) for column in LINE_COLUMNS} | {"order_id": order.id}
        for line in order.lines
    ]
    batch_writes.insert(session, _lines, *lines)
    story = [
        {
            "order_id": order.id,
            "event": entry.event,
            "service": entry.service,
            "at": entry.at,
            "detail": entry.detail,
        }
        for entry in order.timeline
    ]
    batch_writes.insert(session, _story, *story)
    outbox.add_event(session, order_created(order, flash_sale_id), correlation_id=order.id)


_orders, _lines, _story = Order.__table__, OrderLine.__table__, TimelineEntry.__table__
_products = Product.__table__
PRODUCTS = select(_products.c.sku, _products.c.name, _products.c.price_cents).where(
    _products.c.sku.in_(bindparam("skus", expanding=True))
)
ORDER_COLUMNS = [column.name for column in _orders.columns]
LINE_COLUMNS = [column.name for column in _lines.columns if column.name != "order_id"]


def _reserve_coupon(coupons: Coupons, code: str, order: Order) -> int:
    try:
        return coupons.reserve(code, order.id, order.customer_phone, order.subtotal_cents)
    except CouponRefused as refusal:
        raise InvalidOrder(
            "The coupon is not valid.", [{"field": "coupon_code", "message": refusal.detail}]
        ) from None


def _products_for(session: Session, command: OrderIn) -> dict[str, Row]:
    """The order's products (sku, name, price) with one Core SELECT: every POST reads them."""
    skus = [line.sku for line in command.items]
    rows = session.connection().execute(PRODUCTS, {"skus": skus})
    products = {row.sku: row for row in rows}
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
