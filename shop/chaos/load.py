"""The chaos run's load: customers and an admin at the shop's HTTP API, steady and bounded.

Set-up: a few products (their starting stock is recorded), single-use coupons, and two
flash sales that end before the load does: a small one that sells out in seconds, and a
slow one with more units than its buyers, so it ends by its clock and gives units back.
Then, until the deadline, worker threads each keep their own pace: ordinary orders, orders
with a coupon (picked at random, so a coupon is often tried twice), flash-sale purchases
(now and then by a customer who already bought), and stock sets on one sku. Every answer
is recorded; an error (the web process was just killed) is counted and the loop goes on.
The checks read these records afterwards.
"""

from __future__ import annotations

import random
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from loadtest.client import HTTP_ERRORS, Answer, Http
from loadtest.crowd import Crowd

LEDGER_SKUS = ("CHAOS-A", "CHAOS-B", "CHAOS-C")  # only orders change their stock
STOCK_SET_SKU = "CHAOS-S"  # orders and stock sets
FLASH_SKU = "CHAOS-F"  # orders and the flash sale
SLOW_SALE_SKU = "CHAOS-G"  # orders and the slow sale, which ends with units unsold
STARTING_STOCK = {"CHAOS-A": 60, "CHAOS-B": 60, "CHAOS-C": 40, STOCK_SET_SKU: 30, FLASH_SKU: 40}
FLASH_QUOTA = 10
COUPONS = 25
STOCK_SET_STEP = 40  # every set is higher than any stock before it (see invariants.py)
SALE_SHARE = 0.6  # the sale ends after this share of the load's time
# (thread name, seconds between two requests)
PACES = {
    "orders": 0.35,
    "coupon orders": 1.0,
    "flash purchases": 0.25,
    "slow sale purchases": 2.0,
    "stock sets": 5.0,
}


class SetupRefused(Exception):
    """The shop refused to create the run's products, coupons or sale."""


@dataclass
class AcceptedOrder:
    id: str
    lines: dict[str, int]
    coupon_code: str | None


@dataclass
class Records:
    """What the load did and what the shop answered."""

    starting_stock: dict[str, int] = field(default_factory=lambda: dict(STARTING_STOCK))
    coupons: list[str] = field(default_factory=list)
    sale_id: str = ""
    slow_sale_id: str = ""
    sale_quota: int = FLASH_QUOTA
    sale_ends_at: float = 0.0  # time.time(), for both sales
    orders: list[AcceptedOrder] = field(default_factory=list)
    tickets: list[str] = field(default_factory=list)
    ticket_phones: list[str] = field(default_factory=list)
    stock_sets: list[int] = field(default_factory=list)  # every value tried, answered or not
    answers: Counter[str] = field(default_factory=Counter)  # "POST /api/orders 201": n
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, what: str, answer: Answer | None) -> None:
        with self.lock:
            self.answers[f"{what} {answer.status if answer else 'error'}"] += 1


def phone() -> str:
    return f"+4917{secrets.randbelow(10**8):08d}"


class Load:
    def __init__(self, base_url: str, admin_token: str, seconds: float) -> None:
        self.base_url, self.seconds = base_url, seconds
        self.admin = {"Authorization": f"Bearer {admin_token}"}
        self.records = Records()
        self.stop = threading.Event()
        self.random = random.Random()

    # --- set-up ---------------------------------------------------------------------------

    def set_up(self) -> None:
        client = Http(self.base_url)
        try:
            # More units than the slow sale's buyers (one every 2 s while it runs) can take.
            slow_quota = max(20, int(self.seconds * SALE_SHARE))
            self.records.starting_stock[SLOW_SALE_SKU] = slow_quota + 20
            for sku, stock in self.records.starting_stock.items():
                body = {"sku": sku, "name": f"Chaos {sku}", "price_cents": 500, "stock": stock}
                self._must(client, "/api/products", body)
            for _ in range(COUPONS):
                created = self._must(client, "/api/coupons", {"amount_off_cents": 100})
                self.records.coupons.append(created.body["code"])
            ends = datetime.now(UTC) + timedelta(seconds=self.seconds * SALE_SHARE)
            timing = {"price_cents": 100, "ends_at": ends.isoformat()}
            fast = {"sku": FLASH_SKU, "quota": FLASH_QUOTA, **timing}
            self.records.sale_id = self._must(client, "/api/flash-sales", fast).body["id"]
            slow = {"sku": SLOW_SALE_SKU, "quota": slow_quota, **timing}
            self.records.slow_sale_id = self._must(client, "/api/flash-sales", slow).body["id"]
            self.records.sale_ends_at = ends.timestamp()
        finally:
            client.close()

    def _must(self, client: Http, path: str, body: dict) -> Answer:
        try:
            answer = client.request("POST", path, body, self.admin)
        except HTTP_ERRORS as error:
            raise SetupRefused(f"POST {path}: {error}") from None
        if answer.status != 201 or not isinstance(answer.body, dict):
            raise SetupRefused(f"POST {path} answered {answer.status}: {answer.body}")
        return answer

    # --- the load ---------------------------------------------------------------------------

    def run(self) -> None:
        """Every worker until `seconds` have passed (or stop is set); returns when all ended.
        Each kind of request is one thread of the load generator (loadtest/crowd.py), with
        its own connection and pace; ordinary orders have a second thread."""
        deadline = time.monotonic() + self.seconds
        work = [
            (self._order, PACES["orders"]),
            (self._coupon_order, PACES["coupon orders"]),
            (lambda client: self._purchase(client, self.records.sale_id), PACES["flash purchases"]),
            (
                lambda client: self._purchase(client, self.records.slow_sale_id),
                PACES["slow sale purchases"],
            ),
            (self._stock_set, PACES["stock sets"]),
            (self._order, 0.5),
        ]
        with Crowd(self.base_url, len(work)) as crowd:
            loops = [crowd.keep_going(step, deadline, pause, self.stop) for step, pause in work]
            for loop in loops:
                loop.result()

    def _send(self, client: Http, method: str, path: str, body: object, headers=None):
        try:
            answer = client.request(method, path, body, headers)
        except HTTP_ERRORS:
            answer = None
        self.records.count(f"{method} {path.split('/')[2]}", answer)
        return answer

    def _order(self, client: Http, coupon: str | None = None) -> None:
        skus = self.random.sample(
            [*LEDGER_SKUS, STOCK_SET_SKU, FLASH_SKU, SLOW_SALE_SKU], self.random.randint(1, 2)
        )
        lines = {sku: self.random.randint(1, 3) for sku in skus}
        body: dict[str, object] = {
            "customer": {"name": "Chaos customer", "phone": phone()},
            "items": [{"sku": sku, "quantity": n} for sku, n in lines.items()],
        }
        if coupon:
            body["coupon_code"] = coupon
        key = {"Idempotency-Key": secrets.token_hex(16)}
        for _attempt in (1, 2):  # the same key again after an error: one order at most
            answer = self._send(client, "POST", "/api/orders", body, key)
            if answer is not None and answer.status == 201 and isinstance(answer.body, dict):
                with self.records.lock:
                    self.records.orders.append(AcceptedOrder(answer.body["id"], lines, coupon))
                return
            if answer is not None and answer.status < 500:
                return

    def _coupon_order(self, client: Http) -> None:
        self._order(client, self.random.choice(self.records.coupons))

    def _purchase(self, client: Http, sale_id: str) -> None:
        if time.time() > self.records.sale_ends_at + 1:
            return
        path = f"/api/flash-sales/{sale_id}/purchases"
        customer = {"name": "Flash customer", "phone": phone()}
        with self.records.lock:
            if self.records.ticket_phones and self.random.random() < 0.1:
                # a customer who already holds a ticket tries again: 409
                customer["phone"] = self.random.choice(self.records.ticket_phones)
        answer = self._send(client, "POST", path, {"customer": customer})
        if answer is not None and answer.status == 202 and isinstance(answer.body, dict):
            with self.records.lock:
                self.records.tickets.append(answer.body["ticket_id"])
                self.records.ticket_phones.append(customer["phone"])

    def _stock_set(self, client: Http) -> None:
        # A PUT that ended in an error may still have been applied: every value tried counts.
        with self.records.lock:
            value = STARTING_STOCK[STOCK_SET_SKU] + STOCK_SET_STEP * (
                len(self.records.stock_sets) + 1
            )
            self.records.stock_sets.append(value)
        self._send(
            client, "PUT", f"/api/products/{STOCK_SET_SKU}/stock", {"stock": value}, self.admin
        )
