"""The transactional outbox: events are rows in the service's own database.

A service writes its state change and `outbox.add(session, ...)` in one transaction, so
an event exists exactly when the change it reports was committed. It never publishes
itself; the relay (messaging/relay.py) does, with confirms, woken by the commit.

Each service maps the columns below onto its own table:

    class OrderOutbox(OutboxColumns, Base):
        __tablename__ = "order_outbox"
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import BigInteger, Engine, Index, Integer, String, Text, func, select, text
from sqlalchemy.orm import Mapped, Session, declared_attr, mapped_column

from messaging import batch_writes
from messaging.database import UtcDateTime
from messaging.doorbell import Doorbell
from messaging.envelope import Envelope
from messaging.events import Event


def utcnow() -> datetime:
    return datetime.now(UTC)


class OutboxColumns:
    """Columns of an outbox table; mix into a service's declarative model.

    Besides the index on `sent_at` (the pruning's), a partial index holds the ids of the
    unsent rows only: the relay's claim walks it in order and stops after a batch, where
    a scan of every unsent row and a sort would grow with the backlog.
    """

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Index, ...]:
        return (unsent_index(cls.__tablename__),)  # type: ignore[attr-defined]

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    message_id: Mapped[str] = mapped_column(String(36), unique=True)
    event_type: Mapped[str] = mapped_column(String(100))
    correlation_id: Mapped[str] = mapped_column(String(64))
    app_id: Mapped[str] = mapped_column(String(50))
    schema_version: Mapped[int] = mapped_column(Integer)
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), index=True)
    # A relay that claims a row for publishing leases it until then (see relay.py).
    claimed_until: Mapped[datetime | None] = mapped_column(UtcDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)

    def to_envelope(self) -> Envelope:
        return Envelope(
            message_id=self.message_id,
            type=self.event_type,
            correlation_id=self.correlation_id,
            app_id=self.app_id,
            body=json.loads(self.payload),
            timestamp=int(self.created_at.timestamp()),
            schema_version=self.schema_version,
        )


def unsent_index(table: str) -> Index:
    """ix_<table>_unsent: the ids of the rows still to publish (its migrations make it)."""
    unsent = text("sent_at IS NULL")
    return Index(f"ix_{table}_unsent", "id", sqlite_where=unsent, postgresql_where=unsent)


class Outbox:
    """Adds events to one service's outbox table, inside the caller's transaction, and
    rings its doorbell once that commits, so the relay publishes at once
    (messaging/doorbell.py). A row is written with a plain INSERT, or waits for its
    batch's one INSERT (messaging/batch_writes.py)."""

    def __init__(self, model: type[OutboxColumns], app_id: str) -> None:
        self.model = model
        self.app_id = app_id
        # One per engine the table is written through (weak: a disposed engine goes).
        self._bells: WeakKeyDictionary[Engine, Doorbell] = WeakKeyDictionary()

    def add(
        self, session: Session, event_type: str, body: dict[str, Any], *, correlation_id: str
    ) -> Envelope:
        envelope = Envelope.new(event_type, body, correlation_id=correlation_id, app_id=self.app_id)
        row = {
            "message_id": envelope.message_id,
            "event_type": envelope.type,
            "correlation_id": envelope.correlation_id,
            "app_id": envelope.app_id,
            "schema_version": envelope.schema_version,
            "payload": json.dumps(envelope.body, separators=(",", ":"), sort_keys=True),
            "created_at": datetime.fromtimestamp(envelope.timestamp, UTC),
            "attempts": 0,
        }
        # In a consumer's batch, one INSERT for all its rows.
        batch_writes.insert(session, self.model.__table__, row)  # type: ignore[attr-defined]
        self._bell(session).ring_after_commit(session)
        return envelope

    def _bell(self, session: Session) -> Doorbell:
        engine = session.get_bind()
        bell = self._bells.get(engine)  # type: ignore[call-overload]
        if bell is None:
            table = self.model.__tablename__  # type: ignore[attr-defined]
            bell = self._bells[engine] = Doorbell.of(engine, table)  # type: ignore[index,arg-type]
        return bell

    def add_event(self, session: Session, event: Event, *, correlation_id: str) -> Envelope:
        """A typed event (messaging/events.py) into the outbox, in the caller's transaction."""
        return self.add(session, event.TYPE, event.body(), correlation_id=correlation_id)

    def backlog(self, session: Session) -> int:
        """How many events wait to be published."""
        model = self.model
        query = select(func.count()).select_from(model).where(model.sent_at.is_(None))
        return session.scalar(query) or 0
