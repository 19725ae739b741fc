"""One message taken from a queue, and what its worker may do with it.

pika hands a consumer four loose values (channel, method, properties, body); a `Delivery`
keeps them together with names that say what each settlement means for the message:

    delivery.ack()       handled: the broker forgets it
    delivery.reject()    never handle it: it goes to the queue's dead-letter queue at once
    delivery.requeue()   not now: back to the queue (the quorum queue counts the attempt)
"""

from __future__ import annotations

from dataclasses import dataclass

import pika
from pika.adapters.blocking_connection import BlockingChannel


@dataclass(frozen=True)
class Delivery:
    channel: BlockingChannel
    tag: int  # the delivery tag: what the settlement names, on this channel only
    properties: pika.BasicProperties
    body: bytes
    redelivered: bool = False

    @classmethod
    def from_pika(
        cls,
        channel: BlockingChannel,
        method: pika.spec.Basic.Deliver,
        properties: pika.BasicProperties,
        body: bytes,
    ) -> Delivery:
        return cls(channel, method.delivery_tag, properties, body, bool(method.redelivered))

    @property
    def message_id(self) -> str | None:
        return self.properties.message_id

    @property
    def attempt(self) -> int:
        """1 for the first delivery; the quorum queue counts the failed ones before it."""
        return int((self.properties.headers or {}).get("x-delivery-count", 0)) + 1

    @property
    def log_context(self) -> dict[str, str | None]:
        """`extra=` for a log line about this message (messaging/logs.py shows both ids)."""
        return {
            "message_id": self.properties.message_id,
            "correlation_id": self.properties.correlation_id,
        }

    def ack(self, *, multiple: bool = False) -> None:
        self.channel.basic_ack(self.tag, multiple=multiple)

    def reject(self) -> None:
        self.channel.basic_reject(self.tag, requeue=False)

    def requeue(self) -> None:
        self.channel.basic_nack(self.tag, requeue=True)
