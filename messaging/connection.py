"""Connections to RabbitMQ: one BlockingConnection per thread, heartbeats, reconnects.

pika's BlockingConnection is not thread-safe, so each thread that talks to the broker
opens its own connection with `connect()`. A lost connection is reopened with
exponential backoff and full jitter, with one log line on every loss and recovery.
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

from messaging.settings import redact_url

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


def parameters(amqp_url: str, connection_name: str, *, timeout: float = 5.0) -> pika.URLParameters:
    params = pika.URLParameters(amqp_url)
    if "heartbeat" not in amqp_url:
        params.heartbeat = HEARTBEAT_SECONDS
    params.blocked_connection_timeout = 60
    params.socket_timeout = timeout
    params.stack_timeout = timeout * 2
    params.connection_attempts = 1
    params.client_properties = {"connection_name": connection_name}
    return params


def open_connection(
    amqp_url: str, connection_name: str, *, timeout: float = 5.0
) -> pika.BlockingConnection:
    """One attempt; raises BrokerUnavailable with a readable message."""
    try:
        return pika.BlockingConnection(parameters(amqp_url, connection_name, timeout=timeout))
    except CONNECTION_ERRORS as error:
        raise BrokerUnavailable(
            f"RabbitMQ is not reachable at {redact_url(amqp_url)} ({type(error).__name__})"
        ) from error


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
