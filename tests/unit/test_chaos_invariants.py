"""The chaos run's checker can fail: hand-made end states, sound and broken, through the
same checks and report that `shop chaos` uses."""

import io
import json
from collections import Counter

import pytest

from shop.chaos.invariants import check_all
from shop.chaos.load import AcceptedOrder, Records
from shop.chaos.observe import Snapshot
from shop.chaos.report import Outcome
from shop.chaos.runner import print_report


def sound() -> tuple[Records, Snapshot, dict[str, set[str]]]:
    """Two orders (one with a coupon), one rejected, a sale with one winner, one stock set."""
    records = Records(starting_stock={"CHAOS-A": 10, "CHAOS-S": 30, "CHAOS-F": 5})
    records.coupons = ["C1"]
    records.stock_sets = [70]
    records.orders = [
        AcceptedOrder("o1", {"CHAOS-A": 2}, "C1"),
        AcceptedOrder("o2", {"CHAOS-S": 3}, None),
        AcceptedOrder("o3", {"CHAOS-A": 50}, None),
    ]
    orders = {"o1": "CONFIRMED", "o2": "CONFIRMED", "o3": "REJECTED", "w1": "CONFIRMED"}
    seen = Snapshot(
        orders=orders,
        order_lines={
            "o1": {"CHAOS-A": 2},
            "o2": {"CHAOS-S": 3},
            "o3": {"CHAOS-A": 50},
            "w1": {"CHAOS-F": 1},
        },
        order_coupons={"o1": "C1"},
        read_model_stock={"CHAOS-A": 8, "CHAOS-S": 67, "CHAOS-F": 4},
        sales={"s1": (2, 1)},
        tickets=[("s1", "WON", "+491", "w1"), ("s1", "LOST", "+492", None)],
        outcome_events=Counter(list(orders)),
        inventory_stock={"CHAOS-A": 8, "CHAOS-S": 67, "CHAOS-F": 4},
        decisions={"o1": "RESERVED", "o2": "RESERVED", "o3": "REJECTED", "w1": "RESERVED"},
        stock_history={"CHAOS-S": [(1, 30), (2, 70), (3, 67)]},
        coupons={"C1": ("REDEEMED", "o1")},
        outcome_sms=Counter(list(orders)),
        unsent={"order_outbox": 0},
        queue_depths={"inventory.orders": 0},
        dead_letters={"inventory.orders": {"poison-1": "-"}, "coupons.orders": {}},
    )
    return records, seen, {"inventory.orders": {"poison-1"}}


def failures(records, seen, poison) -> list[str]:
    return [check.name for check in check_all(records, seen, poison) if not check.holds]


def test_a_sound_end_state_passes_every_check():
    assert failures(*sound()) == []


def oversold(records, seen, poison):
    seen.sales["s1"] = (2, 3)


def won_twice(records, seen, poison):
    seen.tickets.append(("s1", "WON", "+491", "o2"))
    seen.sales["s1"] = (2, 2)


def coupon_twice(records, seen, poison):
    seen.order_coupons["o2"] = "C1"


def stock_lost(records, seen, poison):
    seen.inventory_stock["CHAOS-A"] = 7


def read_model_behind(records, seen, poison):
    seen.read_model_stock["CHAOS-F"] = 5


def unexplained_rise(records, seen, poison):
    seen.stock_history["CHAOS-S"] = [(1, 30), (2, 90), (3, 87)]
    seen.inventory_stock["CHAOS-S"] = seen.read_model_stock["CHAOS-S"] = 87


def pending(records, seen, poison):
    seen.orders["o2"] = "PENDING"


def two_sms(records, seen, poison):
    seen.outcome_sms["o3"] = 2


def no_decision(records, seen, poison):
    del seen.decisions["o3"]


def real_message_dead(records, seen, poison):
    seen.dead_letters["coupons.orders"] = {"a-real-event": "order.created"}


def poison_lost(records, seen, poison):
    poison["coupons.orders"] = {"poison-2"}


def backlog(records, seen, poison):
    seen.unsent["order_outbox"] = 1


@pytest.mark.parametrize(
    "break_it, broken",
    [
        (oversold, "flash sale: sold <= quota, one win per customer"),
        (won_twice, "flash sale: sold <= quota, one win per customer"),
        (coupon_twice, "single-use coupons used at most once"),
        (stock_lost, "stock: start - confirmed == available"),
        (read_model_behind, "stock: start - confirmed == available"),
        (unexplained_rise, "stock: CHAOS-S history explains available"),
        (pending, "every accepted order decided"),
        (two_sms, "one outcome SMS sent per order"),
        (no_decision, "one matching inventory decision per order"),
        (real_message_dead, "dead letters are exactly the injected poison"),
        (poison_lost, "dead letters are exactly the injected poison"),
        (backlog, "every outbox drained, every SMS sent"),
    ],
)
def test_a_broken_invariant_is_caught(break_it, broken):
    records, seen, poison = sound()
    break_it(records, seen, poison)
    assert broken in failures(records, seen, poison)


def outcome(checks) -> Outcome:
    return Outcome("sqlite", 60, checks, {"kill": 2}, {}, 3, {"CONFIRMED": 3}, {}, 4.2)


def test_a_broken_invariant_is_reported_and_exits_1():
    records, seen, poison = sound()
    oversold(records, seen, poison)
    out = io.StringIO()
    assert print_report(outcome(check_all(records, seen, poison)), False, out) == 1
    text = out.getvalue()
    assert "FAIL  flash sale" in text and "result: an invariant broke" in text


def test_a_sound_run_exits_0_and_its_json_says_so():
    out = io.StringIO()
    assert print_report(outcome(check_all(*sound())), True, out) == 0
    report = json.loads(out.getvalue())
    assert report["holds"] is True and report["faults"] == {"kill": 2}
