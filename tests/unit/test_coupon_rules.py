from datetime import UTC, datetime, timedelta

from coupon_service.models import Coupon
from coupon_service.rules import refusal, reserved_by_another

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
