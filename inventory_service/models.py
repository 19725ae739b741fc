"""The inventory's tables (SQLAlchemy 2.0 typed models). The schema comes from migrations."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from messaging.database import UtcDateTime
from messaging.inbox import InboxColumns
from messaging.outbox import OutboxColumns, utcnow


class Base(DeclarativeBase):
    pass


class StockItem(Base):
    """Units of a sku that can still be sold; `version` orders the stock_changed events."""

    __tablename__ = "inventory_stock"
    __table_args__ = (CheckConstraint("available >= 0", name="stock_never_negative"),)

    sku: Mapped[str] = mapped_column(String(64), primary_key=True)
    available: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class Reservation(Base):
    """The inventory's decision on one order: RESERVED (with its lines) or REJECTED."""

    __tablename__ = "inventory_reservations"

    order_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    status: Mapped[str] = mapped_column(String(20))
    lines: Mapped[str] = mapped_column(Text)  # JSON [{sku, quantity}]
    reason: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class Allocation(Base):
    """Units of a sku set aside for one flash sale: taken only by that sale's winners.

    `units` were moved out of `inventory_stock.available` when the sale was created;
    `taken` counts what winners' orders have drawn. When the sale ends, the units it did not
    sell go back to the stock and `units` shrinks to what it sold (`status` CLOSED).
    """

    __tablename__ = "inventory_allocations"
    __table_args__ = (CheckConstraint("taken <= units", name="allocation_never_overdrawn"),)

    sale_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    sku: Mapped[str] = mapped_column(String(64))
    requested: Mapped[int] = mapped_column(Integer)
    units: Mapped[int] = mapped_column(Integer)
    taken: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(10), default="HELD")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class InventoryOutbox(OutboxColumns, Base):
    __tablename__ = "inventory_outbox"


class InventoryInbox(InboxColumns, Base):
    __tablename__ = "inventory_inbox"
