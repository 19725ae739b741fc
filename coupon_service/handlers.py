"""The `coupons.orders` events: an order's creation turns its coupon's reservation into a
hold, its outcome redeems or releases the coupon, and a confirmed order earns the customer
a reward coupon."""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta

from pydantic import BaseModel
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from coupon_service import rules
from coupon_service.events import CouponIssued, CouponRedeemed, CouponReleased, outbox
from coupon_service.models import Coupon
from messaging import batch_reads, batch_writes
from messaging.envelope import Envelope
from messaging.outbox import utcnow
from messaging.routes import Route, Routes

log = logging.getLogger(__name__)

REWARD_PERCENT_OFF = 10
REWARD_VALID_DAYS = 30


class Customer(BaseModel):
    name: str
    phone: str


class OrderOutcome(BaseModel):
    order_id: str
    customer: Customer
    coupon_code: str | None = None


def on_order_created(session: Session, envelope: Envelope) -> None:
    """The order exists: its coupon stays reserved until the outcome, however long."""
    order = envelope.body_as(OrderOutcome)
    coupon = _reserved_for(session, order)
    if coupon is not None:
        coupon.reserved_until = None
    elif order.coupon_code:
        log.error(
            "order %s was created with coupon %s after its reservation lapsed; "
            "COUPON_RESERVATION_TTL_SECONDS must exceed the longest delay of order.created",
            order.order_id,
            order.coupon_code,
            extra={"correlation_id": order.order_id},
        )


def on_order_confirmed(session: Session, envelope: Envelope) -> None:
    order = envelope.body_as(OrderOutcome)
    coupon = _reserved_for(session, order)
    if coupon is not None:
        coupon.status = "REDEEMED"
        outbox.add_event(
            session,
            CouponRedeemed(order_id=order.order_id, code=coupon.code),
            correlation_id=order.order_id,
        )
    _reward(session, order)


def on_order_rejected(session: Session, envelope: Envelope) -> None:
    order = envelope.body_as(OrderOutcome)
    coupon = _reserved_for(session, order)
    if coupon is None:
        return
    coupon.status, coupon.order_id, coupon.reserved_until = "ACTIVE", None, None
    outbox.add_event(
        session,
        CouponReleased(order_id=order.order_id, code=coupon.code),
        correlation_id=order.order_id,
    )


def _reserved_for(session: Session, order: OrderOutcome) -> Coupon | None:
    if not order.coupon_code:
        return None
    coupon = session.get(Coupon, order.coupon_code, with_for_update=True)
    if coupon is None or coupon.order_id != order.order_id or coupon.status != "RESERVED":
        log.warning(
            "coupon %s is not reserved for order %s; nothing to settle",
            order.coupon_code,
            order.order_id,
            extra={"correlation_id": order.order_id},
        )
        return None
    return coupon


_coupons = Coupon.__table__
# Every confirmed order is rewarded here: Core statements, built once, on the session's
# connection (several times cheaper than the ORM's query and flush).
_rewarded = _coupons.c.issued_for_order
REWARDS = batch_reads.DoneOnce(
    "coupons: rewarded orders",
    select(_rewarded).where(_rewarded.in_(bindparam("ids", expanding=True))),
)


def read_rewards(session: Session, orders: list[OrderOutcome]) -> None:
    """Which of the batch's confirmed orders earned their reward before: one SELECT."""
    REWARDS.read_ahead(session, [order.order_id for order in orders])


def _reward(session: Session, order: OrderOutcome) -> None:
    if REWARDS.done_before(session, order.order_id):
        return
    now = utcnow()
    reward = {
        "code": f"THANKS-{secrets.token_hex(6).upper()}",
        "amount_off_cents": None,
        "percent_off": REWARD_PERCENT_OFF,
        "min_subtotal_cents": 0,
        "expires_at": now + timedelta(days=REWARD_VALID_DAYS),
        "customer_phone": order.customer.phone,
        "status": "ACTIVE",
        "order_id": None,
        "reserved_until": None,
        "issued_for_order": order.order_id,
        "created_at": now,
    }
    # With the batch's other rewards in one INSERT before the commit (a second copy of this
    # order.confirmed later in the batch finds it rewarded in what was read ahead; without
    # a read-ahead it would break issued_for_order's unique key, and the batch would be
    # done again one message at a time, where REWARDS sees the first).
    batch_writes.insert(session, _coupons, reward)
    outbox.add_event(
        session,
        CouponIssued(order_id=order.order_id, **rules.describe(reward)),
        correlation_id=order.order_id,
    )


ROUTES = Routes(
    Route("order.created", OrderOutcome, on_order_created),
    Route("order.confirmed", OrderOutcome, on_order_confirmed, read_rewards),
    Route("order.rejected", OrderOutcome, on_order_rejected),
)
