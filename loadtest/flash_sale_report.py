"""The report of `shop loadtest flash-sale`: the numbers of the burst, then the invariants.

`checks(outcome)` says, for what the run saw, whether each of these holds:
won == min(quota, distinct accepted customers), no customer won twice, no admitted ticket
left undecided, the stock never negative, every won order settled, and the sale's `sold`
equals the tickets won. `report(outcome)` is the text (counts, requests/s, latency
p50/p95/p99 by nearest rank, status codes) and whether they all hold.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from loadtest.stats import percentile

if TYPE_CHECKING:
    from loadtest.flash_sale import Outcome

DECIDED = ("WON", "LOST")  # a ticket's final states
SETTLED = ("CONFIRMED", "REJECTED")  # an order's


@dataclass(frozen=True)
class Check:
    name: str
    holds: bool
    detail: str


def checks(outcome: Outcome) -> list[Check]:
    accepted_customers = {t.phone for t in outcome.tickets}
    won = [t for t in outcome.tickets if t.status == "WON"]
    expected = min(outcome.sale.quota, len(accepted_customers))
    wins = Counter(t.phone for t in won)
    twice = sorted(phone for phone, n in wins.items() if n > 1)
    undecided = [t for t in outcome.tickets if t.status not in DECIDED]
    unsettled = [o for o, status in outcome.orders.items() if status not in SETTLED]
    missing_orders = [t for t in won if not t.order_id]
    sold = outcome.sale_after.get("sold") if outcome.sale_after else None
    lowest = outcome.stock_lowest
    return [
        Check(
            "won == min(quota, distinct accepted customers)",
            len(won) == expected,
            f"{len(won)} == min({outcome.sale.quota}, {len(accepted_customers)})",
        ),
        Check(
            "no customer won twice",
            not twice,
            f"{len(twice)} customers won twice" + (f": {', '.join(twice[:5])}" if twice else ""),
        ),
        Check(
            "no admitted ticket left undecided",
            not undecided,
            f"{len(undecided)} of {len(outcome.tickets)} still QUEUED",
        ),
        Check(
            "stock never negative",
            lowest is not None and lowest >= 0,
            "could not read GET /api/products/" + outcome.sale.sku
            if lowest is None
            else f"lowest available seen {lowest}",
        ),
        Check(
            "every won order settled",
            not unsettled and not missing_orders,
            f"{len(unsettled) + len(missing_orders)} of {len(won)} not CONFIRMED/REJECTED",
        ),
        Check(
            "the sale's sold == won",
            sold == len(won),
            f"sold {sold if sold is not None else '?'}, won {len(won)}",
        ),
    ]


def report(outcome: Outcome) -> tuple[str, bool]:
    """The report's text, and whether every invariant holds."""
    options, sale = outcome.options, outcome.sale
    statuses: Counter[str] = Counter(
        str(status) for purchase in outcome.purchases for status in purchase.statuses
    )
    requests = sum(statuses.values())
    latencies = [s * 1000 for p in outcome.purchases for s in p.seconds]
    per_second = requests / outcome.burst_seconds if outcome.burst_seconds > 0 else 0.0
    won = sum(t.status == "WON" for t in outcome.tickets)
    lost = sum(t.status == "LOST" for t in outcome.tickets)
    order_states = Counter(outcome.orders.values())
    not_sent = options.customers - len(outcome.purchases)
    retried = sum(len(p.statuses) > 1 for p in outcome.purchases)
    codes = ", ".join(f"{code}: {n}" for code, n in sorted(statuses.items()))
    found = checks(outcome)
    lines = [
        f"flash-sale load test at {options.url}",
        f"  sale {sale.id} of {sale.sku}, quota {sale.quota}",
        f"  customers {options.customers}, concurrency {options.concurrency}"
        + (f", not sent before the deadline {not_sent}" if not_sent else ""),
        f"  purchase requests {requests} in {outcome.burst_seconds:.2f} s: "
        f"{per_second:.1f} requests/s ({retried} retried after 429)",
        f"  latency p50 {percentile(latencies, 0.50):.1f} ms, "
        f"p95 {percentile(latencies, 0.95):.1f} ms, p99 {percentile(latencies, 0.99):.1f} ms",
        f"  status codes: {codes or 'none'}",
        f"  accepted {len(outcome.tickets)}, won {won}, lost {lost}, "
        f"undecided {len(outcome.tickets) - won - lost}",
        f"  orders confirmed {order_states['CONFIRMED']}, rejected {order_states['REJECTED']}, "
        f"pending {len(outcome.orders) - order_states['CONFIRMED'] - order_states['REJECTED']}",
        f"  stock of {sale.sku}: available {outcome.stock_last} at the end, "
        f"lowest seen {outcome.stock_lowest}",
        "invariants:",
        *(f"  {'ok  ' if c.holds else 'FAIL'}  {c.name} ({c.detail})" for c in found),
    ]
    holds = all(c.holds for c in found)
    lines.append("result: every invariant holds" if holds else "result: an invariant broke")
    return "\n".join(lines), holds
