"""The notification service's tables (SQLAlchemy 2.0 typed models), made by migrations."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from messaging.database import UtcDateTime
from messaging.inbox import InboxColumns
from messaging.outbox import OutboxColumns, utcnow

PENDING, SENT, FAILED = "PENDING", "SENT", "FAILED"


class Base(DeclarativeBase):
    pass


class Sms(Base):
    """One SMS; `event_message_id` is unique, so one event can never make two.

    The consumer stores it PENDING; the sender (sender.py) delivers it and records SENT,
    or FAILED when the gateway refuses it for good. `next_attempt_at` is when a sender
    may take it next: a claim moves it one lease ahead, so the SMS of a sender that died
    after claiming comes due again by itself; a failed attempt moves it by the backoff.
    """

    __tablename__ = "sms_messages"
    __table_args__ = (Index("ix_sms_messages_due", "status", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    event_message_id: Mapped[str] = mapped_column(String(64), unique=True)
    event: Mapped[str] = mapped_column(String(100))
    order_id: Mapped[str | None] = mapped_column(String(36), index=True)
    phone: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # failed deliveries so far
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class NotificationOutbox(OutboxColumns, Base):
    __tablename__ = "notification_outbox"


class NotificationInbox(InboxColumns, Base):
    __tablename__ = "notification_inbox"
