"""Dead-letter queues: see what is in `<queue>.dead` and why, and replay it.

`shop dlq list <queue>` reads the dead letters without removing them (each is fetched,
then handed back unacked). `shop dlq replay <queue>` moves each dead letter back to its
work queue with publisher confirms, acking the dead copy only after the broker confirmed
the new one, so a crash mid-replay duplicates at worst and never loses (the inbox
absorbs duplicates).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pika
from pika.adapters.blocking_connection import BlockingChannel

from messaging.publisher import ConfirmingPublisher, Outgoing
from messaging.topology import Topology

PREVIEW_CHARS = 200


class UnknownQueue(ValueError):
    """The name is not a work queue of the topology."""


@dataclass(frozen=True)
class DeadLetter:
    message_id: str | None
    type: str | None
    reason: str
    deaths: int
    body_preview: str


def dead_letter_queue(topology: Topology, queue: str) -> str:
    """`<queue>.dead`; UnknownQueue when `queue` is not a work queue of the topology."""
    try:
        return topology.queue(queue).dead_letter_queue
    except KeyError as error:
        raise UnknownQueue(error.args[0]) from None


def list_dead_letters(
    channel: BlockingChannel, topology: Topology, queue: str, limit: int = 100
) -> list[DeadLetter]:
    dead_queue = dead_letter_queue(topology, queue)
    letters: list[DeadLetter] = []
    last_tag = None
    while len(letters) < limit:
        method, properties, body = channel.basic_get(dead_queue, auto_ack=False)
        if method is None:
            break
        last_tag = method.delivery_tag
        letters.append(_describe(properties, body))
    if last_tag is not None:
        channel.basic_nack(last_tag, multiple=True, requeue=True)
    return letters


def replay_dead_letters(
    connection: pika.BlockingConnection, channel: BlockingChannel, topology: Topology, queue: str
) -> int:
    """Move every dead letter present now back to `queue`; returns how many moved."""
    dead_queue = dead_letter_queue(topology, queue)
    waiting = channel.queue_declare(dead_queue, passive=True).method.message_count
    publisher_channel = connection.channel()
    publisher = ConfirmingPublisher(connection, publisher_channel)
    moved = 0
    for _ in range(waiting):
        method, properties, body = channel.basic_get(dead_queue, auto_ack=False)
        if method is None:
            break
        publisher.publish(Outgoing("", queue, body, properties))
        channel.basic_ack(method.delivery_tag)
        moved += 1
    return moved


def _describe(properties: pika.BasicProperties, body: bytes) -> DeadLetter:
    headers: dict[str, Any] = properties.headers or {}
    deaths = headers.get("x-death") or []
    reason = headers.get("x-first-death-reason")
    if isinstance(reason, bytes):
        reason = reason.decode()
    if deaths:
        latest = deaths[0]
        reason = latest.get("reason", reason)
        if isinstance(reason, bytes):
            reason = reason.decode()
    try:
        preview = json.dumps(json.loads(body))[:PREVIEW_CHARS]
    except (UnicodeDecodeError, json.JSONDecodeError):
        preview = repr(body[:PREVIEW_CHARS])
    return DeadLetter(
        message_id=properties.message_id,
        type=properties.type,
        reason=str(reason or "unknown"),
        deaths=sum(int(d.get("count", 1)) for d in deaths) or 1,
        body_preview=preview,
    )
