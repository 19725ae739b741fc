"""The `coupons.rpc` request handlers: quote, reserve for an order, create.

Each takes a session and the request body and returns the reply's fields; a refusal is an
RpcError whose `refused` says what kind it is: "invalid" (the request or the coupon does not
do) or "exists" (a coupon with that code exists already). The order service decides what
its callers are answered.
`handlers(ttl)` builds the table the RPC server serves, with the reservation TTL setting.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from functools import partial
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)
from sqlalchemy.orm import Session

from coupon_service import rules
from coupon_service.models import Coupon
from messaging.outbox import utcnow
from messaging.rpc import RpcError, RpcHandler
from messaging.validation import field_errors

Code = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]
Cents = Annotated[int, Field(strict=True, ge=0)]


class QuoteRequest(BaseModel):
    code: str
    phone: str | None = None
    subtotal_cents: Cents


class ReserveRequest(QuoteRequest):
    order_id: str


class CreateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: Code | None = None
    amount_off_cents: Annotated[int, Field(strict=True, ge=1)] | None = None
    percent_off: Annotated[int, Field(strict=True, ge=1, le=100)] | None = None
    min_subtotal_cents: Cents = 0
    expires_at: datetime | None = None
    customer_phone: str | None = None

    @model_validator(mode="after")
    def one_kind_of_discount(self) -> CreateRequest:
        if (self.amount_off_cents is None) == (self.percent_off is None):
            raise ValueError("give exactly one of amount_off_cents and percent_off")
        return self


def _parse(model: type[BaseModel], request: dict[str, Any]) -> Any:
    try:
        return model.model_validate(request)
    except ValidationError as error:
        raise RpcError("invalid request", refused="invalid", errors=field_errors(error)) from None


def quote(session: Session, request: dict[str, Any]) -> dict[str, Any]:
    asked = _parse(QuoteRequest, request)
    coupon = session.get(Coupon, asked.code)
    reason = rules.refusal(
        coupon, phone=asked.phone, subtotal_cents=asked.subtotal_cents, now=utcnow()
    )
    if reason is not None or coupon is None:
        return {"valid": False, "discount_cents": 0, "reason": reason}
    return {"valid": True, "discount_cents": rules.discount_cents(coupon, asked.subtotal_cents)}


def reserve(session: Session, request: dict[str, Any], *, ttl_seconds: float) -> dict[str, Any]:
    asked = _parse(ReserveRequest, request)
    coupon = session.get(Coupon, asked.code, with_for_update=True)
    now = utcnow()
    reason = rules.refusal(
        coupon,
        phone=asked.phone,
        subtotal_cents=asked.subtotal_cents,
        now=now,
        order_id=asked.order_id,
    )
    if reason is not None or coupon is None:
        raise RpcError(reason or "unknown coupon", refused="invalid")
    held = coupon.status == "RESERVED" and coupon.order_id == asked.order_id
    if not (held and coupon.reserved_until is None):  # a hold (order.created came) stays one
        coupon.reserved_until = now + timedelta(seconds=ttl_seconds)  # until order.created
    coupon.status = "RESERVED"
    coupon.order_id = asked.order_id
    return {
        "code": coupon.code,
        "discount_cents": rules.discount_cents(coupon, asked.subtotal_cents),
    }


def create(session: Session, request: dict[str, Any]) -> dict[str, Any]:
    asked = _parse(CreateRequest, request)
    code = asked.code or f"SAVE-{secrets.token_hex(6).upper()}"
    if session.get(Coupon, code) is not None:
        raise RpcError(f"a coupon with code {code!r} exists already", refused="exists")
    coupon = Coupon(
        code=code,
        amount_off_cents=asked.amount_off_cents,
        percent_off=asked.percent_off,
        min_subtotal_cents=asked.min_subtotal_cents,
        expires_at=asked.expires_at,
        customer_phone=asked.customer_phone,
        status="ACTIVE",
    )
    session.add(coupon)
    return {"coupon": rules.describe(coupon)}


def handlers(reservation_ttl_seconds: float) -> dict[str, RpcHandler]:
    """The RPC server's handler per request type."""
    return {
        "coupon.quote": quote,
        "coupon.reserve": partial(reserve, ttl_seconds=reservation_ttl_seconds),
        "coupon.create": create,
    }


# What each request's body must match: what the RPC server reads from `coupons.rpc`.
REQUESTS = {
    "coupon.quote": QuoteRequest,
    "coupon.reserve": ReserveRequest,
    "coupon.create": CreateRequest,
}
