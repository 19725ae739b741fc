"""Small helpers to look at what reached the broker, waiting on conditions with deadlines."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pika

from messaging.connection import open_connection
from shop import local_servers
from shop.catalog import CATALOG


@dataclass
class Received:
    routing_key: str
    properties: pika.BasicProperties
    body: bytes


def wait_until(condition: Callable[[], object], timeout: float = 15.0, what: str = "condition"):
    """Poll `condition` until it is truthy; fail the test with `what` at the deadline."""
    try:
        return local_servers.wait_until(condition, timeout, what, pause=0.05)
    except TimeoutError as error:
        raise AssertionError(str(error)) from None


def declare(amqp_url: str, flash_sale_queue_limit: int = 1000) -> None:
    """The shop's whole topology (the flash-sale queue with this limit)."""
    settings = CATALOG.default_settings().with_changes(
        flash_sale_queue_limit=flash_sale_queue_limit
    )
    connection = open_connection(amqp_url, "tests: declare")
    try:
        CATALOG.topology(settings).declare(connection.channel())
    finally:
        connection.close()


def queue_depth(amqp_url: str, queue: str) -> int:
    connection = open_connection(amqp_url, "tests: depth")
    try:
        return connection.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        connection.close()


def take_all(amqp_url: str, queue: str, expected: int, timeout: float = 15.0) -> list[Received]:
    """Wait until `queue` holds at least `expected` messages, then take (ack) all of them."""
    wait_until(
        lambda: queue_depth(amqp_url, queue) >= expected,
        timeout,
        f"{expected} messages in {queue} (it has {queue_depth(amqp_url, queue)})",
    )
    connection = open_connection(amqp_url, "tests: take")
    try:
        channel = connection.channel()
        received = []
        while True:
            method, properties, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return received
            received.append(Received(method.routing_key, properties, body))
    finally:
        connection.close()


def publish_raw(
    amqp_url: str, queue: str, body: bytes, properties: pika.BasicProperties | None = None
) -> None:
    """Publish straight into a queue (default exchange), confirmed: test input, poison too."""
    connection = open_connection(amqp_url, "tests: publish")
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish("", queue, body, properties or pika.BasicProperties(), mandatory=True)
    finally:
        connection.close()
