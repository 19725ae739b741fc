"""Connections to RabbitMQ: one BlockingConnection per thread, heartbeats, reconnects.

pika's BlockingConnection is not thread-safe, so each thread that talks to the broker
opens its own connection with `connect()`. A lost connection is reopened with
exponential backoff and full jitter, with one log line on every loss and recovery.

AMQP_URL may list the nodes of one cluster (`amqp://a:5672/%2F,amqp://b:5672/%2F`): every
connection tries them in turn, so when its node goes away the reconnect lands on another.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pika
import pika.exceptions

from messaging.settings import amqp_urls, redact_url

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 30

# Everything pika raises when the broker goes away or refuses us.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    pika.exceptions.AMQPConnectionError,
    pika.exceptions.AMQPChannelError,
    pika.exceptions.StreamLostError,
    ConnectionError,
    OSError,
)


class BrokerUnavailable(RuntimeError):
    """No broker answered at the configured URL."""


@dataclass
class Backoff:
    """Exponential backoff with full jitter: sleep a random time up to base * 2**attempt."""

    base: float = 0.25
    cap: float = 15.0
    attempt: int = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * (2**self.attempt))
        self.attempt += 1
        return random.uniform(self.base / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0


def parameters(
    amqp_url: str, connection_name: str, *, timeout: float = 5.0
) -> list[pika.URLParameters]:
    """The connection parameters of every node AMQP_URL lists, in its order."""
    return [_node_parameters(url, connection_name, timeout) for url in amqp_urls(amqp_url)]


def _node_parameters(url: str, connection_name: str, timeout: float) -> pika.URLParameters:
    params = pika.URLParameters(url)
    if "heartbeat" not in url:
        params.heartbeat = HEARTBEAT_SECONDS
    params.blocked_connection_timeout = 60
    params.socket_timeout = timeout
    params.stack_timeout = timeout * 2
    params.connection_attempts = 1
    params.client_properties = {"connection_name": connection_name}
    return params


# Where a connection starts: the node of AMQP_URL that answered last in this process
# (the first one until then), then the ones after it, wrapping around. The list's order is
# a preference, so where clients are is predictable (all on the first node while it
# lives; spreading them is a matter of giving services differently ordered lists), and a
# dead node costs one refused or timed-out attempt per process at a failover, not one on
# every reconnect after it. (A random start would spread clients by itself, but then
# nobody could say which node a process is on, nor test a failover.)
_last_answered: dict[str, int] = {}


def open_connection(
    amqp_url: str, connection_name: str, *, timeout: float = 5.0
) -> pika.BlockingConnection:
    """One attempt at each node in turn; raises BrokerUnavailable with a readable message."""
    urls = amqp_urls(amqp_url)
    nodes = parameters(amqp_url, connection_name, timeout=timeout)
    start = _last_answered.get(amqp_url, 0) % len(nodes)
    order = [(start + step) % len(nodes) for step in range(len(nodes))]
    try:
        # pika tries a sequence of parameters in order, one attempt each.
        connection = pika.BlockingConnection([nodes[index] for index in order])
    except CONNECTION_ERRORS as error:
        raise BrokerUnavailable(
            f"RabbitMQ is not reachable at {redact_url(amqp_url)} ({type(error).__name__})"
        ) from error
    answered = _node_of(connection, nodes)
    if answered is None:
        return connection
    if answered != start:
        log.warning(
            "%s: connected to RabbitMQ at %s (node %d of %d); %s did not answer",
            connection_name,
            redact_url(urls[answered]),
            answered + 1,
            len(urls),
            ", ".join(redact_url(urls[index]) for index in order[: order.index(answered)]),
        )
    _last_answered[amqp_url] = answered
    return connection


def _node_of(connection: pika.BlockingConnection, nodes: list[pika.URLParameters]) -> int | None:
    """Which of `nodes` the connection went to. pika keeps the parameters that worked on
    the connection underneath (BlockingConnection has no public accessor for them)."""
    params = getattr(getattr(connection, "_impl", None), "params", None)
    for index, node in enumerate(nodes):
        if params is not None and (params.host, params.port) == (node.host, node.port):
            return index
    return None


def connect_with_retry(
    amqp_url: str, connection_name: str, stop: threading.Event | None = None
) -> pika.BlockingConnection | None:
    """Keep trying until connected; None when `stop` is set first."""
    backoff = Backoff()
    while stop is None or not stop.is_set():
        try:
            connection = open_connection(amqp_url, connection_name)
        except BrokerUnavailable as error:
            delay = backoff.next_delay()
            log.warning("%s; retrying in %.1f s", error, delay)
            if stop is not None:
                stop.wait(delay)
            else:
                threading.Event().wait(delay)
            continue
        if backoff.attempt:
            log.info("connected to RabbitMQ again after %d failed attempts", backoff.attempt)
        return connection
    return None


@contextmanager
def channel_for(
    amqp_url: str, connection_name: str
) -> Iterator[pika.adapters.blocking_connection.BlockingChannel]:
    """A short-lived connection and channel for a command-line task."""
    connection = open_connection(amqp_url, connection_name)
    try:
        yield connection.channel()
    finally:
        close_quietly(connection)


def close_quietly(connection: pika.BlockingConnection | None) -> None:
    if connection is None:
        return
    try:
        if connection.is_open:
            connection.close()
    except CONNECTION_ERRORS:
        pass
