"""The consumer runner: one queue, one handler, acks after commit, poison to the DLQ.

For each delivery:
  1. read the envelope; if it cannot be read, reject it without requeue (-> `<queue>.dead`);
  2. in one transaction: record the message in the inbox (a duplicate stops here) and call
     the handler; commit;
  3. ack only after the commit. A crash before the ack means a redelivery, which the
     inbox turns into a no-op.

A handler raises `PoisonMessage` for input that can never succeed (dead-lettered at
once). Any other exception is transient: the message is requeued after a short pause,
and the queue's delivery limit dead-letters it if it keeps failing. A database that is
down is not the message's fault: the runner keeps the message and retries until the
database answers, so an outage does not burn the message's delivery attempts.

Between messages the runner prunes its queue's inbox rows older than the inbox's
retention, a small batch at a time (messaging/retention.py).

`stop` (set by SIGTERM in the service's main) lets the message in hand finish.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pika
from pika.adapters.blocking_connection import BlockingChannel
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from messaging.connection import CONNECTION_ERRORS, Backoff, close_quietly, connect_with_retry
from messaging.database import make_session_factory
from messaging.envelope import Envelope, PoisonMessage
from messaging.inbox import InboxColumns, first_delivery
from messaging.retention import PRUNE_BATCH_SIZE, PRUNE_INTERVAL, Pruner
from messaging.topology import declare_topology

log = logging.getLogger(__name__)

Handler = Callable[[Session, Envelope], None]


@dataclass
class ConsumerStats:
    handled: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    requeued: int = 0


class QueueWorker:
    """Consumes one queue with a prefetch, reconnecting whenever the broker goes away.

    Subclasses say what to do with a delivery in `handle_delivery`; they must ack,
    reject or nack it before returning.
    """

    def __init__(
        self,
        *,
        queue: str,
        engine: Engine,
        amqp_url: str,
        flash_sale_queue_limit: int,
        name: str | None = None,
        prefetch: int = 20,
    ) -> None:
        self.queue = queue
        self.amqp_url = amqp_url
        self.flash_sale_queue_limit = flash_sale_queue_limit
        self.name = name or f"consumer {queue}"
        self.prefetch = prefetch
        self.stats = ConsumerStats()
        self._sessions = make_session_factory(engine)
        self._stop = threading.Event()

    def run(self, stop: threading.Event) -> None:
        """Consume until `stop` is set; reconnect whenever the broker goes away."""
        self._stop = stop
        backoff = Backoff()
        while not stop.is_set():
            connection = connect_with_retry(self.amqp_url, self.name, stop)
            if connection is None:
                return
            try:
                channel = connection.channel()
                declare_topology(channel, self.flash_sale_queue_limit)
                channel.basic_qos(prefetch_count=self.prefetch)
                log.info("%s: consuming %s", self.name, self.queue)
                backoff.reset()
                self._consume(connection, channel)
            except CONNECTION_ERRORS as error:
                delay = backoff.next_delay()
                log.warning(
                    "%s lost the broker (%s); unacked messages return to %s; "
                    "reconnecting in %.1f s",
                    self.name,
                    type(error).__name__,
                    self.queue,
                    delay,
                )
                stop.wait(delay)
            finally:
                close_quietly(connection)
        log.info("%s stopped: %s", self.name, self.stats)

    def _consume(self, connection: pika.BlockingConnection, channel: BlockingChannel) -> None:
        for method, properties, body in channel.consume(self.queue, inactivity_timeout=0.25):
            if self._stop.is_set():
                break
            if method is not None:
                self.handle_delivery(connection, channel, method, properties, body)
            self.between_messages()
        # Hand back what was prefetched but not started, then close (the finally above).
        channel.cancel()

    def handle_delivery(self, connection, channel, method, properties, body) -> None:  # type: ignore[no-untyped-def]
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
        **worker_options,  # type: ignore[no-untyped-def]
    ) -> None:
        super().__init__(**worker_options)
        self.handler = handler
        self.inbox_model = inbox_model
        self.max_retry_delay = max_retry_delay
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

    def handle_delivery(self, connection, channel, method, properties, body) -> None:  # type: ignore[no-untyped-def]
        tag = method.delivery_tag
        extra = {"message_id": properties.message_id, "correlation_id": properties.correlation_id}
        try:
            envelope = Envelope.from_delivery(properties, body)
            duplicate = self._handle_in_transaction(connection, envelope)
        except PoisonMessage as error:
            log.error("%s: poison message dead-lettered: %s", self.queue, error, extra=extra)
            self.stats.dead_lettered += 1
            channel.basic_reject(tag, requeue=False)
            return
        except _GiveUp:
            channel.basic_nack(tag, requeue=True)
            return
        except Exception as error:  # a bug or a transient fault: let the delivery limit judge
            attempts = int((properties.headers or {}).get("x-delivery-count", 0)) + 1
            log.exception(
                "%s: handler failed (attempt %d): %s; requeued",
                self.queue,
                attempts,
                error,
                extra=extra,
            )
            self.stats.requeued += 1
            connection.sleep(min(0.1 * 2**attempts, self.max_retry_delay))
            channel.basic_nack(tag, requeue=True)
            return
        if duplicate:
            self.stats.duplicates += 1
            log.info("%s: duplicate %s ignored", self.queue, envelope.type, extra=extra)
        else:
            self.stats.handled += 1
            log.debug("%s: handled %s", self.queue, envelope.type, extra=extra)
        channel.basic_ack(tag)

    def _handle_in_transaction(
        self, connection: pika.BlockingConnection, envelope: Envelope
    ) -> bool:
        """Inbox + handler in one transaction; True if the message was a duplicate."""
        outage = Backoff(base=0.5, cap=10.0)
        while True:
            try:
                with self._sessions() as session, session.begin():
                    if not first_delivery(
                        session,
                        self.inbox_model,
                        queue=self.queue,
                        message_id=envelope.message_id,
                        message_type=envelope.type,
                    ):
                        return True
                    self.handler(session, envelope)
                    return False
            except (OperationalError, DBAPIError) as error:
                if not _database_unreachable(error):
                    raise
                if self._stop.is_set():
                    raise _GiveUp() from error
                delay = outage.next_delay()
                log.warning(
                    "%s: database unavailable (%s); message kept, retrying in %.1f s",
                    self.queue,
                    error.orig,
                    delay,
                )
                connection.sleep(delay)


def route_by_type(handlers: Mapping[str, Handler]) -> Handler:
    """One handler per message type; a type the queue should never carry is poison."""

    def route(session: Session, envelope: Envelope) -> None:
        handler = handlers.get(envelope.type)
        if handler is None:
            raise PoisonMessage(f"no handler for message type {envelope.type!r}")
        handler(session, envelope)

    return route


class _GiveUp(Exception):
    """Stop requested while the database was down: hand the message back to the queue."""


def _database_unreachable(error: DBAPIError) -> bool:
    return bool(error.connection_invalidated) or isinstance(error, OperationalError)
