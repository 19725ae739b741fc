"""Publishing with publisher confirms and `mandatory`, one message or a whole batch.

pika's BlockingChannel only offers synchronous confirms: each publish waits for its own
Basic.Ack, a full round trip per message (`make bench` shows what that costs). The relay
needs throughput, so this publisher works on the channel underneath (`channel._impl`):
it turns confirms on there, writes a whole batch without flushing after each message,
and then waits once for the acks, which the broker sends cumulatively (`multiple=True`).
The blocking connection returns from `process_data_events` early only for events of its
own, so the last confirm schedules an empty callback to end the wait at once.
A Basic.Return (mandatory, no queue bound) arrives before the ack of the same message, so
the message is reported unroutable, not published.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import takewhile

import pika
from pika.adapters.blocking_connection import BlockingChannel

from messaging.envelope import Envelope
from messaging.topology import EVENTS_EXCHANGE


class PublishFailed(RuntimeError):
    """The broker refused a message, could not route it, or did not confirm in time."""


@dataclass(frozen=True)
class Outcome:
    """What the broker said of one message of a batch."""

    confirmed: bool
    error: str | None = None


@dataclass(frozen=True)
class Outgoing:
    """One message to publish: where to, and what."""

    exchange: str
    routing_key: str
    body: bytes
    properties: pika.BasicProperties
    mandatory: bool = True  # a message no queue takes is an error, not silence

    @classmethod
    def event(cls, envelope: Envelope, *, broadcast: bool = False) -> Outgoing:
        """A domain event for `shop.events`, routed by its type. A broadcast is published
        without `mandatory`: nobody listening is normal for it (messaging/topology.py)."""
        return cls(
            EVENTS_EXCHANGE,
            envelope.type,
            envelope.encoded_body(),
            envelope.properties(),
            mandatory=not broadcast,
        )

    @classmethod
    def to_queue(cls, queue: str, envelope: Envelope, **properties: object) -> Outgoing:
        """Straight into one queue through the default exchange (commands, RPC)."""
        return cls("", queue, envelope.encoded_body(), envelope.properties(**properties))


class ConfirmingPublisher:
    """Publishes on one channel in confirm mode; not thread-safe (one per thread)."""

    def __init__(
        self,
        connection: pika.BlockingConnection,
        channel: BlockingChannel,
        confirm_timeout: float = 10.0,
    ) -> None:
        self._connection = connection
        self._channel = channel
        self._confirm_timeout = confirm_timeout
        self._next_tag = 1
        self._pending: dict[int, int] = {}  # delivery tag -> index in the batch
        self._outcomes: dict[int, Outcome] = {}
        self._returned: dict[str, str] = {}  # message_id -> reason
        self._select_ok = False
        impl = channel._impl  # the async channel under the blocking one; see the docstring
        impl.add_on_return_callback(self._on_return)
        impl.confirm_delivery(ack_nack_callback=self._on_confirm, callback=self._on_select_ok)
        self._wait_until(lambda: self._select_ok, "confirm.select-ok")

    def publish(self, outgoing: Outgoing) -> None:
        """Publish one message and wait for its confirm; raise PublishFailed if refused."""
        (outcome,) = self.publish_batch([outgoing])
        if not outcome.confirmed:
            raise PublishFailed(outcome.error or "not confirmed")

    def publish_batch(self, batch: Sequence[Outgoing]) -> list[Outcome]:
        """Publish every message, then wait for all confirms; one Outcome per message."""
        self._pending.clear()
        self._outcomes.clear()
        self._returned.clear()
        channel = self._channel._impl  # publish without a flush per message
        for index, outgoing in enumerate(batch):
            self._pending[self._next_tag] = index
            self._next_tag += 1
            channel.basic_publish(
                exchange=outgoing.exchange,
                routing_key=outgoing.routing_key,
                body=outgoing.body,
                properties=outgoing.properties,
                mandatory=outgoing.mandatory,
            )
        try:
            self._wait_until(lambda: not self._pending, "publisher confirms")
        except PublishFailed as error:
            for index in self._pending.values():
                self._outcomes[index] = Outcome(False, str(error))
            self._pending.clear()
        outcomes = [self._outcomes[index] for index in range(len(batch))]
        for index, outgoing in enumerate(batch):
            reason = self._returned.get(outgoing.properties.message_id)
            if reason is not None:
                outcomes[index] = Outcome(False, reason)
        return outcomes

    def _wait_until(self, condition, what: str) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + self._confirm_timeout
        while not condition():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PublishFailed(f"no {what} within {self._confirm_timeout:.0f} s")
            self._connection.process_data_events(time_limit=min(remaining, 0.25))

    def _on_select_ok(self, _frame) -> None:  # type: ignore[no-untyped-def]
        self._select_ok = True
        self._wake()

    def _wake(self) -> None:
        """End the current process_data_events() wait now, not at its time limit."""
        self._connection.add_callback_threadsafe(lambda: None)

    def _on_return(self, _channel, method, properties, _body) -> None:  # type: ignore[no-untyped-def]
        self._returned[properties.message_id] = (
            f"unroutable: no queue is bound to {method.exchange!r} "
            f"for routing key {method.routing_key!r}"
        )

    def _on_confirm(self, frame) -> None:  # type: ignore[no-untyped-def]
        method = frame.method
        acked = isinstance(method, pika.spec.Basic.Ack)
        if method.multiple:  # every tag up to this one; _pending is in tag order
            tags = list(takewhile(lambda tag: tag <= method.delivery_tag, self._pending))
        else:
            tags = [method.delivery_tag]
        for tag in tags:
            index = self._pending.pop(tag, None)
            if index is None:
                continue
            self._outcomes[index] = (
                Outcome(True) if acked else Outcome(False, "nacked by the broker")
            )
        if not self._pending:
            self._wake()
