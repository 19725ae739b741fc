"""What makes a coupon usable by a customer for a subtotal, and what it takes off.

A reservation (made over RPC while an order is being placed) lasts for the reservation TTL
(`COUPON_RESERVATION_TTL_SECONDS`) only until the order's `order.created` arrives: from
then on it holds, with no end (`reserved_until` is None), until the order's outcome
redeems or releases it. So a coupon can lapse only for an order that was never created
(its request failed after the reservation), never for an order still waiting on, say, an
inventory outage.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from functools import partial
from typing import Any

from coupon_service.models import Coupon
from messaging.database import as_utc, iso


def reserved_by_another(coupon: Coupon, order_id: str | None, now: datetime) -> bool:
    if coupon.status != "RESERVED" or coupon.order_id == order_id:
        return False
    until = as_utc(coupon.reserved_until)
    return until is None or until > now  # held for a created order, or not yet lapsed


def refusal(
    coupon: Coupon | None,
    *,
    phone: str | None,
    subtotal_cents: int,
    now: datetime,
    order_id: str | None = None,
) -> str | None:
    """Why the coupon cannot be used, or None when it can."""
    if coupon is None:
        return "unknown coupon"
    if coupon.status == "REDEEMED":
        return "this coupon was used already"
    if reserved_by_another(coupon, order_id, now):
        return "this coupon is being used by another order"
    expires = as_utc(coupon.expires_at)
    if expires is not None and expires <= now:
        return "this coupon has expired"
    if coupon.customer_phone and phone and coupon.customer_phone != phone:
        return "this coupon belongs to another customer"
    if coupon.customer_phone and not phone:
        return "this coupon belongs to one customer: give the phone number"
    if subtotal_cents < coupon.min_subtotal_cents:
        return f"this coupon needs a subtotal of at least {coupon.min_subtotal_cents} cents"
    return None


def discount_cents(coupon: Coupon, subtotal_cents: int) -> int:
    if coupon.amount_off_cents is not None:
        return min(coupon.amount_off_cents, subtotal_cents)
    return subtotal_cents * (coupon.percent_off or 0) // 100


DESCRIBED = ("code", "amount_off_cents", "percent_off", "min_subtotal_cents", "customer_phone")


def describe(coupon: Coupon | Mapping[str, Any]) -> dict[str, object]:
    """What the events and the RPC's answers tell of a coupon: a Coupon, or the row of a new
    one that a handler inserts with Core."""
    value = coupon.__getitem__ if isinstance(coupon, Mapping) else partial(getattr, coupon)
    described = {field: value(field) for field in DESCRIBED}
    return {**described, "expires_at": iso(value("expires_at")), "status": value("status")}
