"""The JSON API of CONTRACT.md: thin routes that parse, call a handler, and answer."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Blueprint, Response, current_app, jsonify, request
from pydantic import BaseModel, ValidationError
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from messaging.connection import BrokerUnavailable, close_quietly, open_connection
from messaging.validation import field_errors
from order_service import handlers
from order_service.problems import ApiProblem, problem
from order_service.schemas import CouponIn, CouponQuoteQuery, OrderIn, ProductIn, StockIn
from order_service.views import order_json, product_json

blueprint = Blueprint("api", __name__)

Model = TypeVar("Model", bound=BaseModel)
MAX_IDEMPOTENCY_KEY = 200


def web():  # type: ignore[no-untyped-def]
    """The app's wiring (settings, engine, sessions), made by create_app()."""
    return current_app.extensions["shop"]


def read_body(model: type[Model]) -> tuple[Model, dict[str, Any]]:
    """The body as `model`: 415 if not JSON, 400 if malformed, 422 if invalid."""
    if not request.is_json:
        raise ApiProblem(
            415,
            "Unsupported Media Type",
            "Send the body as JSON with the header Content-Type: application/json.",
        )
    raw = request.get_data(cache=True)
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ApiProblem(400, "Malformed JSON", f"The body is not valid JSON: {error}.") from None
    try:
        return model.model_validate(data), data
    except ValidationError as error:
        raise ApiProblem(
            422, "Invalid request", "The request has invalid fields.", field_errors(error)
        ) from None


def admin_only(route: Callable[..., Response]) -> Callable[..., Response]:
    @wraps(route)
    def guarded(*args: Any, **kwargs: Any) -> Response:
        header = request.headers.get("Authorization", "")
        if not header:
            raise ApiProblem(
                401,
                "Unauthorized",
                "This endpoint needs Authorization: Bearer <admin token>.",
                headers={"WWW-Authenticate": "Bearer"},
            )
        scheme, _, token = header.partition(" ")
        expected = web().settings.admin_token
        if (
            scheme.lower() != "bearer"
            or not expected
            or not hmac.compare_digest(token.strip().encode(), expected.encode())
        ):
            raise ApiProblem(403, "Forbidden", "The admin token is not valid.")
        return route(*args, **kwargs)

    return guarded


@blueprint.get("/healthz")
def healthz() -> Response:
    return jsonify(status="ok")


@blueprint.get("/readyz")
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
def list_products() -> Response:
    with web().read_sessions() as session:
        return jsonify([product_json(p) for p in handlers.list_products(session)])


@blueprint.get("/api/products/<sku>")
def get_product(sku: str) -> Response:
    with web().read_sessions() as session:
        return jsonify(product_json(handlers.get_product(session, sku)))


@blueprint.post("/api/products")
@admin_only
def create_product() -> tuple[Response, int, dict[str, str]]:
    command, _ = read_body(ProductIn)
    try:
        with web().sessions.begin() as session:
            product = handlers.create_product(session, command)
    except IntegrityError:  # created by a concurrent request a moment ago
        raise handlers.Conflict(f"A product with sku {command.sku!r} exists already.") from None
    return jsonify(product_json(product)), 201, {"Location": f"/api/products/{product.sku}"}


@blueprint.put("/api/products/<sku>/stock")
@admin_only
def set_stock(sku: str) -> tuple[Response, int]:
    command, _ = read_body(StockIn)
    with web().sessions.begin() as session:
        handlers.set_stock(session, sku, command)
    return jsonify(sku=sku, stock=command.stock, status="accepted"), 202


@blueprint.post("/api/orders")
def place_order() -> tuple[Response, int, dict[str, str]]:
    key = idempotency_key()
    command, data = read_body(OrderIn)
    request_hash = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
    placed = handlers.place_order(
        web().sessions,
        command,
        coupons=web().coupons,
        read_sessions=web().read_sessions,
        idempotency_key=key,
        request_hash=request_hash,
    )
    order = placed.order
    return jsonify(order_json(order)), 201, {"Location": f"/api/orders/{order.id}"}


@blueprint.get("/api/orders/<order_id>")
def get_order(order_id: str) -> Response:
    with web().read_sessions() as session:
        return jsonify(order_json(handlers.get_order(session, order_id)))


def idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable():
        raise ApiProblem(
            400,
            "Bad Idempotency-Key",
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable characters.",
        )
    return key


@blueprint.get("/api/coupons/<code>")
def quote_coupon(code: str) -> Response:
    query, _ = read_query(CouponQuoteQuery)
    return jsonify(web().coupons.quote(code, query.phone, query.subtotal_cents))


@blueprint.post("/api/coupons")
@admin_only
def create_coupon() -> tuple[Response, int, dict[str, str]]:
    command, _ = read_body(CouponIn)
    coupon = web().coupons.create(command.model_dump(mode="json", exclude_none=True))
    return jsonify(coupon), 201, {"Location": f"/api/coupons/{coupon['code']}"}


def read_query(model: type[Model]) -> tuple[Model, dict[str, Any]]:
    """The query string as `model`: 422 naming the parameter when it is invalid."""
    data = request.args.to_dict()
    try:
        return model.model_validate(data), data
    except ValidationError as error:
        raise ApiProblem(
            422, "Invalid request", "The query has invalid parameters.", field_errors(error)
        ) from None
