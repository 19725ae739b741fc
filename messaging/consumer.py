"""The consumer runner: one queue, one handler, batches of messages, acks after commit,
poison to the DLQ.

It takes what the prefetch holds, or what arrives within a few milliseconds of the first
message, and handles that batch in one transaction:
  1. read each envelope; one that cannot be read is rejected without requeue (-> `.dead`);
  2. record every message in the inbox with one INSERT (the duplicates stop here), then call
     the handler for each, each inside a SAVEPOINT, so a message that fails rolls back only
     itself (and its inbox row is taken back); commit once;
  3. after the commit: reject the poison, requeue the failures, and ack all the rest with one
     `basic_ack(multiple=True)`. A crash before the ack means a redelivery of the batch,
     which the inbox turns into no-ops.

A handler raises `PoisonMessage` for input that can never succeed (dead-lettered at
once). Any other exception is transient: the message is requeued after a short pause,
and the queue's delivery limit dead-letters it if it keeps failing. A database that is
down is not the messages' fault: the runner keeps the batch and retries until the
database answers, so an outage does not burn their delivery attempts. A deadlock with a
concurrent consumer (PostgreSQL, competing consumers) retries the batch at once.

A queue carries several message types; `Routes` gives each its handler and the model its
body must match (a body that does not is poison), and says which types the consumer reads
(the contract tests and docs/asyncapi.yaml are built from it).

Between batches the runner prunes its queue's inbox rows older than the inbox's
retention, a small batch at a time (messaging/retention.py).

`stop` (set by SIGTERM in the service's main) lets the batch in hand finish.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

import pika
from pika.adapters.blocking_connection import BlockingChannel
from pydantic import BaseModel
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from messaging.connection import Backoff
from messaging.database import make_session_factory
from messaging.delivery import Delivery
from messaging.envelope import Envelope, PoisonMessage
from messaging.inbox import InboxColumns, first_deliveries, forget
from messaging.retention import PRUNE_BATCH_SIZE, PRUNE_INTERVAL, Pruner
from messaging.topology import Topology
from messaging.worker import ReconnectingWorker

log = logging.getLogger(__name__)

Handler = Callable[[Session, Envelope], None]
IDLE_WAIT = 0.5  # seconds an idle consumer waits for a message before it looks at `stop`


@dataclass(frozen=True)
class Route:
    """Messages of one type: the model their body must match, and what handles them."""

    event: str
    model: type[BaseModel]
    handler: Handler


class Routes:
    """One handler per message type; a type the queue should never carry is poison.

    Called as a handler, it validates the body against the route's model first (poison if
    it does not match; the handler's own `envelope.body_as(model)` then costs nothing).
    """

    def __init__(self, *routes: Route) -> None:
        self.by_type: Mapping[str, Route] = {route.event: route for route in routes}
        if len(self.by_type) != len(routes):
            raise ValueError("two routes for one message type")

    @property
    def models(self) -> dict[str, type[BaseModel]]:
        """{message type: the model its body must match}: what this consumer reads."""
        return {event: route.model for event, route in self.by_type.items()}

    def __call__(self, session: Session, envelope: Envelope) -> None:
        route = self.by_type.get(envelope.type)
        if route is None:
            raise PoisonMessage(f"no handler for message type {envelope.type!r}")
        envelope.body_as(route.model)
        route.handler(session, envelope)


@dataclass
class ConsumerStats:
    handled: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    requeued: int = 0


class QueueWorker(ReconnectingWorker):
    """Consumes one queue with a prefetch, reconnecting whenever the broker goes away.

    Subclasses say what to do with a delivery in `handle`; they must ack, reject or
    requeue it before returning.
    """

    def __init__(
        self,
        *,
        queue: str,
        engine: Engine,
        amqp_url: str,
        topology: Topology | None,
        name: str | None = None,
        prefetch: int = 100,
        gather_seconds: float = 0.002,
    ) -> None:
        super().__init__(name=name or f"consumer {queue}", amqp_url=amqp_url, topology=topology)
        self.queue = queue
        self.prefetch = prefetch  # also the most messages one batch takes
        self.gather_seconds = gather_seconds
        self.after_loss = f"unacked messages return to {queue}"
        self.stats = ConsumerStats()
        self._sessions = make_session_factory(engine)
        self._stop = threading.Event()
        self._connection: pika.BlockingConnection | None = None

    def run(self, stop: threading.Event) -> None:
        self._stop = stop
        super().run(stop)
        log.info("%s: %s", self.name, self.stats)

    def work(
        self, connection: pika.BlockingConnection, channel: BlockingChannel, stop: threading.Event
    ) -> None:
        self._connection = connection
        channel.basic_qos(prefetch_count=self.prefetch)
        arrived: list[Delivery] = []
        channel.basic_consume(
            self.queue,
            lambda ch, method, properties, body: arrived.append(
                Delivery.from_pika(ch, method, properties, body)
            ),
        )
        log.info("%s: consuming %s", self.name, self.queue)
        while not stop.is_set():
            if not arrived:  # idle: wait (serving heartbeats) for the next message
                connection.process_data_events(time_limit=IDLE_WAIT)
            if arrived:
                self._gather(connection, arrived)
                batch, arrived[:] = arrived[: self.prefetch], arrived[self.prefetch :]
                self.handle_batch(batch)
            self.between_messages()
        # What was prefetched but not started goes back to the queue when the loop closes
        # the connection (unacked deliveries are requeued).

    def _gather(self, connection: pika.BlockingConnection, arrived: list[Delivery]) -> None:
        """Wait a few milliseconds for more, up to a full batch: one transaction for many."""
        deadline = time.monotonic() + self.gather_seconds
        while len(arrived) < self.prefetch:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            connection.process_data_events(time_limit=remaining)

    def pause(self, seconds: float) -> None:
        """Wait while serving the connection's heartbeats."""
        assert self._connection is not None
        self._connection.sleep(seconds)

    def handle_batch(self, deliveries: Sequence[Delivery]) -> None:
        """Settle every delivery of the batch (the default: one at a time)."""
        for delivery in deliveries:
            self.handle(delivery)

    def handle(self, delivery: Delivery) -> None:
        raise NotImplementedError

    def between_messages(self) -> None:
        """Called after each delivery and on each idle tick: room for housekeeping."""


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
                with self._sessions() as session, session.begin():
                    outcomes = self._handle_all(session, [envelope for _, envelope in readable])
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

    def _handle_all(self, session: Session, envelopes: list[Envelope]) -> list[Outcome]:
        fresh = first_deliveries(
            session, self.inbox_model, self.queue, [(e.message_id, e.type) for e in envelopes]
        )
        outcomes: list[Outcome] = []
        failed: list[str] = []
        for envelope in envelopes:
            if envelope.message_id not in fresh:
                outcomes.append(Outcome(Result.DUPLICATE))
                continue
            fresh.discard(envelope.message_id)  # a second copy in this batch is a duplicate
            try:
                with session.begin_nested():  # a SAVEPOINT: a failure rolls back only this one
                    self.handler(session, envelope)
            except PoisonMessage as error:
                outcomes.append(Outcome(Result.POISON, error))
            except (OperationalError, DBAPIError) as error:
                if _database_unreachable(error) or _conflict(error):
                    raise  # the whole batch waits for the database, or goes again
                outcomes.append(Outcome(Result.FAILED, error))
            except Exception as error:  # a bug or a transient fault: the delivery limit judges
                outcomes.append(Outcome(Result.FAILED, error))
            else:
                outcomes.append(Outcome(Result.HANDLED))
                continue
            failed.append(envelope.message_id)
        forget(session, self.inbox_model, self.queue, failed)
        return outcomes


class Result(Enum):
    HANDLED = "handled"
    DUPLICATE = "duplicate"
    POISON = "poison"
    FAILED = "failed"


@dataclass(frozen=True)
class Outcome:
    result: Result
    error: BaseException | None = None


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
