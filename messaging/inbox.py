"""The inbox: an idempotent consumer remembers every message it has handled.

The consumer inserts (queue, message_id) in the same transaction as the message's
effect. A second delivery of the same message finds the row there and changes nothing;
two deliveries handled at once collide on the primary key, and the second is a duplicate.

Each service maps the columns below onto its own table:

    class OrderInbox(InboxColumns, Base):
        __tablename__ = "order_inbox"
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from messaging.database import UtcDateTime
from messaging.outbox import utcnow


class InboxColumns:
    """Columns of an inbox table; mix into a service's declarative model."""

    queue: Mapped[str] = mapped_column(String(100), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    message_type: Mapped[str] = mapped_column(String(100))
    handled_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


def first_delivery(
    session: Session, model: type[InboxColumns], *, queue: str, message_id: str, message_type: str
) -> bool:
    """Record the message in the caller's transaction; False if it was handled before.

    One statement, `INSERT ... ON CONFLICT DO NOTHING RETURNING`: nothing inserted, nothing
    returned, a duplicate.
    On PostgreSQL a concurrent delivery of the same message waits for the first
    transaction and then inserts nothing (it committed) or inserts (it rolled back).
    """
    dialect = session.get_bind().dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    table = model.__table__
    statement = (
        insert(table)
        .values(queue=queue, message_id=message_id, message_type=message_type, handled_at=utcnow())
        .on_conflict_do_nothing()
        .returning(table.c.message_id)  # a row back means it was inserted (rowcount is unreliable)
    )
    return session.execute(statement).first() is not None
