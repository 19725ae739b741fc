"""Flash sales: create one, show one and its tickets, and the shared admission counters.

A sale's units are the inventory's to hold (sale_lifecycle.py): creating a sale announces
`flash_sale.created`, and the sale stays `upcoming` until the inventory has set its units
aside (`inventory.allocated`). Where the inventory finds less stock than the quota, the sale
opens with the units it could set aside; its body shows both numbers.

`current_sales` is what the front page and `GET /api/flash-sales` list: the running and
upcoming sales, and the ones sold out in the last few minutes (so a shopper who comes
late learns what happened instead of finding nothing).

Purchases do not come here: the admission gate (web/admission.py) puts each admitted one
into `flash-sale.requests`, and the ticket worker (consumers/flash_worker.py) decides it.
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import datetime, timedelta

from sqlalchemy import bindparam, insert, or_, select, update
from sqlalchemy.orm import Session

from messaging import batch_writes
from messaging.database import as_utc
from messaging.outbox import utcnow
from order_service import sale_lifecycle
from order_service.commands import FlashSaleIn
from order_service.errors import InvalidOrder, NotFound
from order_service.models import FlashSale, FlashSaleCounter, FlashTicket
from order_service.tickets import TicketSigner
from order_service.use_cases.products import get_product


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


LISTED_STATUSES = ("open", "upcoming", "sold_out")
RECENTLY_SOLD_OUT = timedelta(minutes=10)
MAX_LISTED = 50


def current_sales(session: Session, now: datetime) -> list[FlashSale]:
    """The sales a shopper can still buy from or wait for, and those sold out in the last
    RECENTLY_SOLD_OUT; open ones first, then by start; at most MAX_LISTED."""
    candidates = session.scalars(
        select(FlashSale)
        .where(or_(FlashSale.closed_at.is_(None), FlashSale.closed_at >= now - RECENTLY_SOLD_OUT))
        .where(or_(FlashSale.ends_at.is_(None), FlashSale.ends_at > now))
        .order_by(FlashSale.starts_at, FlashSale.id)
    )
    listed = [sale for sale in candidates if sale_status(sale, now) in LISTED_STATUSES]
    listed.sort(key=lambda sale: LISTED_STATUSES.index(sale_status(sale, now)))  # stable
    return listed[:MAX_LISTED]


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


def find_ticket(
    session: Session, sale_id: str, ticket_id: str, signer: TicketSigner
) -> FlashTicket | None:
    """The decided ticket, or None while it waits in the queue; NotFound for an id this
    sale never issued."""
    ticket = session.get(FlashTicket, ticket_id)
    if ticket is not None and ticket.sale_id == sale_id:
        return ticket
    if ticket is None and signer.issued(sale_id, ticket_id):
        return None
    raise NotFound(f"No ticket {ticket_id!r} was issued for this sale.")


def count(session: Session, deltas: dict[str, int]) -> None:
    """Add to the shared counters (a row per name, made on first use); in a consumer's
    batch, once for the whole batch (messaging/batch_writes.py)."""
    batch_writes.write(session, "flash-sale counters", deltas, _add_to_counters)


_counters = FlashSaleCounter.__table__
BUMP = (
    update(_counters)
    .where(_counters.c.name == bindparam("key"))
    .values(value=_counters.c.value + bindparam("delta"))
)


def _add_to_counters(session: Session, _kind: str, all_deltas: list[dict[str, int]]) -> None:
    totals: Counter[str] = Counter()
    for deltas in all_deltas:
        totals.update(deltas)
    db = session.connection()
    for name, delta in sorted(totals.items()):  # in name order: two writers never deadlock
        if delta and db.execute(BUMP, {"key": name, "delta": delta}).rowcount == 0:
            db.execute(insert(_counters), {"name": name, "value": delta})


def counters(session: Session) -> dict[str, int]:
    return {row.name: row.value for row in session.scalars(select(FlashSaleCounter))}


def numbers(session: Session) -> dict[str, object]:
    """Admission counters of every web process (flushed each second) and decisions."""
    counts = counters(session)
    shed = {name.removeprefix("shed_"): n for name, n in counts.items() if name.startswith("shed_")}
    return {
        "accepted": counts.get("accepted", 0),
        "dropped": sum(shed.values()),
        "shed": shed,
        "decided": {"won": counts.get("won", 0), "lost": counts.get("lost", 0)},
    }
