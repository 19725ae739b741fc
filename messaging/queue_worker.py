"""The loop every consumer of a queue runs: a prefetch, batches, reconnects.

`QueueWorker` consumes one queue (a ReconnectingWorker: messaging/worker.py). It takes
a batch (half the prefetch, or what arrives within a few milliseconds of the first
message: 10 under traffic, 2 after a quiet spell) and hands it to `handle_batch` (by
default one `handle` per delivery), which must settle every delivery (ack, reject or
requeue) before it returns. Idle, it waits for the next message while serving
heartbeats. Subclasses: the idempotent consumer runner
(messaging/consumer.py) and the RPC server (messaging/rpc.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import pika
from pika.adapters.blocking_connection import BlockingChannel
from sqlalchemy import Engine

from messaging.database import make_session_factory
from messaging.delivery import Delivery
from messaging.topology import Topology
from messaging.worker import ReconnectingWorker

log = logging.getLogger(__name__)

IDLE_WAIT = 0.5  # seconds an idle consumer waits for a message before it looks at `stop`
# How long a batch waits for more messages once one is in hand: under traffic (the last
# batch had several) long enough to make one transaction of many, which costs the pipeline
# far less CPU than many small ones; after a quiet spell (a batch of one) only a moment,
# so a lone message is not held up.
GATHER_SECONDS, QUIET_GATHER_SECONDS = 0.010, 0.002


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
        prefetch: int = 200,
        gather_seconds: float = GATHER_SECONDS,
    ) -> None:
        super().__init__(name=name or f"consumer {queue}", amqp_url=amqp_url, topology=topology)
        self.queue = queue
        self.prefetch = prefetch
        # A batch is half the prefetch: while one is handled (and until its ack), the broker
        # is already sending the next, so the consumer never waits a round trip for work.
        self.batch_size = max(1, prefetch // 2)
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
        busy = False  # whether the last batch had more than one message
        while not stop.is_set():
            if not arrived:  # idle: wait (serving heartbeats) for the next message
                connection.process_data_events(time_limit=IDLE_WAIT)
            if arrived:
                quiet = min(self.gather_seconds, QUIET_GATHER_SECONDS)
                self._gather(connection, arrived, self.gather_seconds if busy else quiet)
                batch, arrived[:] = arrived[: self.batch_size], arrived[self.batch_size :]
                busy = len(batch) > 1
                self.handle_batch(batch)
            self.between_messages()
        # What was prefetched but not started goes back to the queue when the loop closes
        # the connection (unacked deliveries are requeued).

    def _gather(
        self, connection: pika.BlockingConnection, arrived: list[Delivery], seconds: float
    ) -> None:
        """Wait up to `seconds` for more, up to a full batch: one transaction for many."""
        deadline = time.monotonic() + seconds
        while len(arrived) < self.batch_size:
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
