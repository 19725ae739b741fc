"""The inbox: an idempotent consumer remembers every message it has handled.

The consumer inserts (queue, message_id) in the same transaction as the message's
effect. A second delivery of the same message finds the row and changes nothing. Two
deliveries handled at once collide on the primary key, and the loser is a duplicate.

Each service maps the columns below onto its own table:

    class OrderInbox(InboxColumns, Base):
        __tablename__ = "order_inbox"
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, String, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from messaging.outbox import utcnow


class InboxColumns:
    """Columns of an inbox table; mix into a service's declarative model."""

    queue: Mapped[str] = mapped_column(String(100), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    message_type: Mapped[str] = mapped_column(String(100))
    handled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


def first_delivery(
    session: Session, model: type[InboxColumns], *, queue: str, message_id: str, message_type: str
) -> bool:
    """Record the message in the caller's transaction; False if it was handled before."""
    seen = session.scalar(
        select(model.message_id).where(model.queue == queue, model.message_id == message_id)
    )
    if seen is not None:
        return False
    try:
        with session.begin_nested():
            session.add(model(queue=queue, message_id=message_id, message_type=message_type))
    except IntegrityError:
        return False  # another consumer committed the same message a moment ago
    return True
