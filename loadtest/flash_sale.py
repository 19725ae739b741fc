"""`shop loadtest flash-sale`: a burst of distinct customers at one flash sale, then a check.

Everything goes through the shop's HTTP API (CONTRACT.md), at the one URL given:

1. GET /healthz (nothing answers: exit 2 with one line), then create a product with a
   unique sku and `stock = quota`, and a sale of it, with the admin token (refused: exit 2).
2. The burst: N distinct customers (one phone each), taken by C worker threads, each with
   its own keep-alive http.client connection, POST a purchase once; a 429 is retried once
   after its Retry-After. Bounded in count (MAX_CUSTOMERS, MAX_CONCURRENCY) and in time.
3. Every admitted ticket (202) is polled until it is WON or LOST, up to a deadline, by the
   same threads; a round of polls stops at the first chunk where nothing changed.
4. Every won order is polled until it is CONFIRMED or REJECTED, up to a deadline.
5. The report: requests per second, purchase latency p50/p95/p99, counts per status code,
   accepted, won, lost, orders confirmed, and the invariants:
     won == min(quota, distinct accepted customers), no customer won twice, no admitted
     ticket left undecided, stock never negative (GET /api/products/{sku} is sampled all
     along), every won order settled, and the sale's `sold` equals the tickets won.
   Exit 0 when they all hold, 1 when one breaks.

Progress goes to stderr: a bar redrawn in place on a terminal, otherwise one line per 10 %.
"""

from __future__ import annotations

import http.client
import json
import math
import queue
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, Any, TypeVar
from urllib.parse import urlsplit

MAX_CUSTOMERS = 100_000
MAX_CONCURRENCY = 256
REQUEST_TIMEOUT = 10.0
RETRY_AFTER_CAP = 10.0  # seconds: a 429 asking for longer is still retried after this
POLL_INTERVAL = 0.2
FINAL_SWEEP_SECONDS = 15.0  # after a polling deadline: one last look at what is left
STOCK_SAMPLE_INTERVAL = 0.2
DECIDED = ("WON", "LOST")
SETTLED = ("CONFIRMED", "REJECTED")
HTTP_ERRORS = (OSError, http.client.HTTPException)  # refused, reset, timed out, garbled

T = TypeVar("T")
R = TypeVar("R")


class SetupFailed(Exception):
    """The shop is not reachable, refuses the token, or refuses the sale: exit 2, one line."""


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


# --- HTTP -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: Any
    seconds: float


class Http:
    """One keep-alive connection to the shop (not thread-safe: one per worker thread)."""

    def __init__(self, base_url: str, timeout: float = REQUEST_TIMEOUT) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SetupFailed(f"--url must look like http://HOST:PORT, got {base_url!r}")
        self.scheme, self.host, self.port = parts.scheme, parts.hostname, parts.port
        self.prefix = parts.path.rstrip("/")
        self.timeout = timeout
        self._connection: http.client.HTTPConnection | None = None
        self._used = False

    def _connect(self) -> http.client.HTTPConnection:
        if self._connection is None:
            secure = self.scheme == "https"
            kind = http.client.HTTPSConnection if secure else http.client.HTTPConnection
            self._connection = kind(self.host, self.port, timeout=self.timeout)
            self._used = False
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def request(
        self, method: str, path: str, body: object = None, headers: dict[str, str] | None = None
    ) -> Answer:
        data = None if body is None else json.dumps(body).encode()
        sent_headers = {"Accept": "application/json", **(headers or {})}
        if data is not None:
            sent_headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            connection = self._connect()
            reused = self._used
            started = time.perf_counter()
            try:
                connection.request(method, self.prefix + path, body=data, headers=sent_headers)
                response = connection.getresponse()
                raw = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if reused and attempt == 1:
                    continue  # the server closed an idle keep-alive connection: once more
                raise
            except HTTP_ERRORS:
                self.close()
                raise
            seconds = time.perf_counter() - started
            self._used = True
            if response.will_close:
                self.close()
            return Answer(response.status, dict(response.getheaders()), _json(raw), seconds)
        raise AssertionError("unreachable")  # pragma: no cover


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


class Pool:
    """`size` worker threads, each with its own keep-alive connection, for a whole run."""

    def __init__(self, url: str, size: int) -> None:
        self.url, self.size = url, size
        self._jobs: queue.SimpleQueue[Callable[[Http], None] | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"loadtest-{n}", daemon=True)
            for n in range(size)
        ]
        for thread in self._threads:
            thread.start()

    def _work(self) -> None:
        client = Http(self.url)
        try:
            while (job := self._jobs.get()) is not None:
                job(client)
        finally:
            client.close()

    def map(
        self,
        work: Callable[[Http, T], R],
        items: Iterable[T],
        deadline: float,
        on_done: Callable[[], None] = lambda: None,
    ) -> list[R]:
        """`work(client, item)` for every item, in order of starting; items not started
        by `deadline` (time.monotonic) are skipped. Results in order of finishing."""
        items = list(items)
        results: list[R] = []
        failures: list[BaseException] = []
        lock = threading.Lock()
        left = [len(items)]
        all_done = threading.Event()

        def job_for(item: T) -> Callable[[Http], None]:
            def job(client: Http) -> None:
                try:
                    if time.monotonic() < deadline:
                        result = work(client, item)
                        with lock:
                            results.append(result)
                        on_done()
                except Exception as error:  # a bug, not an HTTP error: report it after
                    with lock:
                        failures.append(error)
                finally:
                    with lock:
                        left[0] -= 1
                        if left[0] == 0:
                            all_done.set()

            return job

        if not items:
            return []
        for item in items:
            self._jobs.put(job_for(item))
        # Each request has its own timeout, so the jobs end soon after the deadline.
        all_done.wait(max(0.0, deadline - time.monotonic()) + 2 * REQUEST_TIMEOUT + 5)
        if failures:
            raise failures[0]
        with lock:
            return list(results)

    def close(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join(2 * REQUEST_TIMEOUT)


# --- progress -------------------------------------------------------------------------------


class Progress:
    """A bar on a terminal (redrawn at most 10 times a second), else a line per 10 %."""

    def __init__(self, label: str, total: int, stream: IO[str]) -> None:
        self.label, self.total, self.stream = label, total, stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.done = 0
        self._lock = threading.Lock()
        self._drawn = 0.0
        self._tenths = 0
        self._finished = False
        self._started = time.monotonic()

    def advance(self, count: int = 1) -> None:
        with self._lock:
            self.done += count
            self._show(final=False)

    def set(self, done: int) -> None:
        with self._lock:
            self.done = done
            self._show(final=False)

    def finish(self) -> None:
        with self._lock:
            self._show(final=True)

    def _show(self, final: bool) -> None:
        if self._finished:
            return
        self._finished = final
        fraction = min(self.done / self.total, 1.0) if self.total else 1.0
        if self.tty:
            now = time.monotonic()
            if not final and now - self._drawn < 0.1:
                return
            self._drawn = now
            width = 30
            bar = "#" * int(width * fraction) + "." * (width - int(width * fraction))
            self.stream.write(
                f"\r{self.label:<16} [{bar}] {self.done}/{self.total} {fraction:4.0%} "
                f"{now - self._started:5.1f}s" + ("\n" if final else "")
            )
        else:
            tenths = int(fraction * 10)
            if tenths > self._tenths and self.total:
                self._tenths = tenths
                self.stream.write(f"{self.label}: {self.done}/{self.total} ({tenths * 10}%)\n")
            if final and self.total == 0:
                self.stream.write(f"{self.label}: none\n")
            elif final and self.done < self.total:
                self.stream.write(f"{self.label}: stopped at {self.done}/{self.total}\n")
        self.stream.flush()


# --- the run --------------------------------------------------------------------------------


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


@dataclass
class Sale:
    id: str
    sku: str
    quota: int


class StockSampler:
    """GET /api/products/{sku} every STOCK_SAMPLE_INTERVAL, keeping the lowest `available`."""

    def __init__(self, base_url: str, sku: str) -> None:
        self.base_url, self.sku = base_url, sku
        self.lowest: int | None = None
        self.last: int | None = None
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stock sampler", daemon=True)

    def __enter__(self) -> StockSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(REQUEST_TIMEOUT + 5)
        client = Http(self.base_url)
        self.sample(client)  # one last look, after everything settled
        client.close()

    def _run(self) -> None:
        client = Http(self.base_url)
        try:
            while not self._stop.is_set():
                self.sample(client)
                self._stop.wait(STOCK_SAMPLE_INTERVAL)
        finally:
            client.close()

    def sample(self, client: Http) -> None:
        try:
            answer = client.request("GET", f"/api/products/{self.sku}")
        except HTTP_ERRORS:
            return
        available = answer.body.get("available") if isinstance(answer.body, dict) else None
        if answer.status == 200 and isinstance(available, int):
            self.samples += 1
            self.last = available
            self.lowest = available if self.lowest is None else min(self.lowest, available)


def setup(options: Options) -> Sale:
    client = Http(options.url)
    try:
        try:
            health = client.request("GET", "/healthz")
        except HTTP_ERRORS as error:
            raise SetupFailed(
                f"nothing answers at {options.url} ({_reason(error)}); start the shop with "
                "`shop up`, or pass --url"
            ) from None
        if health.status != 200:
            raise SetupFailed(
                f"{options.url} answered GET /healthz with {health.status}: is it the shop?"
            )
        admin = {"Authorization": f"Bearer {options.admin_token}"}
        sku = f"LOAD-{secrets.token_hex(4).upper()}"
        product = {
            "sku": sku,
            "name": "Flash-sale load test",
            "price_cents": 19900,
            "stock": options.quota,
        }
        created = _admin_call(client, "POST", "/api/products", product, admin, options.url)
        if created.status != 201:
            raise SetupFailed(f"could not create product {sku}: {_problem(created)}")
        body = {"sku": sku, "price_cents": 100, "quota": options.quota}
        sale = _admin_call(client, "POST", "/api/flash-sales", body, admin, options.url)
        if sale.status != 201 or not isinstance(sale.body, dict):
            raise SetupFailed(f"could not create the flash sale: {_problem(sale)}")
        _wait_open(client, sale.body["id"], options.url)
        return Sale(sale.body["id"], sku, options.quota)
    finally:
        client.close()


def _wait_open(client: Http, sale_id: str, url: str, timeout: float = 30.0) -> None:
    """A sale opens once the inventory has set its units aside (a moment, normally)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = _admin_call(client, "GET", f"/api/flash-sales/{sale_id}", None, {}, url)
        status = answer.body.get("status") if isinstance(answer.body, dict) else None
        if status == "open":
            return
        if time.monotonic() >= deadline:
            raise SetupFailed(
                f"the flash sale {sale_id} did not open within {timeout:.0f} s (status "
                f"{status}): is the inventory service running?"
            )
        time.sleep(0.1)


def _admin_call(
    client: Http, method: str, path: str, body: object, headers: dict[str, str], url: str
) -> Answer:
    try:
        answer = client.request(method, path, body, headers)
    except HTTP_ERRORS as error:
        raise SetupFailed(f"{method} {url}{path} failed: {_reason(error)}") from None
    if answer.status in (401, 403):
        raise SetupFailed(
            f"the shop at {url} refused the admin token ({answer.status}): set "
            "SHOP_ADMIN_TOKEN to the token `shop up` printed, or run where its var/admin-token is"
        )
    return answer


def _reason(error: BaseException) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, TimeoutError):
        return "timed out"
    return str(error) or type(error).__name__


def _problem(answer: Answer) -> str:
    if isinstance(answer.body, dict):
        return f"{answer.status} {answer.body.get('detail') or answer.body.get('title') or ''}"
    return str(answer.status)


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


def poll_tickets(pool: Pool, tickets: list[Ticket], progress: Progress, deadline: float) -> None:
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

    _rounds(pool, tickets, look, lambda t: t.status in DECIDED, progress, deadline)


def poll_orders(pool: Pool, orders: dict[str, str], progress: Progress, deadline: float) -> None:
    """orders: order id -> status, updated in place."""

    def look(client: Http, order_id: str) -> None:
        try:
            answer = client.request("GET", f"/api/orders/{order_id}")
        except HTTP_ERRORS:
            return
        if answer.status == 200 and isinstance(answer.body, dict):
            orders[order_id] = str(answer.body.get("status"))

    _rounds(pool, list(orders), look, lambda o: orders[o] in SETTLED, progress, deadline)


def _rounds(
    pool: Pool,
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
    chunk = max(2 * pool.size, 20)
    while True:
        pending = [item for item in items if not finished(item)]
        progress.set(len(items) - len(pending))
        if not pending:
            progress.finish()
            return
        if time.monotonic() >= deadline:
            # One stuck item may have stopped the rounds early: look at every one once more.
            pool.map(look, pending, time.monotonic() + FINAL_SWEEP_SECONDS)
            progress.set(sum(finished(item) for item in items))
            progress.finish()
            return
        started = time.monotonic()
        for first in range(0, len(pending), chunk):
            part = pending[first : first + chunk]
            pool.map(look, part, deadline)
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
    sale = setup(options)
    err.write(
        f"loadtest: sale {sale.id} of {sale.sku}, quota {sale.quota}, at {options.url}; "
        f"{options.customers} customers, {options.concurrency} at a time\n"
    )
    pool = Pool(options.url, options.concurrency)
    try:
        with StockSampler(options.url, sale.sku) as stock:
            people = customers(options.customers)
            progress = Progress("purchases", len(people), err)
            started = time.monotonic()
            purchases = pool.map(
                buy(sale), people, started + options.burst_timeout, progress.advance
            )
            burst_seconds = time.monotonic() - started
            progress.finish()

            tickets = [  # in the order they were admitted, about the order of the queue
                Ticket(p.ticket_id, p.customer.phone, p.status_url)
                for p in purchases
                if p.ticket_id and p.status_url
            ]
            decided = Progress("tickets decided", len(tickets), err)
            poll_tickets(pool, tickets, decided, time.monotonic() + options.decide_timeout)

            orders = {t.order_id: "PENDING" for t in tickets if t.status == "WON" and t.order_id}
            settled = Progress("orders settled", len(orders), err)
            poll_orders(pool, orders, settled, time.monotonic() + options.settle_timeout)
    finally:
        pool.close()

    sale_after = _sale_view(options, sale)
    return Outcome(
        options,
        sale,
        sorted(purchases, key=lambda p: p.customer.number),
        burst_seconds,
        tickets,
        orders,
        stock.lowest,
        stock.last,
        sale_after,
    )


def _sale_view(options: Options, sale: Sale) -> dict[str, Any] | None:
    client = Http(options.url)
    try:
        answer = client.request("GET", f"/api/flash-sales/{sale.id}")
    except HTTP_ERRORS:
        return None
    finally:
        client.close()
    return answer.body if answer.status == 200 and isinstance(answer.body, dict) else None


# --- the report -----------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


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
