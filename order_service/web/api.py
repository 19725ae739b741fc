"""The JSON API of CONTRACT.md (health, products, orders, coupons): thin routes that parse,
call a use case, and answer. The flash-sale routes are in flash_api.py."""

from __future__ import annotations

import hashlib
import json

from flask import Blueprint, Response, jsonify
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from messaging.connection import BrokerUnavailable, close_quietly, open_connection
from order_service.commands import CouponIn, CouponQuoteQuery, OrderIn, ProductIn, StockIn
from order_service.errors import Conflict
from order_service.use_cases import orders, products
from order_service.web.auth import admin_only
from order_service.web.context import web
from order_service.web.inputs import idempotency_key, read_body, read_query
from order_service.web.openapi import Answer, documented
from order_service.web.problems import problem
from order_service.web.serializers import OrderOut, ProductOut

blueprint = Blueprint("api", __name__)


class Status(BaseModel):
    status: str


class StockAccepted(BaseModel):
    sku: str
    stock: int
    status: str


class Quote(BaseModel):
    valid: bool
    discount_cents: int
    reason: str | None = None


class Coupon(BaseModel):
    code: str
    amount_off_cents: int | None
    percent_off: int | None
    min_subtotal_cents: int
    expires_at: str | None
    customer_phone: str | None
    status: str


@blueprint.get("/healthz")
@documented("The web process is up.", Answer(200, "It is.", Status), tag="operations")
def healthz() -> Response:
    return jsonify(status="ok")


@blueprint.get("/readyz")
@documented(
    "Its database and the broker answer.",
    Answer(200, "Both answer.", Status),
    Answer(503, "Not ready; `detail` names what failed."),
    tag="operations",
)
def readyz() -> Response | tuple[Response, int]:
    failures = {}
    try:
        with web().engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as error:  # any failure means "not ready"
        failures["database"] = type(error).__name__
    try:
        close_quietly(open_connection(web().settings.amqp_url, "readyz", timeout=2))
    except BrokerUnavailable as error:
        failures["broker"] = str(error)
    if failures:
        detail = "Not ready: " + ", ".join(f"{what} ({why})" for what, why in failures.items())
        return problem(503, "Service Unavailable", detail), 503
    return jsonify(status="ready")


@blueprint.get("/api/products")
@documented("The catalog.", Answer(200, "Every product.", ProductOut, many=True))
def list_products() -> Response:
    with web().read_sessions() as session:
        return jsonify([ProductOut.of(p).json() for p in products.list_products(session)])


@blueprint.get("/api/products/<sku>")
@documented("One product.", Answer(200, "The product.", ProductOut), Answer(404, "No such sku."))
def get_product(sku: str) -> Response:
    with web().read_sessions() as session:
        return jsonify(ProductOut.of(products.get_product(session, sku)).json())


@blueprint.post("/api/products")
@documented(
    "Add a product (admin).",
    Answer(201, "Created.", ProductOut, headers=("Location",)),
    Answer(409, "A product with this sku exists."),
    body=ProductIn,
)
@admin_only
def create_product() -> tuple[Response, int, dict[str, str]]:
    command, _ = read_body(ProductIn)
    try:
        with web().sessions.begin() as session:
            product = products.create_product(session, command)
    except IntegrityError:  # created by a concurrent request a moment ago
        raise Conflict(f"A product with sku {command.sku!r} exists already.") from None
    return jsonify(ProductOut.of(product).json()), 201, {"Location": f"/api/products/{product.sku}"}


@blueprint.put("/api/products/<sku>/stock")
@documented(
    "Ask the inventory to set a sku's stock (admin); `available` follows.",
    Answer(202, "Accepted: the inventory will set it.", StockAccepted),
    Answer(404, "No such sku."),
    body=StockIn,
)
@admin_only
def set_stock(sku: str) -> tuple[Response, int]:
    command, _ = read_body(StockIn)
    with web().sessions.begin() as session:
        products.set_stock(session, sku, command)
    return jsonify(sku=sku, stock=command.stock, status="accepted"), 202


@blueprint.post("/api/orders")
@documented(
    "Place an order; it is PENDING until the inventory answers.",
    Answer(
        201,
        "Placed (or, with a known Idempotency-Key, placed before).",
        OrderOut,
        headers=("Location",),
    ),
    Answer(409, "This Idempotency-Key came with another body."),
    body=OrderIn,
    headers=[("Idempotency-Key", "Send the same key to retry safely: one order per key.")],
)
def place_order() -> tuple[Response, int, dict[str, str]]:
    key = idempotency_key()
    command, data = read_body(OrderIn)
    request_hash = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
    placed = orders.place_order(
        web().sessions,
        command,
        coupons=web().coupons,
        read_sessions=web().read_sessions,
        idempotency_key=key,
        request_hash=request_hash,
    )
    order = placed.order
    return jsonify(OrderOut.of(order).json()), 201, {"Location": f"/api/orders/{order.id}"}


@blueprint.get("/api/orders/<order_id>")
@documented(
    "One order, with its timeline.",
    Answer(200, "The order.", OrderOut),
    Answer(404, "No such order."),
)
def get_order(order_id: str) -> Response:
    with web().read_sessions() as session:
        return jsonify(OrderOut.of(orders.get_order(session, order_id)).json())


@blueprint.get("/api/coupons/<code>")
@documented(
    "What a coupon would take off (asks the coupon service; reserves nothing).",
    Answer(200, "The quote.", Quote),
    query=CouponQuoteQuery,
)
def quote_coupon(code: str) -> Response:
    query, _ = read_query(CouponQuoteQuery)
    return jsonify(web().coupons.quote(code, query.phone, query.subtotal_cents))


@blueprint.post("/api/coupons")
@documented(
    "Create a coupon (admin).",
    Answer(201, "Created.", Coupon, headers=("Location",)),
    Answer(409, "A coupon with this code exists."),
    body=CouponIn,
)
@admin_only
def create_coupon() -> tuple[Response, int, dict[str, str]]:
    command, _ = read_body(CouponIn)
    coupon = web().coupons.create(command.model_dump(mode="json", exclude_none=True))
    return jsonify(coupon), 201, {"Location": f"/api/coupons/{coupon['code']}"}
