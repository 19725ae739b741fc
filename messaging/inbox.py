"""The inbox: an idempotent consumer remembers every message it has handled.

The consumer inserts (queue, message_id) in the same transaction as the message's effect
(a whole batch of them with one statement). A second delivery of the same message finds
the row there and changes nothing; two deliveries handled at once collide on the primary
key, and the second is a duplicate.

Each service maps the columns below onto its own table:

    class OrderInbox(InboxColumns, Base):
        __tablename__ = "order_inbox"
"""

from __future__ import annotations

from datetime import datetime
from functools import cache

from sqlalchemy import Insert, String, Table, delete
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


def first_deliveries(
    session: Session, model: type[InboxColumns], queue: str, messages: list[tuple[str, str]]
) -> set[str]:
    """Record every message of a batch, [(message_id, message_type)], in the caller's
    transaction; the ids that were new (the others were handled before).

    One statement, `INSERT ... VALUES (...), (...) ON CONFLICT DO NOTHING RETURNING
    message_id`: what comes back was inserted, what does not is a duplicate. The rows go in
    sorted by id, so two consumers inserting overlapping batches on PostgreSQL take the
    keys' locks in one order and never deadlock: a concurrent delivery of the same message
    waits for the first transaction, then inserts nothing (it committed) or inserts (it
    rolled back).
    """
    if not messages:
        return set()
    now = utcnow()
    rows = [
        {"queue": queue, "message_id": message_id, "message_type": message_type, "handled_at": now}
        for message_id, message_type in sorted(dict(messages).items())
    ]
    # Core on the session's connection, with the rows as parameters: SQLAlchemy renders the
    # multi-row INSERT from a statement compiled once ("insertmanyvalues"), several times
    # cheaper than the ORM, or than a statement with the values in it, compiled per batch.
    statement = _record(session.get_bind().dialect.name, model.__table__)  # type: ignore[attr-defined]
    return set(session.connection().execute(statement, rows).scalars())


@cache
def _record(dialect: str, table: Table) -> Insert:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING message_id: a row back means it was
    inserted (the rowcount is unreliable)."""
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    return insert(table).on_conflict_do_nothing().returning(table.c.message_id)


def forget(session: Session, model: type[InboxColumns], queue: str, message_ids: list[str]) -> None:
    """Take back the inbox rows of messages whose handling failed in this transaction, so
    that their redelivery is handled, not taken for a duplicate."""
    if message_ids:
        table = model.__table__
        session.connection().execute(
            delete(table).where(table.c.queue == queue, table.c.message_id.in_(message_ids))
        )
