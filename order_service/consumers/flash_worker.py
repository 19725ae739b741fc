"""The flash-sale ticket worker: decides each purchase the admission gate let into
`flash-sale.requests`, WON (a unit, and an order) or LOST (and why).

A ticket is decided in one transaction with the sale's row locked (FOR UPDATE on
PostgreSQL; SQLite has one writer at a time), so several workers can never sell more
than the quota. A winning ticket becomes an order that draws its unit from the sale's
allocation (`order.created` with `flash_sale_id`, through the outbox), so the inventory
cannot reject it for stock, and coupons and SMS follow as for any order. Three guards
stand behind each other: `sold < quota` checked under the lock, a CHECK (sold <= quota)
and a UNIQUE (sale_id, winner_phone) in the database. The last win announces
`flash_sale.sold_out` (a broadcast to every web process) and closes the sale.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Row, bindparam, select, tuple_, update
from sqlalchemy.orm import Session

from messaging import batch_reads, batch_writes
from messaging.envelope import Envelope, PoisonMessage
from messaging.outbox import utcnow
from messaging.routes import Route, Routes
from order_service import sale_lifecycle
from order_service.commands import CustomerIn
from order_service.events import FlashSaleSoldOut, outbox
from order_service.models import FlashSale, FlashTicket, Product
from order_service.use_cases.flash_sales import count, sale_status
from order_service.use_cases.orders import new_order, store_order

log = logging.getLogger(__name__)

PURCHASE_REQUESTED = "flash_sale.purchase_requested"


class PurchaseRequest(BaseModel):
    """What the admission gate puts into `flash-sale.requests` for each admitted purchase."""

    model_config = ConfigDict(extra="ignore")
    ticket_id: str
    sale_id: str
    customer: CustomerIn


_tickets, _sales, _products = FlashTicket.__table__, FlashSale.__table__, Product.__table__
# A queue full of tickets is decided here, as fast as the crowd filled it: every statement
# is Core, built once, on the session's connection (the ORM costs several times more), and
# what a batch of tickets needs to know is read once for the batch (read_tickets).
DECIDED = batch_reads.DoneOnce(
    "flash worker: decided tickets",
    select(_tickets.c.ticket_id).where(_tickets.c.ticket_id.in_(bindparam("ids", expanding=True))),
)
_winner = tuple_(_tickets.c.sale_id, _tickets.c.winner_phone)
WINNERS = batch_reads.DoneOnce(  # (sale id, phone): who won a sale (UNIQUE behind it)
    "flash worker: winners",
    select(_tickets.c.sale_id, _tickets.c.winner_phone).where(
        _winner.in_(bindparam("ids", expanding=True))
    ),
)
LOCK_SALE = (  # the sale, and the name of its product for a winner's order line
    select(_sales, _products.c.name.label("product_name"))
    .join(_products, _products.c.sku == _sales.c.sku)
    .where(_sales.c.id == bindparam("sale_id"))
    .with_for_update(of=_sales)
)
SELL_ONE = (
    update(_sales)
    .where(_sales.c.id == bindparam("sale_id"))
    .values(sold=_sales.c.sold + 1)
    .returning(_sales.c.sold, _sales.c.quota)
)


def read_tickets(session: Session, requests: list[PurchaseRequest]) -> None:
    """For a batch: which of its tickets were decided before, and which of its customers
    won their sale before; two SELECTs instead of two per ticket."""
    DECIDED.read_ahead(session, [request.ticket_id for request in requests])
    WINNERS.read_ahead(session, [(request.sale_id, request.customer.phone) for request in requests])


def decide_ticket(session: Session, envelope: Envelope) -> None:
    request = envelope.body_as(PurchaseRequest)
    if DECIDED.done_before(session, request.ticket_id):
        return
    locked = _locked_sale(session, request.sale_id)
    if locked is None:
        raise PoisonMessage(f"ticket {request.ticket_id} names unknown sale {request.sale_id}")
    phone = request.customer.phone
    reason = _why_lost(session, locked, phone)
    ticket = {
        "ticket_id": request.ticket_id,
        "sale_id": locked.id,
        "customer_name": request.customer.name,
        "customer_phone": phone,
        "decided_at": utcnow(),
        "winner_phone": None,
        "order_id": None,
        "reason": reason,
        "status": "LOST",
    }
    if reason is not None:
        batch_writes.insert(session, _tickets, ticket)  # with the batch's tickets, one INSERT
        count(session, {"lost": 1})
        return
    # A winner: one more unit sold (the CHECK sold <= quota stands behind the test above).
    sold = session.connection().execute(SELL_ONE, {"sale_id": locked.id}).one()
    locked.sold = sold.sold
    product = SoldProduct(sku=locked.sku, name=locked.product_name)
    order = new_order(request.customer.name, phone, [(product, 1, locked.price_cents)])
    store_order(session, order, flash_sale_id=locked.id)
    won = {**ticket, "status": "WON", "winner_phone": phone, "order_id": order.id}
    batch_writes.insert(session, _tickets, won)
    count(session, {"won": 1})
    if sold.sold == sold.quota:  # the last unit: once per sale, so through the ORM
        sale = session.get(FlashSale, locked.id, populate_existing=True)
        assert sale is not None
        outbox.add_event(session, FlashSaleSoldOut(sale_id=sale.id), correlation_id=sale.id)
        log.info("flash sale %s sold out", sale.id, extra={"correlation_id": sale.id})
        sale_lifecycle.close(session, sale, "sold_out")
        locked.closed_at, locked.allocation = sale.closed_at, sale.allocation


@dataclass(frozen=True)
class SoldProduct:
    sku: str
    name: str


@dataclass
class LockedSale:
    """A sale's row as the batch holds it: locked (FOR UPDATE on PostgreSQL, SQLite's one
    writer) from its first read to the commit, so nobody else changes it meanwhile, and
    kept true here as the batch sells and closes it."""

    id: str
    sku: str
    price_cents: int
    quota: int
    sold: int
    allocation: str
    starts_at: datetime
    ends_at: datetime | None
    closed_at: datetime | None
    product_name: str


LOCKED_SALES = "flash_worker.locked_sales"  # session.info: {sale id: LockedSale or None}


def _locked_sale(session: Session, sale_id: str) -> LockedSale | None:
    """The sale, read (and locked) once per batch. Under a SAVEPOINT (a batch done again
    a message at a time) it is read each time: a savepoint rolled back would take a sale
    along that the batch's copy still counts."""
    locked: dict[str, LockedSale | None] = (
        {} if session.in_nested_transaction() else session.info.setdefault(LOCKED_SALES, {})
    )
    if sale_id not in locked:
        row = session.connection().execute(LOCK_SALE, {"sale_id": sale_id}).first()
        locked[sale_id] = None if row is None else _as_locked(row)
    return locked[sale_id]


def _as_locked(row: Row) -> LockedSale:
    return LockedSale(**{name: row._mapping[name] for name in LockedSale.__dataclass_fields__})


def _why_lost(session: Session, sale: LockedSale, phone: str) -> str | None:
    if sale.closed_at is not None:  # its final `sold` went to the inventory: nothing more
        return "sold out" if sale.sold >= sale.quota else "the sale had ended"
    status = sale_status(sale, utcnow())
    if status == "ended":
        return "the sale had ended"
    if status == "sold_out":
        return "sold out"
    if status == "upcoming":
        return "the sale had not opened"
    if WINNERS.done_before(session, (sale.id, phone)):  # it wins now if it did not before
        return "this customer already won this sale"
    return None


ROUTES = Routes(Route(PURCHASE_REQUESTED, PurchaseRequest, decide_ticket, read_tickets))
