"""A flash sale's life beside the inventory, which holds its units.

    created ── flash_sale.created ──> inventory sets units aside
       │     <── inventory.allocated ── (units it could: at most the quota)
    held: the sale may open (at starts_at)
       │
    sold out (the last win) or past ends_at (the closer below)
       └── flash_sale.ended {sold} ──> inventory keeps `sold` units for the winners' orders
                                        and gives the rest back to the ordinary stock
    released

Everything goes through the order service's outbox, in the transaction that changes the
sale, so the inventory hears each step exactly when it happened, and never by a call
between services. A sale is closed exactly once (`closed_at`), under its row lock, so the
`sold` it reports is final: a ticket decided after that finds the sale ended or sold out.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime

from pydantic import BaseModel, Field
from sqlalchemy import Engine, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from messaging.database import make_read_session_factory, make_session_factory
from messaging.envelope import Envelope
from messaging.outbox import utcnow
from order_service.events import FlashSaleEnded, flash_sale_created, outbox
from order_service.models import FlashSale

log = logging.getLogger(__name__)

ENDED = FlashSaleEnded.TYPE
ALLOCATED = "inventory.allocated"


class Allocated(BaseModel):
    sale_id: str
    units: int = Field(ge=0)


def announce(session: Session, sale: FlashSale) -> None:
    """Ask the inventory to set the sale's units aside (in the caller's transaction)."""
    session.flush()
    outbox.add_event(session, flash_sale_created(sale), correlation_id=sale.id)


def on_inventory_allocated(session: Session, envelope: Envelope) -> None:
    """The inventory holds `units` for the sale: it may open, with that many to sell."""
    answer = envelope.body_as(Allocated)
    sale = session.get(FlashSale, answer.sale_id, with_for_update=True)
    if sale is None:
        log.error("allocation for unknown flash sale %s ignored", answer.sale_id)
        return
    if sale.allocation != "pending":
        return  # answered before, or closed before the answer came
    sale.quota, sale.allocation = min(answer.units, sale.requested_quota), "held"
    log.info(
        "flash sale %s holds %d of the %d units asked for",
        sale.id,
        sale.quota,
        sale.requested_quota,
        extra={"correlation_id": sale.id},
    )
    if sale.quota == 0:
        close(session, sale, "sold_out")  # nothing to sell: over before it began


def close(session: Session, sale: FlashSale, reason: str) -> None:
    """End the sale once: tell the inventory what it sold, so the rest goes back to stock."""
    if sale.closed_at is not None:
        return
    sale.closed_at, sale.allocation = utcnow(), "released"
    outbox.add_event(
        session,
        FlashSaleEnded(sale_id=sale.id, sku=sale.sku, sold=sale.sold, reason=reason),
        correlation_id=sale.id,
    )


def close_ended_sales(session: Session, now: datetime) -> int:
    """Close every sale past its `ends_at` that is still open; how many it closed."""
    due = session.scalars(
        select(FlashSale)
        .where(FlashSale.closed_at.is_(None), FlashSale.ends_at <= now)
        .order_by(FlashSale.id)  # two closers lock in the same order: no deadlock
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    for sale in due:
        close(session, sale, "ended")
    return len(due)


class SaleCloser:
    """A worker of the order process: closes sales whose time is up, once a second.

    The check is one indexed read that takes no write lock; only a sale that is due makes
    a (short) write transaction.
    """

    def __init__(self, engine: Engine, interval: float = 1.0, name: str = "sale closer") -> None:
        self.name = name
        self.interval = interval
        self._sessions = make_session_factory(engine)
        self._read_sessions = make_read_session_factory(engine)

    def run(self, stop: threading.Event) -> None:
        """Look once a second until `stop`; a database that is away is tried next round."""
        while not stop.wait(self.interval):
            try:
                self.close_due(utcnow())
            except DBAPIError as error:  # the database is busy or away: next round
                log.warning("%s: cannot use the database (%s)", self.name, error.orig)

    def close_due(self, now: datetime) -> int:
        """Close the sales due by `now`; how many it closed."""
        with self._read_sessions() as session:
            due = session.scalar(
                select(FlashSale.id)
                .where(FlashSale.closed_at.is_(None), FlashSale.ends_at <= now)
                .limit(1)
            )
        if due is None:
            return 0
        with self._sessions.begin() as session:
            closed = close_ended_sales(session, now)
        log.info("%s: %d flash sale(s) ended", self.name, closed)
        return closed
