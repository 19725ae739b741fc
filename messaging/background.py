"""Two background threads a web process needs, each with its own connection.

`BackgroundPublisher`: request threads hand it messages and wait for the broker's
verdict. It publishes whatever has queued up as one batch and waits once for the
confirms, so twenty concurrent requests cost one round trip, not twenty. While the
broker is unreachable it refuses at once (the caller answers 503) and reconnects in
the background.

`BroadcastListener`: a server-named, exclusive, auto-delete queue bound to some routing
keys of `shop.events`, so that every web process hears an event such as
`flash_sale.sold_out` at once. It reconnects (with a new queue) after a loss.

Both are ReconnectingWorkers (messaging/worker.py) on daemon threads: they die with the
web process.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

from messaging.connection import CONNECTION_ERRORS, BrokerUnavailable
from messaging.envelope import Envelope, PoisonMessage
from messaging.publisher import ConfirmingPublisher, Outcome, Outgoing, PublishFailed
from messaging.topology import EVENTS_EXCHANGE, Topology, ensure_exchanges
from messaging.worker import ReconnectingWorker

log = logging.getLogger(__name__)

MAX_BATCH = 500
IDLE_WAIT = 0.5  # seconds between heartbeats served while nobody publishes
CONFIRM_GRACE = 10.0  # the publisher's own confirm timeout: an answer always comes by then


class BackgroundPublisher(ReconnectingWorker):
    recoverable = (*CONNECTION_ERRORS, PublishFailed)

    def __init__(self, amqp_url: str, name: str, topology: Topology | None) -> None:
        super().__init__(name=name, amqp_url=amqp_url, topology=topology)
        self._pending: queue.SimpleQueue[tuple[Outgoing, Future[Outcome]]] = queue.SimpleQueue()
        self._connected = threading.Event()
        self._stop = threading.Event()
        self._started = False
        self._start_lock = threading.Lock()

    def publish(self, outgoing: Outgoing, timeout: float = 2.0) -> Outcome:
        """The broker's verdict; BrokerUnavailable when it cannot be had within `timeout`."""
        self._ensure_started(timeout)
        if not self._connected.is_set():
            raise BrokerUnavailable("the broker is unreachable; reconnecting")
        verdict: Future[Outcome] = Future()
        self._pending.put((outgoing, verdict))
        try:
            return verdict.result(timeout)
        except FutureTimeout:
            if verdict.cancel():  # not taken yet: it will never be published
                raise BrokerUnavailable(f"no confirm within {timeout:g} s") from None
            try:  # already on the wire: its verdict is the answer
                return verdict.result(CONFIRM_GRACE)
            except FutureTimeout:
                raise BrokerUnavailable("the broker did not confirm") from None

    def close(self) -> None:
        self._stop.set()

    def _ensure_started(self, timeout: float) -> None:
        with self._start_lock:
            if not self._started:
                self._started = True
                self.start_in_background(self._stop)
                self._connected.wait(timeout)  # the first request waits for the connection

    def work(self, connection, channel, stop: threading.Event) -> None:  # type: ignore[no-untyped-def]
        publisher = ConfirmingPublisher(connection, channel)
        self._connected.set()
        try:
            while not stop.is_set():
                batch = self._next_batch()
                if batch:
                    self._publish(publisher, batch)
                else:
                    connection.process_data_events(0)  # heartbeats
        finally:
            self._connected.clear()

    def lost(self, error: BaseException) -> None:
        self._fail_waiting(error)

    def _next_batch(self) -> list[tuple[Outgoing, Future[Outcome]]]:
        try:
            batch = [self._pending.get(timeout=IDLE_WAIT)]  # a put wakes it at once
        except queue.Empty:
            return []
        while len(batch) < MAX_BATCH:
            try:
                batch.append(self._pending.get_nowait())
            except queue.Empty:
                break
        # A caller that gave up cancelled its future: that message is dropped, not sent.
        return [item for item in batch if item[1].set_running_or_notify_cancel()]

    def _publish(
        self, publisher: ConfirmingPublisher, batch: Sequence[tuple[Outgoing, Future[Outcome]]]
    ) -> None:
        try:
            outcomes = publisher.publish_batch([outgoing for outgoing, _ in batch])
        except BaseException as error:
            for _, verdict in batch:
                verdict.set_exception(BrokerUnavailable(f"publishing failed: {error}"))
            raise
        for (_, verdict), outcome in zip(batch, outcomes, strict=True):
            verdict.set_result(outcome)

    def _fail_waiting(self, error: BaseException) -> None:
        while True:
            try:
                _, verdict = self._pending.get_nowait()
            except queue.Empty:
                return
            if verdict.set_running_or_notify_cancel():  # skip the ones their caller cancelled
                verdict.set_exception(BrokerUnavailable(f"the broker went away: {error}"))


class BroadcastListener(ReconnectingWorker):
    def __init__(self, amqp_url: str, name: str, routing_keys: Sequence[str]) -> None:
        super().__init__(name=name, amqp_url=amqp_url, topology=None)
        self.after_loss = "listening again with a new queue"
        self.routing_keys = routing_keys
        self.on_event: Callable[[Envelope], None] = lambda _envelope: None
        self._stop = threading.Event()
        self.listening = threading.Event()

    def start(self, on_event: Callable[[Envelope], None]) -> None:
        """Listen in the background; `on_event` is called (on that thread) for each event."""
        self.on_event = on_event
        self.start_in_background(self._stop)

    def close(self) -> None:
        self._stop.set()

    def work(self, connection, channel, stop: threading.Event) -> None:  # type: ignore[no-untyped-def]
        ensure_exchanges(channel)  # the admin's: declared here only where it is missing
        mine = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
        for key in self.routing_keys:
            channel.queue_bind(mine, EVENTS_EXCHANGE, key)
        self.listening.set()
        try:
            for method, properties, body in channel.consume(
                mine, auto_ack=True, inactivity_timeout=0.5
            ):
                if stop.is_set():
                    break
                if method is not None:
                    self._deliver(properties, body)
        finally:
            self.listening.clear()

    def _deliver(self, properties, body) -> None:  # type: ignore[no-untyped-def]
        try:
            self.on_event(Envelope.from_delivery(properties, body))
        except PoisonMessage as error:
            log.warning("%s: unreadable broadcast ignored: %s", self.name, error)
