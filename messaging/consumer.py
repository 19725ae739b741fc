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

A queue carries several message types; `Routes` gives each its handler and the model its
body must match (a body that does not is poison), and says which types the consumer reads
(the contract tests and docs/asyncapi.yaml are built from it).

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
from pydantic import BaseModel
from sqlalchemy import Engine, event
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from messaging.connection import Backoff
from messaging.database import make_session_factory
from messaging.delivery import Delivery
from messaging.envelope import Envelope, PoisonMessage
from messaging.inbox import InboxColumns, first_delivery
from messaging.retention import PRUNE_BATCH_SIZE, PRUNE_INTERVAL, Pruner
from messaging.topology import Topology
from messaging.worker import ReconnectingWorker

log = logging.getLogger(__name__)

Handler = Callable[[Session, Envelope], None]


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
        prefetch: int = 20,
    ) -> None:
        super().__init__(name=name or f"consumer {queue}", amqp_url=amqp_url, topology=topology)
        self.queue = queue
        self.prefetch = prefetch
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
        log.info("%s: consuming %s", self.name, self.queue)
        for method, properties, body in channel.consume(self.queue, inactivity_timeout=0.25):
            if stop.is_set():
                break
            if method is not None:
                self.handle(Delivery.from_pika(channel, method, properties, body))
            self.between_messages()
        # Hand back what was prefetched but not started; the loop closes the connection.
        channel.cancel()

    def pause(self, seconds: float) -> None:
        """Wait while serving the connection's heartbeats."""
        assert self._connection is not None
        self._connection.sleep(seconds)

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

    def handle(self, delivery: Delivery) -> None:
        extra = delivery.log_context
        try:
            envelope = Envelope.from_delivery(delivery.properties, delivery.body)
            duplicate = self._handle_in_transaction(envelope)
        except PoisonMessage as error:
            log.error("%s: poison message dead-lettered: %s", self.queue, error, extra=extra)
            self.stats.dead_lettered += 1
            delivery.reject()
            return
        except _GiveUp:
            delivery.requeue()
            return
        except Exception as error:  # a bug or a transient fault: let the delivery limit judge
            attempt = delivery.attempt
            log.exception(
                "%s: handler failed (attempt %d): %s; requeued",
                self.queue,
                attempt,
                error,
                extra=extra,
            )
            self.stats.requeued += 1
            self.pause(min(0.1 * 2**attempt, self.max_retry_delay))
            delivery.requeue()
            return
        if duplicate:
            self.stats.duplicates += 1
            log.info("%s: duplicate %s ignored", self.queue, envelope.type, extra=extra)
        else:
            self.stats.handled += 1
            log.debug("%s: handled %s", self.queue, envelope.type, extra=extra)
        delivery.ack()

    def _handle_in_transaction(self, envelope: Envelope) -> bool:
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
                    if self.after_commit is not None:
                        event.listen(session, "after_commit", self._committed, once=True)
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
                self.pause(delay)

    def _committed(self, _session: Session) -> None:
        assert self.after_commit is not None
        self.after_commit()


class _GiveUp(Exception):
    """Stop requested while the database was down: hand the message back to the queue."""


def _database_unreachable(error: DBAPIError) -> bool:
    return bool(error.connection_invalidated) or isinstance(error, OperationalError)
