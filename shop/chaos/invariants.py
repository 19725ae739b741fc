"""What must be true once the shop has settled, checked on plain data (no I/O here).

Each check returns a `Check`: its name, whether it holds, and a short detail (the first
few offenders when it fails). The stock rule, in full:

- A sku only orders change (the ledger skus, and the flash-sale skus once their sales have
  ended): starting stock - the quantities of its CONFIRMED orders == `available`, in the
  inventory and in the order service's read model.
- The stock-set sku: the inventory's own history of it (its `inventory.stock_changed`
  events, version by version) must explain the end. The run sets ever higher values, each
  above any stock before it, so in that history a rise is a stock set and must be a value
  the run sent, and a fall is a reservation. Versions run 1, 2, 3... without a gap or a
  repeat, the falls add up to the quantities of its CONFIRMED orders, and the last value
  is `available` in the inventory and in the read model.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from shop.chaos.load import STOCK_SET_SKU, Records
from shop.chaos.observe import Snapshot

DECIDED = ("CONFIRMED", "REJECTED")
DECISION_FOR = {"CONFIRMED": "RESERVED", "REJECTED": "REJECTED"}
SHOWN = 3  # offenders named in a failing check's detail


@dataclass(frozen=True)
class Check:
    name: str
    holds: bool
    detail: str


def _offenders(items: list[str]) -> str:
    shown = ", ".join(items[:SHOWN])
    return f"{len(items)}: {shown}" + (", ..." if len(items) > SHOWN else "")


def _check(name: str, offenders: list[str], fine: str) -> Check:
    return Check(name, not offenders, fine if not offenders else _offenders(offenders))


def confirmed_quantity(seen: Snapshot, sku: str) -> int:
    return sum(
        seen.order_lines.get(order_id, {}).get(sku, 0)
        for order_id, status in seen.orders.items()
        if status == "CONFIRMED"
    )


def accepted_orders_decided(records: Records, seen: Snapshot) -> Check:
    stuck = [o.id for o in records.orders if seen.orders.get(o.id) not in DECIDED]
    fine = f"all {len(records.orders)} orders answered 201 are CONFIRMED or REJECTED"
    return _check("every accepted order decided", stuck, fine)


def ledger_stock(records: Records, seen: Snapshot) -> Check:
    wrong = []
    for sku, start in records.starting_stock.items():
        if sku == STOCK_SET_SKU:
            continue
        expected = start - confirmed_quantity(seen, sku)
        found = (seen.inventory_stock.get(sku), seen.read_model_stock.get(sku))
        if found != (expected, expected):
            wrong.append(f"{sku} expected {expected}, inventory {found[0]}, read model {found[1]}")
    fine = "starting stock - confirmed == available, for every sku without stock sets"
    return _check("stock: start - confirmed == available", wrong, fine)


def stock_set_history(records: Records, seen: Snapshot) -> Check:
    history = seen.stock_history.get(STOCK_SET_SKU, [])
    versions = [version for version, _ in history]
    problems = []
    if versions != list(range(1, len(versions) + 1)):
        problems.append(f"versions not 1..n: {versions[:10]}")
    taken, sets = 0, 0
    for (_, before), (_, after) in zip(history, history[1:], strict=False):
        if after > before:
            sets += 1
            if after not in records.stock_sets:
                problems.append(f"a rise to {after}, which no stock set sent")
        else:
            taken += before - after
    confirmed = confirmed_quantity(seen, STOCK_SET_SKU)
    if taken != confirmed:
        problems.append(f"history takes {taken} units, confirmed orders hold {confirmed}")
    last = history[-1][1] if history else None
    found = (seen.inventory_stock.get(STOCK_SET_SKU), seen.read_model_stock.get(STOCK_SET_SKU))
    if found != (last, last):
        problems.append(f"last value {last}, inventory {found[0]}, read model {found[1]}")
    fine = f"{sets} stock sets and {taken} units to confirmed orders explain available {last}"
    return _check(f"stock: {STOCK_SET_SKU} history explains available", problems, fine)


def flash_sales(seen: Snapshot) -> Check:
    problems = []
    for sale_id, (quota, sold) in seen.sales.items():
        won = [t for t in seen.tickets if t[0] == sale_id and t[1] == "WON"]
        if sold > quota or len(won) != sold:
            problems.append(f"sale {sale_id}: quota {quota}, sold {sold}, won {len(won)}")
        twice = [phone for phone, n in Counter(t[2] for t in won).items() if n > 1]
        problems += [f"sale {sale_id}: {phone} won twice" for phone in twice]
    sold = ", ".join(f"{sold} of {quota}" for quota, sold in seen.sales.values())
    return _check("flash sale: sold <= quota, one win per customer", problems, f"sold {sold}")


def won_orders_confirmed(seen: Snapshot) -> Check:
    won = [t for t in seen.tickets if t[1] == "WON"]
    wrong = [
        f"{t[3]} {seen.orders.get(t[3] or '')}"
        for t in won
        if seen.orders.get(t[3] or "") != "CONFIRMED"
    ]
    return _check("every WON ticket's order CONFIRMED", wrong, f"{len(won)} won, all confirmed")


def coupons_within_limit(records: Records, seen: Snapshot) -> Check:
    problems = []
    for code in records.coupons:
        users = [
            o for o, c in seen.order_coupons.items() if c == code and seen.orders[o] == "CONFIRMED"
        ]
        status, redeemed_by = seen.coupons.get(code, ("missing", None))
        if len(users) > 1:
            problems.append(f"{code} used by {len(users)} confirmed orders")
        elif users and (status, redeemed_by) != ("REDEEMED", users[0]):
            problems.append(f"{code} confirmed on {users[0]} but {status} for {redeemed_by}")
    used = sum(status == "REDEEMED" for status, _ in seen.coupons.values())
    return _check(
        "single-use coupons used at most once",
        problems,
        f"{used} of {len(records.coupons)} redeemed",
    )


def one_decision_each(seen: Snapshot) -> Check:
    wrong = [
        f"{order_id} {status}, inventory {seen.decisions.get(order_id)}"
        for order_id, status in seen.orders.items()
        if seen.decisions.get(order_id) != DECISION_FOR.get(status)
    ]
    return _check("one matching inventory decision per order", wrong, f"{len(seen.orders)} orders")


def one_outcome_each(seen: Snapshot) -> Check:
    wrong = [
        f"{o} has {seen.outcome_events[o]}" for o in seen.orders if seen.outcome_events[o] != 1
    ]
    return _check("one outcome event per order", wrong, f"{len(seen.orders)} orders")


def one_sms_each(seen: Snapshot) -> Check:
    wrong = [f"{o} has {seen.outcome_sms[o]}" for o in seen.orders if seen.outcome_sms[o] != 1]
    return _check("one outcome SMS sent per order", wrong, f"{sum(seen.outcome_sms.values())} SMS")


def outboxes_drained(seen: Snapshot) -> Check:
    wrong = [f"{table} {n}" for table, n in seen.unsent.items() if n]
    return _check("every outbox drained, every SMS sent", wrong, "0 unsent rows")


def queues_drained(seen: Snapshot) -> Check:
    wrong = [f"{queue} {n}" for queue, n in seen.queue_depths.items() if n]
    return _check("every work queue drained", wrong, "0 ready messages")


def dead_letters_only_poison(poison: dict[str, set[str]], seen: Snapshot) -> Check:
    problems = []
    for queue, letters in seen.dead_letters.items():
        expected = poison.get(queue, set())
        others = Counter(kind for message_id, kind in letters.items() if message_id not in expected)
        problems += [f"{queue}.dead holds {n} {kind}" for kind, n in sorted(others.items())]
        problems += [f"{queue}.dead lacks poison {m}" for m in sorted(expected - set(letters))]
    injected = sum(len(ids) for ids in poison.values())
    return _check("dead letters are exactly the injected poison", problems, f"{injected} poison")


def check_all(records: Records, seen: Snapshot, poison: dict[str, set[str]]) -> list[Check]:
    return [
        accepted_orders_decided(records, seen),
        ledger_stock(records, seen),
        stock_set_history(records, seen),
        flash_sales(seen),
        won_orders_confirmed(seen),
        coupons_within_limit(records, seen),
        one_decision_each(seen),
        one_outcome_each(seen),
        one_sms_each(seen),
        outboxes_drained(seen),
        queues_drained(seen),
        dead_letters_only_poison(poison, seen),
    ]
