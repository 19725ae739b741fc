"""The SMS texts: short, and saying what happened."""

from notification_service.templates import TEMPLATES

ORDER = "5b0c7e0e-6f1e-4c55-9a34-2f6d1f0c9a11"


def test_a_confirmation_names_the_order_and_its_total():
    text = TEMPLATES["order.confirmed"]({"order_id": ORDER, "total_cents": 905})
    assert text == "Your order 5b0c7e0e is confirmed. Total 9.05. Thank you!"


def test_a_rejection_says_why_or_that_it_could_not_be_fulfilled():
    text = TEMPLATES["order.rejected"]({"order_id": ORDER, "reason": "not enough TEA-1"})
    assert text == "Sorry, your order 5b0c7e0e was not accepted: not enough TEA-1."
    assert TEMPLATES["order.rejected"]({"order_id": ORDER}).endswith("could not be fulfilled.")


def test_a_reward_coupon_says_what_it_takes_off():
    assert "takes 10% off" in TEMPLATES["coupon.issued"]({"code": "T-1", "percent_off": 10})
    assert "takes 2.50 off" in TEMPLATES["coupon.issued"]({"code": "T-1", "amount_off_cents": 250})
