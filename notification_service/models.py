"""The notification service's tables (SQLAlchemy 2.0 typed models), made by migrations."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from messaging.database import UtcDateTime
from messaging.inbox import InboxColumns
from messaging.outbox import OutboxColumns, utcnow


class Base(DeclarativeBase):
    pass


class Sms(Base):
    """One SMS; `event_message_id` is unique, so one event can never make two."""

    __tablename__ = "sms_messages"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    event_message_id: Mapped[str] = mapped_column(String(64), unique=True)
    event: Mapped[str] = mapped_column(String(100))
    order_id: Mapped[str | None] = mapped_column(String(36), index=True)
    phone: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text)
    sent_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class NotificationOutbox(OutboxColumns, Base):
    __tablename__ = "notification_outbox"


class NotificationInbox(InboxColumns, Base):
    __tablename__ = "notification_inbox"
