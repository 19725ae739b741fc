"""The events the coupon service announces, all through its outbox."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from coupon_service.models import CouponOutbox
from messaging.events import Event, with_example
from messaging.outbox import Outbox

SERVICE = "coupon_service"
outbox = Outbox(CouponOutbox, app_id=SERVICE)

ORDER_ID = "5b0c7e0e-6f1e-4c55-9a34-2f6d1f0c9a11"


class CouponRedeemed(Event):
    TYPE = "coupon.redeemed"
    SUMMARY = "The order was confirmed: its coupon is used for good."
    model_config = with_example(order_id=ORDER_ID, code="WELCOME")
    order_id: str
    code: str


class CouponReleased(Event):
    TYPE = "coupon.released"
    SUMMARY = "The order was rejected: its coupon may be used again."
    model_config = with_example(order_id=ORDER_ID, code="WELCOME")
    order_id: str
    code: str


class CouponIssued(Event):
    TYPE = "coupon.issued"
    SUMMARY = "A reward coupon for the customer of a confirmed order."
    model_config = with_example(
        order_id=ORDER_ID,
        code="THANKS-1A2B3C4D5E6F",
        amount_off_cents=None,
        percent_off=10,
        min_subtotal_cents=0,
        expires_at="2027-01-01T12:00:00Z",
        customer_phone="+4930123456",
        status="ACTIVE",
    )
    order_id: str | None
    code: str
    amount_off_cents: Annotated[int, Field(ge=1)] | None
    percent_off: Annotated[int, Field(ge=1, le=100)] | None
    min_subtotal_cents: Annotated[int, Field(ge=0)]
    expires_at: str | None
    customer_phone: str  # a reward is the customer's own
    status: str

    @model_validator(mode="after")
    def one_kind_of_discount(self) -> CouponIssued:
        if (self.amount_off_cents is None) == (self.percent_off is None):
            raise ValueError("a coupon takes off either an amount or a percentage")
        return self


PUBLISHED = (CouponRedeemed, CouponReleased, CouponIssued)
