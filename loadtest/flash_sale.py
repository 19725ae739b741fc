"""`shop loadtest flash-sale`: a burst of distinct customers at one flash sale, then a check.

Everything goes through the shop's HTTP API (CONTRACT.md), at the one URL given:

1. GET /healthz (nothing answers: exit 2 with one line), then create a product with a
   unique sku and `stock = quota`, and a sale of it, with the admin token (refused: exit 2).
   (loadtest/flash_sale_setup.py)
2. The burst: N distinct customers (one phone each), taken by a crowd of C threads, each
   with its own keep-alive connection (loadtest/crowd.py), POST a purchase once; a 429 is
   retried once after its Retry-After. Bounded in count (MAX_CUSTOMERS, MAX_CONCURRENCY)
   and in time.
3. Every admitted ticket (202) is polled until it is WON or LOST, up to a deadline, by the
   same crowd; a round of polls stops at the first chunk where nothing changed.
4. Every won order is polled until it is CONFIRMED or REJECTED, up to a deadline.
5. The report (loadtest/flash_sale_report.py): requests per second, purchase latency
   p50/p95/p99, counts per status code, accepted, won, lost, orders confirmed, and the
   invariants: won == min(quota, distinct accepted customers), no customer won twice, no
   admitted ticket left undecided, stock never negative (GET /api/products/{sku} is sampled
   all along), every won order settled, and the sale's `sold` equals the tickets won.
   Exit 0 when they all hold, 1 when one breaks.

Progress goes to stderr: a bar redrawn in place on a terminal, otherwise one line per 10 %.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any, TypeVar

from loadtest.client import HTTP_ERRORS, Http
from loadtest.crowd import Crowd
from loadtest.flash_sale_report import DECIDED, SETTLED, report
from loadtest.flash_sale_setup import Sale, SetupFailed, StockSampler, sale_view, setup
from loadtest.progress import Progress

MAX_CUSTOMERS = 100_000
MAX_CONCURRENCY = 256
RETRY_AFTER_CAP = 10.0  # seconds: a 429 asking for longer is still retried after this
POLL_INTERVAL = 0.2
FINAL_SWEEP_SECONDS = 15.0  # after a polling deadline: one last look at what is left

T = TypeVar("T")


@dataclass(frozen=True)
class Options:
    url: str
    admin_token: str
    customers: int
    concurrency: int
    quota: int
    burst_timeout: float = 300.0
    decide_timeout: float = 120.0
    settle_timeout: float = 120.0


@dataclass
class Customer:
    number: int
    name: str
    phone: str


@dataclass
class Purchase:
    customer: Customer
    statuses: list[int | str] = field(default_factory=list)  # one per request; "error"
    seconds: list[float] = field(default_factory=list)
    ticket_id: str | None = None
    status_url: str | None = None


@dataclass
class Ticket:
    ticket_id: str
    phone: str
    status_url: str
    status: str = "QUEUED"
    order_id: str | None = None
    reason: str | None = None


def customers(count: int) -> list[Customer]:
    run = secrets.randbelow(1000)  # distinct from an earlier run's customers, most likely
    return [
        Customer(number, f"Load customer {number}", f"+491{run:03d}{number:08d}")
        for number in range(count)
    ]


def buy(sale: Sale) -> Callable[[Http, Customer], Purchase]:
    path = f"/api/flash-sales/{sale.id}/purchases"

    def purchase(client: Http, customer: Customer) -> Purchase:
        result = Purchase(customer)
        body = {"customer": {"name": customer.name, "phone": customer.phone}}
        for attempt in (1, 2):
            try:
                answer = client.request("POST", path, body)
            except HTTP_ERRORS:
                result.statuses.append("error")
                return result
            result.statuses.append(answer.status)
            result.seconds.append(answer.seconds)
            if answer.status == 202 and isinstance(answer.body, dict):
                result.ticket_id = answer.body.get("ticket_id")
                result.status_url = answer.body.get("status_url")
                return result
            if answer.status != 429 or attempt == 2:
                return result
            time.sleep(retry_after(answer.headers))  # honour Retry-After, once
        return result

    return purchase


def retry_after(headers: dict[str, str]) -> float:
    raw = next((v for k, v in headers.items() if k.lower() == "retry-after"), "1")
    try:
        return min(max(float(raw), 0.0), RETRY_AFTER_CAP)
    except ValueError:
        return 1.0


def poll_tickets(crowd: Crowd, tickets: list[Ticket], progress: Progress, deadline: float) -> None:
    def look(client: Http, ticket: Ticket) -> None:
        try:
            answer = client.request("GET", ticket.status_url)
        except HTTP_ERRORS:
            return
        body = answer.body if answer.status == 200 and isinstance(answer.body, dict) else {}
        if body.get("status") in DECIDED:
            ticket.status = body["status"]
            ticket.order_id = body.get("order_id")
            ticket.reason = body.get("reason")

    _rounds(crowd, tickets, look, lambda t: t.status in DECIDED, progress, deadline)


def poll_orders(crowd: Crowd, orders: dict[str, str], progress: Progress, deadline: float) -> None:
    """orders: order id -> status, updated in place."""

    def look(client: Http, order_id: str) -> None:
        try:
            answer = client.request("GET", f"/api/orders/{order_id}")
        except HTTP_ERRORS:
            return
        if answer.status == 200 and isinstance(answer.body, dict):
            orders[order_id] = str(answer.body.get("status"))

    _rounds(crowd, list(orders), look, lambda o: orders[o] in SETTLED, progress, deadline)


def _rounds(
    crowd: Crowd,
    items: list[T],
    look: Callable[[Http, T], None],
    finished: Callable[[T], bool],
    progress: Progress,
    deadline: float,
) -> None:
    """Look at the unfinished items, round after round, until all are finished or the
    deadline passes. The items are decided roughly in the order given (the order of the
    queue), so a round stops at the first chunk in which nothing was finished yet: a
    round costs about what changed since the last one, not a request per item."""
    chunk = max(2 * crowd.size, 20)
    while True:
        pending = [item for item in items if not finished(item)]
        progress.set(len(items) - len(pending))
        if not pending:
            progress.finish()
            return
        if time.monotonic() >= deadline:
            # One stuck item may have stopped the rounds early: look at every one once more.
            crowd.each(look, pending, time.monotonic() + FINAL_SWEEP_SECONDS)
            progress.set(sum(finished(item) for item in items))
            progress.finish()
            return
        started = time.monotonic()
        for first in range(0, len(pending), chunk):
            part = pending[first : first + chunk]
            crowd.each(look, part, deadline)
            progress.set(sum(finished(item) for item in items))
            if not any(finished(item) for item in part) or time.monotonic() >= deadline:
                break
        time.sleep(max(0.0, POLL_INTERVAL - (time.monotonic() - started)))


@dataclass
class Outcome:
    options: Options
    sale: Sale
    purchases: list[Purchase]
    burst_seconds: float
    tickets: list[Ticket]
    orders: dict[str, str]
    stock_lowest: int | None
    stock_last: int | None
    sale_after: dict[str, Any] | None


def run(options: Options, err: IO[str]) -> Outcome:
    if not 1 <= options.customers <= MAX_CUSTOMERS:
        raise SetupFailed(f"--customers must be between 1 and {MAX_CUSTOMERS}")
    if not 1 <= options.concurrency <= MAX_CONCURRENCY:
        raise SetupFailed(f"--concurrency must be between 1 and {MAX_CONCURRENCY}")
    if options.quota < 1:
        raise SetupFailed("--quota must be at least 1")
    sale = setup(options.url, options.admin_token, options.quota)
    err.write(
        f"loadtest: sale {sale.id} of {sale.sku}, quota {sale.quota}, at {options.url}; "
        f"{options.customers} customers, {options.concurrency} at a time\n"
    )
    with (
        Crowd(options.url, options.concurrency) as crowd,
        StockSampler(options.url, sale.sku) as stock,
    ):
        people = customers(options.customers)
        progress = Progress("purchases", len(people), err)
        started = time.monotonic()
        deadline = started + options.burst_timeout
        purchases = crowd.each(buy(sale), people, deadline, progress.advance)
        burst_seconds = time.monotonic() - started
        progress.finish()

        tickets = [  # in the order they were admitted, about the order of the queue
            Ticket(p.ticket_id, p.customer.phone, p.status_url)
            for p in purchases
            if p.ticket_id and p.status_url
        ]
        decided = Progress("tickets decided", len(tickets), err)
        poll_tickets(crowd, tickets, decided, time.monotonic() + options.decide_timeout)

        orders = {t.order_id: "PENDING" for t in tickets if t.status == "WON" and t.order_id}
        settled = Progress("orders settled", len(orders), err)
        poll_orders(crowd, orders, settled, time.monotonic() + options.settle_timeout)

    return Outcome(
        options,
        sale,
        sorted(purchases, key=lambda p: p.customer.number),
        burst_seconds,
        tickets,
        orders,
        stock.lowest,
        stock.last,
        sale_view(options.url, sale),
    )


def main(options: Options, out: IO[str], err: IO[str]) -> int:
    """Run, print the report; 0 when the invariants hold, 1 when one breaks, 2 when the
    shop cannot be reached or refuses the set-up."""
    try:
        outcome = run(options, err)
    except SetupFailed as error:
        err.write(f"shop loadtest: {error}\n")
        return 2
    text, holds = report(outcome)
    out.write(text + "\n")
    out.flush()
    return 0 if holds else 1
