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

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Row, bindparam, insert, select, update
from sqlalchemy.orm import Session

from messaging import batch_writes
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
# is Core, built once, on the session's connection (the ORM costs several times more).
DECIDED = select(_tickets.c.ticket_id).where(_tickets.c.ticket_id == bindparam("ticket_id"))
RECORD = insert(_tickets)
LOCK_SALE = (  # the sale, and the name of its product for a winner's order line
    select(_sales, _products.c.name.label("product_name"))
    .join(_products, _products.c.sku == _sales.c.sku)
    .where(_sales.c.id == bindparam("sale_id"))
    .with_for_update(of=_sales)
)
WON_BEFORE = select(_tickets.c.ticket_id).where(
    _tickets.c.sale_id == bindparam("sale_id"), _tickets.c.winner_phone == bindparam("phone")
)
SELL_ONE = (
    update(_sales)
    .where(_sales.c.id == bindparam("sale_id"))
    .values(sold=_sales.c.sold + 1)
    .returning(_sales.c.sold, _sales.c.quota)
)


def decide_ticket(session: Session, envelope: Envelope) -> None:
    request = envelope.body_as(PurchaseRequest)
    db = session.connection()
    if db.execute(DECIDED, {"ticket_id": request.ticket_id}).first() is not None:
        return  # decided before
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
    }
    if reason is not None:  # with the batch's other losers, in one INSERT
        batch_writes.insert(session, _tickets, {**ticket, "status": "LOST"})
        count(session, {"lost": 1})
        return
    # A winner: one more unit sold (the CHECK sold <= quota stands behind the test above).
    sold = db.execute(SELL_ONE, {"sale_id": locked.id}).one()
    product = SoldProduct(sku=locked.sku, name=locked.product_name)
    order = new_order(request.customer.name, phone, [(product, 1, locked.price_cents)])
    store_order(session, order, flash_sale_id=locked.id)
    db.execute(RECORD, {**ticket, "status": "WON", "winner_phone": phone, "order_id": order.id})
    count(session, {"won": 1})
    if sold.sold == sold.quota:  # the last unit: once per sale, so through the ORM
        sale = session.get(FlashSale, locked.id, populate_existing=True)
        assert sale is not None
        outbox.add_event(session, FlashSaleSoldOut(sale_id=sale.id), correlation_id=sale.id)
        log.info("flash sale %s sold out", sale.id, extra={"correlation_id": sale.id})
        sale_lifecycle.close(session, sale, "sold_out")


@dataclass(frozen=True)
class SoldProduct:
    sku: str
    name: str


def _locked_sale(session: Session, sale_id: str) -> Row | None:
    """The sale's row, locked until the transaction ends. A closed sale never opens again,
    so once it is seen closed the rest of the batch (its losers) takes it from here."""
    closed: dict[str, Row] = session.info.setdefault(CLOSED_SALES, {})
    if sale_id in closed:
        return closed[sale_id]
    sale = session.connection().execute(LOCK_SALE, {"sale_id": sale_id}).first()
    if sale is not None and sale.closed_at is not None:
        closed[sale_id] = sale
    return sale


CLOSED_SALES = "flash_worker.closed_sales"  # session.info: the closed sales this batch saw


def _why_lost(session: Session, sale: FlashSale | Row, phone: str) -> str | None:
    if sale.closed_at is not None:  # its final `sold` went to the inventory: nothing more
        return "sold out" if sale.sold >= sale.quota else "the sale had ended"
    status = sale_status(sale, utcnow())
    if status == "ended":
        return "the sale had ended"
    if status == "sold_out":
        return "sold out"
    if status == "upcoming":
        return "the sale had not opened"
    won = session.connection().execute(WON_BEFORE, {"sale_id": sale.id, "phone": phone}).first()
    if won is not None:
        return "this customer already won this sale"
    return None


ROUTES = Routes(Route(PURCHASE_REQUESTED, PurchaseRequest, decide_ticket))
