"""The consumer runner: one queue, one handler, batches of messages, acks after commit,
poison to the DLQ.

It takes a batch (half the prefetch, or what arrives within a few milliseconds of the
first message; the broker sends the next batch meanwhile) and handles it in one transaction:
  1. read each envelope; one that cannot be read is rejected without requeue (-> `.dead`);
  2. record every message in the inbox with one INSERT (the duplicates stop here), let the
     routes read ahead what the new ones need (messaging/batch_reads.py), then call the
     handler for each; their outbox rows go in with one INSERT just before the commit.
     If a handler fails, that transaction is rolled back and the batch is done again with a
     SAVEPOINT per message, so the failing one rolls back only itself (and its inbox row is
     taken back) while the others commit;
  3. after the commit: reject the poison, requeue the failures, and ack all the rest with one
     `basic_ack(multiple=True)`. A crash before the ack means a redelivery of the batch,
     which the inbox turns into no-ops.

A handler raises `PoisonMessage` for input that can never succeed (dead-lettered at
once). Any other exception is transient: the message is requeued after a short pause,
and the queue's delivery limit dead-letters it if it keeps failing. A database that is
down is not the messages' fault: the runner keeps the batch and retries until the
database answers, so an outage does not burn their delivery attempts. A deadlock with a
concurrent consumer (PostgreSQL, competing consumers) retries the batch at once.

The handler is usually a service's `Routes` (messaging/routes.py): one function per
message type, and the model each body must match. The loop around the batches, with its
prefetch and reconnects, is QueueWorker's (messaging/queue_worker.py).

Between batches the runner prunes its queue's inbox rows older than the inbox's
retention, a small batch at a time (messaging/retention.py).

`stop` (set by SIGTERM in the service's main) lets the batch in hand finish.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from messaging import batch_writes
from messaging.connection import Backoff
from messaging.delivery import Delivery
from messaging.envelope import Envelope, PoisonMessage
from messaging.inbox import InboxColumns, first_deliveries, forget
from messaging.queue_worker import QueueWorker
from messaging.retention import PRUNE_BATCH_SIZE, PRUNE_INTERVAL, Pruner
from messaging.routes import Handler

log = logging.getLogger(__name__)


class ConsumerRunner(QueueWorker):
    """The idempotent consumer: inbox + handler in one transaction, ack after commit."""

    def __init__(
        self,
        *,
        handler: Handler,
        inbox_model: type[InboxColumns],
        max_retry_delay: float = 2.0,
        inbox_retention_days: float = 14.0,
        prune_interval: float = PRUNE_INTERVAL,
        prune_batch_size: int = PRUNE_BATCH_SIZE,
        after_commit: Callable[[], None] | None = None,
        **worker_options,  # type: ignore[no-untyped-def]
    ) -> None:
        super().__init__(**worker_options)
        self.handler = handler
        self.inbox_model = inbox_model
        self.max_retry_delay = max_retry_delay
        self.after_commit = after_commit  # e.g. wake a sender that delivers what was stored
        self.pruner = Pruner.for_inbox(
            worker_options["engine"],
            inbox_model,
            self.queue,
            inbox_retention_days,
            interval=prune_interval,
            batch_size=prune_batch_size,
        )

    def between_messages(self) -> None:
        """Forget this queue's messages handled longer ago than the inbox's retention."""
        self.pruner.prune_if_due()

    def handle_batch(self, deliveries: Sequence[Delivery]) -> None:
        readable: list[tuple[Delivery, Envelope]] = []
        for delivery in deliveries:
            try:
                readable.append(
                    (delivery, Envelope.from_delivery(delivery.properties, delivery.body))
                )
            except PoisonMessage as error:
                self._dead_letter(delivery, error)
        if not readable:
            return
        try:
            outcomes = self._in_one_transaction(readable)
        except _GiveUp:  # asked to stop while the database was down: hand them all back
            for delivery, _envelope in readable:
                delivery.requeue()
            return
        self._settle(readable, outcomes)

    def _settle(self, readable: list[tuple[Delivery, Envelope]], outcomes: list[Outcome]) -> None:
        """Reject the poison and requeue the failures one by one, then ack the rest at once."""
        last_good: Delivery | None = None
        longest_pause = 0.0
        for (delivery, envelope), outcome in zip(readable, outcomes, strict=True):
            extra = delivery.log_context
            if outcome.result is Result.POISON:
                self._dead_letter(delivery, outcome.error)
            elif outcome.result is Result.FAILED:
                attempt = delivery.attempt
                log.error(
                    "%s: handler failed (attempt %d): %s; requeued",
                    self.queue,
                    attempt,
                    outcome.error,
                    exc_info=outcome.error,
                    extra=extra,
                )
                self.stats.requeued += 1
                longest_pause = max(longest_pause, min(0.1 * 2**attempt, self.max_retry_delay))
                delivery.requeue()
            elif outcome.result is Result.DUPLICATE:
                self.stats.duplicates += 1
                log.info("%s: duplicate %s ignored", self.queue, envelope.type, extra=extra)
                last_good = delivery
            else:
                self.stats.handled += 1
                log.debug("%s: handled %s", self.queue, envelope.type, extra=extra)
                last_good = delivery
        if last_good is not None:
            last_good.ack(multiple=True)  # every delivery of the batch not settled above
        if longest_pause:
            self.pause(longest_pause)  # a failing message does not come straight back

    def _dead_letter(self, delivery: Delivery, error: BaseException | None) -> None:
        log.error(
            "%s: poison message dead-lettered: %s", self.queue, error, extra=delivery.log_context
        )
        self.stats.dead_lettered += 1
        delivery.reject()

    def _in_one_transaction(self, readable: list[tuple[Delivery, Envelope]]) -> list[Outcome]:
        """Inbox + handler for every message, in one transaction; what became of each."""
        outage = Backoff(base=0.5, cap=10.0)
        while True:
            try:
                outcomes = self._handle_all([envelope for _, envelope in readable])
                if self.after_commit is not None and any(
                    o.result is Result.HANDLED for o in outcomes
                ):
                    self.after_commit()
                return outcomes
            except (OperationalError, DBAPIError) as error:
                if _conflict(error):  # a deadlock with a concurrent consumer: at once again
                    log.info("%s: deadlock with another consumer; batch retried", self.queue)
                    continue
                if not _database_unreachable(error):
                    if len(readable) > 1:  # find the one that fails: each on its own
                        return [self._in_one_transaction([item])[0] for item in readable]
                    return [Outcome(Result.FAILED, error)]
                if self._stop.is_set():
                    raise _GiveUp() from error
                delay = outage.next_delay()
                log.warning(
                    "%s: database unavailable (%s); %d messages kept, retrying in %.1f s",
                    self.queue,
                    error.orig,
                    len(readable),
                    delay,
                )
                self.pause(delay)

    def _handle_all(self, envelopes: list[Envelope]) -> list[Outcome]:
        """Every message of the batch in one transaction: first all at once, with no
        SAVEPOINT and the outbox rows in one INSERT; if one fails, that transaction is
        rolled back and the batch goes again with a SAVEPOINT per message, so that only the
        failing ones are undone (the one that failed is not tried twice)."""
        try:
            with self._sessions() as session, session.begin():
                return self._handle_quickly(session, envelopes)
        except _Careful as failed:
            with self._sessions() as session, session.begin():
                return self._handle_carefully(session, envelopes, failed)

    def _new(self, session: Session, envelopes: list[Envelope]) -> list[bool]:
        """Record the batch in the inbox; for each message, whether it is new (not handled
        before, and not a second copy of one earlier in this batch)."""
        fresh = first_deliveries(
            session, self.inbox_model, self.queue, [(e.message_id, e.type) for e in envelopes]
        )
        new = []
        for envelope in envelopes:
            new.append(envelope.message_id in fresh)
            fresh.discard(envelope.message_id)
        return new

    def _handle_quickly(self, session: Session, envelopes: list[Envelope]) -> list[Outcome]:
        batch_writes.start(session)
        news = self._new(session, envelopes)
        read_ahead = getattr(self.handler, "read_ahead", None)  # a Routes has one
        if read_ahead is not None:
            fresh = [envelope for envelope, new in zip(envelopes, news, strict=True) if new]
            read_ahead(session, fresh)
        outcomes: list[Outcome] = []
        for index, (envelope, new) in enumerate(zip(envelopes, news, strict=True)):
            if not new:
                outcomes.append(Outcome(Result.DUPLICATE))
                continue
            outcome = self._try(session, envelope)
            if outcome.result is not Result.HANDLED:
                raise _Careful(index, outcome)
            outcomes.append(outcome)
        return outcomes

    def _handle_carefully(
        self, session: Session, envelopes: list[Envelope], failed: _Careful
    ) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for index, (envelope, new) in enumerate(
            zip(envelopes, self._new(session, envelopes), strict=True)
        ):
            if not new:
                outcomes.append(Outcome(Result.DUPLICATE))
                continue
            if index == failed.index:
                outcomes.append(failed.outcome)  # what it did the first time
                continue
            savepoint = session.begin_nested()  # a failure rolls back only this message
            outcome = self._try(session, envelope)
            if outcome.result is Result.HANDLED:
                savepoint.commit()
            else:
                savepoint.rollback()
            outcomes.append(outcome)
        undone = [
            envelope.message_id
            for envelope, outcome in zip(envelopes, outcomes, strict=True)
            if outcome.result in (Result.POISON, Result.FAILED)
        ]
        forget(session, self.inbox_model, self.queue, undone)
        return outcomes

    def _try(self, session: Session, envelope: Envelope) -> Outcome:
        """The handler on one message: HANDLED, POISON or FAILED. A database that went away,
        or a deadlock, is not the message's fault: it is raised for the whole batch."""
        try:
            self.handler(session, envelope)
            _between(session)
        except PoisonMessage as error:
            return Outcome(Result.POISON, error)
        except (OperationalError, DBAPIError) as error:
            if _database_unreachable(error) or _conflict(error):
                raise  # the whole batch waits for the database, or goes again
            return Outcome(Result.FAILED, error)
        except Exception as error:  # a bug or a transient fault: the delivery limit judges
            return Outcome(Result.FAILED, error)
        return Outcome(Result.HANDLED)


class Result(Enum):
    HANDLED = "handled"
    DUPLICATE = "duplicate"
    POISON = "poison"
    FAILED = "failed"


@dataclass(frozen=True)
class Outcome:
    result: Result
    error: BaseException | None = None


def _between(session: Session) -> None:
    """After each message: write what it changed, and forget what the session remembers, so
    the next message of the batch reads the rows as they are now, as it would in a
    transaction of its own (a handler may change rows with Core statements, which the
    session's objects would not see)."""
    session.flush()
    session.expire_all()


class _Careful(Exception):
    """Message `index` of the batch failed: do the batch again, a SAVEPOINT per message."""

    def __init__(self, index: int, outcome: Outcome) -> None:
        super().__init__(index)
        self.index = index
        self.outcome = outcome


class _GiveUp(Exception):
    """Stop requested while the database was down: hand the message back to the queue."""


DEADLOCK, SERIALIZATION_FAILURE = "40P01", "40001"  # PostgreSQL's SQLSTATEs


def _conflict(error: DBAPIError) -> bool:
    """A deadlock or serialization failure: nobody's fault, the transaction just goes again."""
    return getattr(error.orig, "sqlstate", None) in (DEADLOCK, SERIALIZATION_FAILURE)


def _database_unreachable(error: DBAPIError) -> bool:
    if _conflict(error):
        return False
    return bool(error.connection_invalidated) or isinstance(error, OperationalError)
