"""The flash-sale admission gate: answer every purchase at almost no cost.

Per web process, in memory:
- a snapshot of each sale (quota, sold, start, end), refreshed from the database at most
  once a second, and the sold-out news heard on this process's broadcast queue;
- the customers who got a ticket from this process (a second try is 409 at once);
- "the queue was full a moment ago": after the broker refused a request, the next ones
  are 429 for a quarter of a second without even asking.
None of it outlives the sale: once a sale has ended or sold out (heard on the broadcast
queue, or seen in its snapshot) its customers and flags are dropped, and a snapshot
nobody asked for in a while is forgotten, so the gate's memory follows the live sales.

Everything else is admitted by the broker itself: the request is published into the
bounded queue `flash-sale.requests` (`x-max-length`, `x-overflow: reject-publish`) and
the publisher confirm is the verdict: ack is a ticket (202), nack is 429. There is no
count-then-publish race, because nobody counts. The publishing is done by one
background thread per process that confirms everyone's requests in one round trip.

Counters (accepted, and shed by reason) are kept in memory and added to the database
once a second, so every process's numbers add up in /api/pipeline and /metrics.

The gate is given its publisher and its broadcast listener (create_app makes the real
ones, messaging/background.py), so the unit tests run every verdict with fakes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from messaging.connection import BrokerUnavailable
from messaging.database import as_utc
from messaging.envelope import Envelope
from messaging.publisher import Outcome, Outgoing
from order_service import sale_lifecycle
from order_service.commands import CustomerIn
from order_service.consumers.flash_worker import PURCHASE_REQUESTED, PurchaseRequest
from order_service.events import SERVICE, FlashSaleSoldOut
from order_service.models import FlashSale
from order_service.tickets import TicketSigner
from order_service.use_cases import flash_sales

log = logging.getLogger(__name__)

REFRESH_SECONDS = 1.0
FORGET_AFTER_SECONDS = 30.0  # a snapshot unused this long is dropped
QUEUE_FULL_PAUSE = 0.25
UNKNOWN_SALES_REMEMBERED = 10_000
PUBLISH_TIMEOUT = 2.0
QUEUE = "flash-sale.requests"


class Publisher(Protocol):
    """Publishes and waits for the broker's verdict (messaging/background.BackgroundPublisher)."""

    def publish(self, outgoing: Outgoing, timeout: float = 2.0) -> Outcome: ...

    def close(self) -> None: ...


class Listener(Protocol):
    """Hears the flash-sale broadcasts (messaging/background.BroadcastListener)."""

    def start(self, on_event: Callable[[Envelope], None]) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Verdict:
    status: int  # 202, 404, 409, 410, 429 or 503
    outcome: str  # accepted, or why it was shed: the counter it adds to
    detail: str = ""
    ticket_id: str | None = None
    retry_after: int | None = None


@dataclass(frozen=True)
class Snapshot:
    quota: int
    sold: int
    starts_at: datetime
    ends_at: datetime | None
    allocated: bool  # the inventory holds the sale's units: it may open
    loaded: float

    def over(self, now: float) -> bool:
        """Sold out or past its end: nothing about its customers is worth keeping."""
        return self.sold >= self.quota or (
            self.ends_at is not None and now >= self.ends_at.timestamp()
        )


class AdmissionGate:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        signer: TicketSigner,
        publisher: Publisher,
        listener: Listener,
        read_sessions: sessionmaker[Session] | None = None,
        forget_after: float = FORGET_AFTER_SECONDS,
    ) -> None:
        self.sessions = sessions
        self.read_sessions = read_sessions or sessions
        self.signer = signer
        self.forget_after = forget_after
        self._lock = threading.RLock()  # guards the memory below; forgetting nests in it
        self._sales: dict[str, Snapshot] = {}
        self._unknown: dict[str, float] = {}  # sale ids that do not exist, and since when
        self._sold_out: set[str] = set()
        self._holders: dict[str, set[str]] = {}
        self._queue_full_until = 0.0
        self._counts: Counter[str] = Counter()
        self._publisher = publisher
        self._listener = listener
        self._started = False
        self._closed = threading.Event()

    def admit(self, sale_id: str, customer: CustomerIn) -> Verdict:
        self._start_once()
        verdict = self._from_memory(sale_id, customer.phone)
        if verdict is None:
            verdict = self._ask_the_broker(sale_id, customer)
        self._tally(verdict)
        return verdict

    def _from_memory(self, sale_id: str, phone: str) -> Verdict | None:
        sale = self._snapshot(sale_id)
        if sale is None:
            return Verdict(404, "unknown_sale", f"No flash sale has id {sale_id!r}.")
        now = time.time()
        if sale_id in self._sold_out or sale.sold >= sale.quota:
            return Verdict(410, "sold_out", "The sale is sold out.")
        if sale.ends_at is not None and now >= sale.ends_at.timestamp():
            return Verdict(410, "ended", "The sale has ended.")
        if now < sale.starts_at.timestamp():
            wait = int(sale.starts_at.timestamp() - now) + 1
            return Verdict(409, "not_started", f"The sale starts in {wait} s.", retry_after=wait)
        if not sale.allocated:
            return Verdict(
                409,
                "not_started",
                "The sale opens once the inventory has set its units aside.",
                retry_after=1,
            )
        with self._lock:
            if phone in self._holders.get(sale_id, ()):
                return Verdict(
                    409, "duplicate", "This customer already holds a ticket for this sale."
                )
            if now < self._queue_full_until:
                return Verdict(
                    429, "queue_full", "The sale is at capacity; try again shortly.", retry_after=1
                )
            self._holders.setdefault(sale_id, set()).add(phone)  # held while we ask
        return None

    def _ask_the_broker(self, sale_id: str, customer: CustomerIn) -> Verdict:
        ticket_id = self.signer.issue(sale_id)
        body = PurchaseRequest(ticket_id=ticket_id, sale_id=sale_id, customer=customer)
        request = Envelope.new(
            PURCHASE_REQUESTED, body.model_dump(), correlation_id=ticket_id, app_id=SERVICE
        )
        try:
            outcome = self._publisher.publish(
                Outgoing.to_queue(QUEUE, request), timeout=PUBLISH_TIMEOUT
            )
        except BrokerUnavailable as error:
            self._release(sale_id, customer.phone)
            log.warning("flash-sale admission without a broker: %s", error)
            return Verdict(
                503, "broker_down", "The sale cannot take requests right now.", retry_after=2
            )
        if not outcome.confirmed:  # the queue is at its limit: reject-publish said no
            self._release(sale_id, customer.phone)
            with self._lock:
                self._queue_full_until = time.time() + QUEUE_FULL_PAUSE
            return Verdict(
                429, "queue_full", "The sale is at capacity; try again shortly.", retry_after=1
            )
        return Verdict(202, "accepted", ticket_id=ticket_id)

    def _release(self, sale_id: str, phone: str) -> None:
        with self._lock:
            self._holders.get(sale_id, set()).discard(phone)

    def _snapshot(self, sale_id: str) -> Snapshot | None:
        """The sale as of at most a second ago; None for a sale that does not exist."""
        now = time.monotonic()
        known = self._sales.get(sale_id)
        if known is not None and now - known.loaded < REFRESH_SECONDS:
            return known
        missing_since = self._unknown.get(sale_id)
        if missing_since is not None and now - missing_since < REFRESH_SECONDS:
            return None
        with self.read_sessions() as session:
            sale = session.get(FlashSale, sale_id)
            snapshot = (
                None
                if sale is None
                else Snapshot(
                    sale.quota,
                    sale.sold,
                    as_utc(sale.starts_at),
                    as_utc(sale.ends_at),
                    sale.allocation != "pending",
                    now,
                )
            )
        with self._lock:
            if snapshot is None:
                if len(self._unknown) >= UNKNOWN_SALES_REMEMBERED:
                    self._unknown.clear()  # random ids from a script must not grow memory
                self._unknown[sale_id] = now
            else:
                self._sales[sale_id] = snapshot
                if snapshot.over(time.time()):
                    self._forget_customers(sale_id)
        return snapshot

    def _on_broadcast(self, envelope: Envelope) -> None:
        sale_id = str(envelope.body.get("sale_id"))
        if envelope.type == FlashSaleSoldOut.TYPE:
            self._sold_out.add(sale_id)
        if envelope.type in (FlashSaleSoldOut.TYPE, sale_lifecycle.ENDED):
            self._forget_customers(sale_id)

    def _forget_customers(self, sale_id: str) -> None:
        """A sale that is over answers 410 from its snapshot: its holders can go."""
        with self._lock:
            self._holders.pop(sale_id, None)

    def _forget_idle_sales(self) -> None:
        """Drop snapshots nobody used for a while (a later request reloads one); the
        customers of a sale that is still running stay, they are its duplicate guard."""
        idle_since, now = time.monotonic() - self.forget_after, time.time()
        with self._lock:
            for sale_id, snapshot in list(self._sales.items()):
                if snapshot.loaded < idle_since:
                    del self._sales[sale_id]
                    if snapshot.over(now) or sale_id in self._sold_out:
                        self._forget_customers(sale_id)
            for sale_id in list(self._sold_out):
                if sale_id not in self._sales:  # heard of, but not asked about lately
                    self._sold_out.discard(sale_id)
            for sale_id, since in list(self._unknown.items()):
                if since < idle_since:
                    del self._unknown[sale_id]

    def memory(self) -> dict[str, int]:
        """How much the gate remembers: sales, customers holding tickets, sold-out flags."""
        with self._lock:
            holders = sum(len(phones) for phones in self._holders.values())
        return {
            "sales": len(self._sales),
            "holders": holders,
            "sold_out": len(self._sold_out),
            "unknown": len(self._unknown),
        }

    def _tally(self, verdict: Verdict) -> None:
        name = "accepted" if verdict.outcome == "accepted" else f"shed_{verdict.outcome}"
        with self._lock:
            self._counts[name] += 1

    def close(self) -> None:
        """Stop the background threads (tests; a web process just exits)."""
        self._closed.set()
        self._publisher.close()
        self._listener.close()

    def _start_once(self) -> None:
        if self._started:
            return
        with self._lock:
            if self._started:
                return
            self._started = True
        self._listener.start(self._on_broadcast)
        threading.Thread(target=self._every_second, name="flash-sale gate", daemon=True).start()

    def _every_second(self) -> None:
        """Forget idle sales, and add this process's counts to the shared counters."""
        while not self._closed.wait(1.0):
            self._forget_idle_sales()
            with self._lock:
                deltas, self._counts = dict(self._counts), Counter()
            if not deltas:
                continue
            try:
                with self.sessions.begin() as session:
                    flash_sales.count(session, deltas)
            except Exception:  # the database is busy or down: keep the numbers for next time
                log.exception("could not save flash-sale counters; keeping them")
                with self._lock:
                    self._counts.update(deltas)
