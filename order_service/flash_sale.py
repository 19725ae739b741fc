"""Flash-sale rules: creating a sale, deciding a ticket, and what a sale or ticket shows.

No Flask and no pika here: the admission gate (admission.py) and the routes
(flash_api.py) stand in front; the worker (a ConsumerRunner on `flash-sale.requests`)
calls `decide_ticket` for each admitted request.

A sale's units are the inventory's to hold (sale_lifecycle.py): creating a sale publishes
`flash_sale.created`, and the sale stays `upcoming` until the inventory has set its units
aside (`inventory.allocated`). Where the inventory finds less stock than the quota, the sale
opens with the units it could set aside; its body shows both numbers.

A ticket is decided in one transaction with the sale's row locked (FOR UPDATE on
PostgreSQL; SQLite has one writer at a time), so several workers can never sell more
than the quota. A winning ticket becomes an order that draws its unit from the sale's
allocation (`order.created` with `flash_sale_id`, through the outbox), so the inventory
cannot reject it for stock, and coupons and SMS follow as for any order. Three guards
stand behind each other: `sold < quota` checked under the lock, a CHECK (sold <= quota)
and a UNIQUE (sale_id, winner_phone) in the database.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from messaging.database import as_utc
from messaging.envelope import Envelope, PoisonMessage
from messaging.outbox import utcnow
from order_service import sale_lifecycle
from order_service.handlers import (
    InvalidOrder,
    NotFound,
    get_product,
    new_order,
    outbox,
    store_order,
)
from order_service.models import FlashSale, FlashSaleCounter, FlashTicket
from order_service.schemas import CustomerIn, Sku, Strict
from order_service.views import iso

log = logging.getLogger(__name__)

PURCHASE_REQUEST = "flash_sale.purchase_requested"
SOLD_OUT = "flash_sale.sold_out"


class FlashSaleIn(Strict):
    sku: Sku
    price_cents: Annotated[int, Field(strict=True, ge=0, le=100_000_000)]
    quota: Annotated[int, Field(strict=True, ge=1, le=1_000_000)]
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def ends_after_it_starts(self) -> FlashSaleIn:
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class PurchaseIn(Strict):
    customer: CustomerIn


class PurchaseRequest(BaseModel):
    """What travels in `flash-sale.requests`."""

    model_config = ConfigDict(extra="ignore")
    ticket_id: str
    sale_id: str
    customer: CustomerIn


def sale_status(sale: FlashSale, now: datetime) -> str:
    """`upcoming` until it starts and its units are held, `open`, `sold_out` or `ended`."""
    ends = as_utc(sale.ends_at)
    if ends is not None and now >= ends:
        return "ended"
    if sale.allocation == "pending" or now < as_utc(sale.starts_at):
        return "upcoming"
    if sale.sold >= sale.quota:
        return "sold_out"
    return "open"


def sale_view(sale: FlashSale, queue_limit: int, now: datetime) -> dict[str, object]:
    view: dict[str, object] = {
        "id": sale.id,
        "sku": sale.sku,
        "price_cents": sale.price_cents,
        "quota": sale.quota,
        "sold": sale.sold,
        "remaining": sale.quota - sale.sold,
        "starts_at": iso(sale.starts_at),
        "ends_at": iso(sale.ends_at),
        "queue_limit": queue_limit,
        "status": sale_status(sale, now),
        "requested_quota": sale.requested_quota,
        "allocation": sale.allocation,
    }
    if sale.allocation == "pending":
        view["note"] = "the sale opens once the inventory has set its units aside"
    elif sale.quota < sale.requested_quota:
        view["note"] = (
            f"the inventory could set aside {sale.quota} of the "
            f"{sale.requested_quota} units asked for"
        )
    return view


def create_sale(session: Session, command: FlashSaleIn) -> FlashSale:
    product = get_product(session, command.sku)
    if command.quota > product.available:
        raise InvalidOrder(
            "The quota is larger than the stock.",
            [
                {
                    "field": "quota",
                    "message": f"only {product.available} of {command.sku} are in stock",
                }
            ],
        )
    sale = FlashSale(
        id=str(uuid.uuid4()),
        sku=command.sku,
        price_cents=command.price_cents,
        requested_quota=command.quota,
        quota=command.quota,
        sold=0,
        allocation="pending",
        starts_at=command.starts_at or utcnow(),
        ends_at=command.ends_at,
    )
    session.add(sale)
    sale_lifecycle.announce(session, sale)
    return sale


def get_sale(session: Session, sale_id: str) -> FlashSale:
    sale = session.get(FlashSale, sale_id)
    if sale is None:
        raise NotFound(f"No flash sale has id {sale_id!r}.")
    return sale


def decide_ticket(session: Session, envelope: Envelope) -> None:
    request = envelope.body_as(PurchaseRequest)
    if session.get(FlashTicket, request.ticket_id) is not None:
        return  # decided before
    sale = session.get(FlashSale, request.sale_id, with_for_update=True)
    if sale is None:
        raise PoisonMessage(f"ticket {request.ticket_id} names unknown sale {request.sale_id}")
    phone = request.customer.phone
    reason = _why_lost(session, sale, phone)
    ticket = FlashTicket(
        ticket_id=request.ticket_id,
        sale_id=sale.id,
        customer_name=request.customer.name,
        customer_phone=phone,
        decided_at=utcnow(),
    )
    if reason is not None:
        ticket.status, ticket.reason = "LOST", reason
        session.add(ticket)
        count(session, {"lost": 1})
        return
    sale.sold += 1
    product = get_product(session, sale.sku)
    order = new_order(request.customer.name, phone, [(product, 1, sale.price_cents)])
    store_order(session, order, flash_sale_id=sale.id)
    ticket.status, ticket.winner_phone, ticket.order_id = "WON", phone, order.id
    session.add(ticket)
    count(session, {"won": 1})
    if sale.sold == sale.quota:
        outbox.add(session, SOLD_OUT, {"sale_id": sale.id}, correlation_id=sale.id)
        log.info("flash sale %s sold out", sale.id, extra={"correlation_id": sale.id})
        sale_lifecycle.close(session, sale, "sold_out")


def _why_lost(session: Session, sale: FlashSale, phone: str) -> str | None:
    status = sale_status(sale, utcnow())
    if status == "ended":
        return "the sale had ended"
    if status == "sold_out":
        return "sold out"
    if status == "upcoming":
        return "the sale had not opened"
    won = session.scalar(
        select(FlashTicket.ticket_id).where(
            FlashTicket.sale_id == sale.id, FlashTicket.winner_phone == phone
        )
    )
    if won is not None:
        return "this customer already won this sale"
    return None


def ticket_view(session: Session, sale_id: str, ticket_id: str, signer: TicketSigner) -> dict:
    ticket = session.get(FlashTicket, ticket_id)
    if ticket is not None and ticket.sale_id == sale_id:
        view: dict[str, object] = {"ticket_id": ticket_id, "status": ticket.status}
        if ticket.order_id:
            view["order_id"] = ticket.order_id
        if ticket.reason:
            view["reason"] = ticket.reason
        return view
    if ticket is None and signer.issued(sale_id, ticket_id):
        return {"ticket_id": ticket_id, "status": "QUEUED"}
    raise NotFound(f"No ticket {ticket_id!r} was issued for this sale.")


def count(session: Session, deltas: dict[str, int]) -> None:
    """Add to the shared counters (a row per name, made on first use)."""
    for name, delta in deltas.items():
        if not delta:
            continue
        changed = session.execute(
            update(FlashSaleCounter)
            .where(FlashSaleCounter.name == name)
            .values(value=FlashSaleCounter.value + delta)
            .execution_options(synchronize_session=False)
        )
        if changed.rowcount == 0:
            session.add(FlashSaleCounter(name=name, value=delta))
            session.flush()


def counters(session: Session) -> dict[str, int]:
    return {row.name: row.value for row in session.scalars(select(FlashSaleCounter))}


class TicketSigner:
    """Ticket ids carry an HMAC of the sale, so an undecided ticket needs no database row
    and a ticket id that was never issued is told apart (404) without one either."""

    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(f"flash-sale-tickets:{secret}".encode()).digest()

    def issue(self, sale_id: str) -> str:
        nonce = secrets.token_hex(12)
        return nonce + self._signature(sale_id, nonce)

    def issued(self, sale_id: str, ticket_id: str) -> bool:
        nonce, signature = ticket_id[:24], ticket_id[24:]
        return len(ticket_id) == 40 and hmac.compare_digest(
            signature, self._signature(sale_id, nonce)
        )

    def _signature(self, sale_id: str, nonce: str) -> str:
        return hmac.new(self._key, f"{sale_id}:{nonce}".encode(), "sha256").hexdigest()[:16]
