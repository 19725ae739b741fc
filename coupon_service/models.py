"""The coupon service's tables (SQLAlchemy 2.0 typed models). The schema comes from migrations."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from messaging.database import UtcDateTime
from messaging.inbox import InboxColumns
from messaging.outbox import OutboxColumns, utcnow


class Base(DeclarativeBase):
    pass


class Coupon(Base):
    """A single-use coupon: ACTIVE, RESERVED for an order, or REDEEMED.

    A RESERVED coupon's `reserved_until` is when an unconfirmed reservation lapses; it is
    None once the order exists (`order.created`): then it holds until the order's outcome.
    """

    __tablename__ = "coupons"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    amount_off_cents: Mapped[int | None] = mapped_column(Integer)
    percent_off: Mapped[int | None] = mapped_column(Integer)
    min_subtotal_cents: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    customer_phone: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(20), default="ACTIVE")
    order_id: Mapped[str | None] = mapped_column(String(36), index=True)
    reserved_until: Mapped[datetime | None] = mapped_column(UtcDateTime())
    issued_for_order: Mapped[str | None] = mapped_column(String(36), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class CouponOutbox(OutboxColumns, Base):
    __tablename__ = "coupon_outbox"


class CouponInbox(InboxColumns, Base):
    __tablename__ = "coupon_inbox"
