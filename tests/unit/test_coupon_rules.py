from datetime import UTC, datetime, timedelta

import pytest

from coupon_service.models import Coupon
from coupon_service.rules import DESCRIBED, describe, discount_cents, refusal, reserved_by_another

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def reserved(until):
    return Coupon(code="ONCE", status="RESERVED", order_id="first", reserved_until=until)


def test_a_reservation_lapses_only_while_its_order_does_not_exist():
    assert reserved_by_another(reserved(NOW + timedelta(seconds=1)), "second", NOW)
    assert not reserved_by_another(reserved(NOW - timedelta(seconds=1)), "second", NOW)
    held = reserved(None)  # order.created arrived: no end until the outcome
    assert reserved_by_another(held, "second", NOW + timedelta(days=30))
    assert not reserved_by_another(held, "first", NOW)


def test_a_held_coupon_is_refused_to_another_order_with_a_reason():
    held = reserved(None)
    held.min_subtotal_cents = 0
    assert refusal(held, phone=None, subtotal_cents=100, now=NOW, order_id="second") == (
        "this coupon is being used by another order"
    )


def test_reserving_again_for_the_same_order_keeps_the_hold():
    from sqlalchemy.orm import Session

    from coupon_service.models import Base
    from coupon_service.rpc import reserve
    from messaging.database import make_engine

    engine = make_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as session, session.begin():
        held = reserved(None)  # order.created arrived for "first"
        held.min_subtotal_cents = 0
        session.add(held)
        session.flush()
        request = {"code": "ONCE", "order_id": "first", "phone": None, "subtotal_cents": 500}
        reserve(session, request, ttl_seconds=60)  # the same Idempotency-Key, sent twice
        assert held.reserved_until is None


def coupon(**changes):
    fields = {
        "code": "SAVE",
        "status": "ACTIVE",
        "percent_off": 10,
        "amount_off_cents": None,
        "min_subtotal_cents": 1000,
        "expires_at": NOW + timedelta(days=1),
        "customer_phone": None,
    }
    return Coupon(**{**fields, **changes})


@pytest.mark.parametrize(
    ("the_coupon", "phone", "subtotal", "reason"),
    [
        (None, None, 2000, "unknown coupon"),
        (coupon(status="REDEEMED"), None, 2000, "this coupon was used already"),
        (coupon(expires_at=NOW), None, 2000, "this coupon has expired"),
        (
            coupon(customer_phone="+4930111"),
            "+4930222",
            2000,
            "this coupon belongs to another customer",
        ),
        (
            coupon(customer_phone="+4930111"),
            None,
            2000,
            "this coupon belongs to one customer: give the phone number",
        ),
        (coupon(), None, 999, "this coupon needs a subtotal of at least 1000 cents"),
        (coupon(), None, 1000, None),
        (coupon(customer_phone="+4930111"), "+4930111", 1000, None),
        (coupon(expires_at=None), None, 5000, None),  # no end date
    ],
)
def test_each_reason_a_coupon_is_refused(the_coupon, phone, subtotal, reason):
    assert refusal(the_coupon, phone=phone, subtotal_cents=subtotal, now=NOW) == reason


def test_a_coupon_takes_off_its_percentage_or_its_amount_never_more_than_the_subtotal():
    assert discount_cents(coupon(percent_off=15), 1999) == 299  # rounded down
    assert discount_cents(coupon(percent_off=None, amount_off_cents=500), 2000) == 500
    assert discount_cents(coupon(percent_off=None, amount_off_cents=500), 300) == 300
    assert discount_cents(coupon(percent_off=None), 2000) == 0


def test_a_new_reward_is_described_as_a_stored_coupon_is():
    stored = coupon(percent_off=10, min_subtotal_cents=0, customer_phone="+4930111")
    row = {column: getattr(stored, column) for column in DESCRIBED + ("expires_at", "status")}
    assert describe(row) == describe(stored)
    assert describe(row)["expires_at"].endswith("Z")
