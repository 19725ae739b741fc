"""The order service's tables (SQLAlchemy 2.0 typed models). The schema comes from migrations."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from messaging.database import UtcDateTime
from messaging.inbox import InboxColumns
from messaging.outbox import OutboxColumns, utcnow


class Base(DeclarativeBase):
    pass


class Product(Base):
    """The catalog, and `available`: the order service's read model of the stock."""

    __tablename__ = "products"

    sku: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    price_cents: Mapped[int] = mapped_column(Integer)
    available: Mapped[int] = mapped_column(Integer)
    stock_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    status: Mapped[str] = mapped_column(String(20), index=True)
    customer_name: Mapped[str] = mapped_column(String(200))
    customer_phone: Mapped[str] = mapped_column(String(32))
    subtotal_cents: Mapped[int] = mapped_column(Integer)
    discount_cents: Mapped[int] = mapped_column(Integer, default=0)
    total_cents: Mapped[int] = mapped_column(Integer)
    coupon_code: Mapped[str | None] = mapped_column(String(64))
    reject_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)

    lines: Mapped[list[OrderLine]] = relationship(
        back_populates="order", order_by="OrderLine.position", cascade="all, delete-orphan"
    )
    timeline: Mapped[list[TimelineEntry]] = relationship(
        order_by="TimelineEntry.id", cascade="all, delete-orphan"
    )


class OrderLine(Base):
    __tablename__ = "order_lines"

    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    sku: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price_cents: Mapped[int] = mapped_column(Integer)

    order: Mapped[Order] = relationship(back_populates="lines")


class TimelineEntry(Base):
    """One event in an order's story, from any service, shown oldest first."""

    __tablename__ = "order_timeline"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    event: Mapped[str] = mapped_column(String(100))
    service: Mapped[str] = mapped_column(String(50))
    at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    detail: Mapped[str | None] = mapped_column(Text)


class IdempotencyKey(Base):
    """A client's Idempotency-Key, the hash of the body it came with, and the order it made."""

    __tablename__ = "idempotency_keys"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)

    order: Mapped[Order] = relationship()


class OrderOutbox(OutboxColumns, Base):
    __tablename__ = "order_outbox"


class OrderInbox(InboxColumns, Base):
    __tablename__ = "order_inbox"


class FlashSale(Base):
    """A few units of one sku at a sale price; `sold` only grows, never past `quota`.

    The units are the inventory's to hold. `allocation` follows them: `pending` until the
    inventory answers `flash_sale.created`, `held` once it has set `quota` units aside
    (`quota` then says how many it could: at most `requested_quota`), `released` once the
    sale has closed (`closed_at`) and told the inventory to take back what it did not sell.
    """

    __tablename__ = "flash_sales"
    __table_args__ = (CheckConstraint("sold <= quota", name="never_oversold"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"))
    price_cents: Mapped[int] = mapped_column(Integer)
    requested_quota: Mapped[int] = mapped_column(Integer)
    quota: Mapped[int] = mapped_column(Integer)
    sold: Mapped[int] = mapped_column(Integer, default=0)
    allocation: Mapped[str] = mapped_column(String(10), default="pending")
    starts_at: Mapped[datetime] = mapped_column(UtcDateTime())
    ends_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), index=True)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class FlashTicket(Base):
    """A decided purchase request. A ticket still in the queue has no row yet (QUEUED).

    `winner_phone` is set only on WON tickets, and (sale_id, winner_phone) is unique: the
    database itself refuses a second win by one customer.
    """

    __tablename__ = "flash_tickets"
    __table_args__ = (UniqueConstraint("sale_id", "winner_phone", name="one_win_per_customer"),)

    ticket_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    sale_id: Mapped[str] = mapped_column(ForeignKey("flash_sales.id"), index=True)
    customer_name: Mapped[str] = mapped_column(String(200))
    customer_phone: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(10))
    winner_phone: Mapped[str | None] = mapped_column(String(32))
    order_id: Mapped[str | None] = mapped_column(String(36))
    reason: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class FlashSaleCounter(Base):
    """Admission counters of every web process, added up (each flushes its deltas)."""

    __tablename__ = "flash_sale_counters"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)
