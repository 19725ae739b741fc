"""Retention: old outbox and inbox rows are deleted a little at a time, so no table grows
without bound and no one waits for the clean-up.

One mechanism for both tables. A `Pruner` knows which rows have expired (sent outbox rows
older than the outbox's retention; one queue's inbox rows older than the inbox's) and
deletes at most `batch_size` of them per call: it reads their keys in a read-only
transaction (on SQLite no write lock while it looks), then deletes those keys, still
expired, in one short write transaction. The relay calls it between batches and the
consumer runner between messages. A call that found a full batch is due again at once
(the next call goes on), one that found less is due again after `interval` seconds, so
a large backlog is worked off in small steps interleaved with the real work, and an idle
check costs one cheap read a minute. Expired rows never change again (a sent row stays
sent, a handled message stays handled), so nothing is lost between the read and the
delete; the delete repeats the condition anyway, so an unsent row is never deleted.
How long each table keeps its rows, and why, is in docs/design.md ("How long rows are kept").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Engine, delete, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import InstrumentedAttribute

from messaging.database import make_read_session_factory, make_session_factory
from messaging.inbox import InboxColumns
from messaging.outbox import OutboxColumns, utcnow

log = logging.getLogger(__name__)

DAY = 86_400.0
PRUNE_INTERVAL = 60.0  # seconds between looks when there is nothing (more) to delete
PRUNE_BATCH_SIZE = 500  # rows per DELETE statement


class Pruner:
    """Deletes expired rows of one table, at most `batch_size` a call, when it is due."""

    def __init__(
        self,
        engine: Engine,
        *,
        what: str,
        key: InstrumentedAttribute,  # type: ignore[type-arg]
        expired: Callable[[datetime], ColumnElement[bool]],
        retention_days: float,
        interval: float = PRUNE_INTERVAL,
        batch_size: int = PRUNE_BATCH_SIZE,
    ) -> None:
        self.what = what
        self.key = key
        self.expired = expired
        self.retention = timedelta(days=retention_days)
        self.interval = interval
        self.batch_size = batch_size
        self._read_sessions = make_read_session_factory(engine)
        self._sessions = make_session_factory(engine)
        self._due_at = time.monotonic()  # a process that starts looks once at once

    @classmethod
    def for_outbox(
        cls, engine: Engine, model: type[OutboxColumns], retention_days: float, **options: float
    ) -> Pruner:
        """Sent rows of an outbox, older than the retention; never an unsent row."""
        return cls(
            engine,
            what=f"{model.__tablename__} sent rows",  # type: ignore[attr-defined]
            key=model.id,
            expired=lambda cutoff: model.sent_at.is_not(None) & (model.sent_at < cutoff),
            retention_days=retention_days,
            **options,  # type: ignore[arg-type]
        )

    @classmethod
    def for_inbox(
        cls,
        engine: Engine,
        model: type[InboxColumns],
        queue: str,
        retention_days: float,
        **options: float,
    ) -> Pruner:
        """One queue's handled messages, older than the retention; other queues' rows stay."""
        return cls(
            engine,
            what=f"{model.__tablename__} rows of {queue}",  # type: ignore[attr-defined]
            key=model.message_id,
            expired=lambda cutoff: (model.queue == queue) & (model.handled_at < cutoff),
            retention_days=retention_days,
            **options,  # type: ignore[arg-type]
        )

    def prune_if_due(self) -> int:
        """Delete one batch if it is time to; how many rows went. A database fault is
        logged and tried again after the interval: pruning never stops the caller."""
        if time.monotonic() < self._due_at:
            return 0
        try:
            deleted = self.prune_once()
        except DBAPIError as error:
            log.warning("pruning %s failed (%s); trying again later", self.what, error.orig)
            deleted = 0
        if deleted < self.batch_size:
            self._due_at = time.monotonic() + self.interval
        return deleted

    def prune_once(self) -> int:
        """Delete at most `batch_size` expired rows now; how many rows went."""
        cutoff = utcnow() - self.retention
        table = self.key.class_
        with self._read_sessions() as session, session.begin():
            keys = list(
                session.scalars(
                    select(self.key)
                    .where(self.expired(cutoff))
                    .order_by(self.key)
                    .limit(self.batch_size)
                )
            )
        if not keys:
            return 0
        with self._sessions() as session, session.begin():
            result = session.execute(
                delete(table)
                .where(self.key.in_(keys) & self.expired(cutoff))
                .execution_options(synchronize_session=False)
            )
        log.info("pruned %d %s older than %s", result.rowcount, self.what, self.retention)
        return len(keys)  # what was found: a full batch means more may be waiting
