"""RPC over RabbitMQ, for the few questions that need an answer now (coupon quotes).

Client: publishes the request into the server's queue with `reply_to` set to RabbitMQ's
direct reply-to pseudo-queue (`amq.rabbitmq.reply-to`: no reply queue to declare or
clean up) and a fresh `correlation_id`, then waits for the reply with that id. The
request carries its deadline (header `x-reply-by`, epoch milliseconds), so a server that
comes back late does not act on a question nobody is waiting for: it acks and drops it.
(Not the message `expiration`: the broker would dead-letter every expired request into
`coupons.rpc.dead`, where an operator would find only questions nobody needs answered.)
A reply that arrives after the timeout is recognised by its correlation id and dropped.

Server: a QueueWorker that answers each request on its `reply_to` with the same
`correlation_id` and a body `{"ok": true, ...}` or `{"ok": false, "error": ...}`. A
malformed request gets an error reply, never a crashed server; a request with nowhere
to reply to is dead-lettered.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import pika
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from messaging.connection import (
    CONNECTION_ERRORS,
    BrokerUnavailable,
    close_quietly,
    open_connection,
)
from messaging.delivery import Delivery
from messaging.envelope import CONTENT_TYPE, SCHEMA_VERSION
from messaging.queue_worker import QueueWorker

log = logging.getLogger(__name__)

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
REPLY_BY = "x-reply-by"  # the caller's deadline, epoch milliseconds
CLOCK_SKEW_MS = 1000  # the caller's clock and the server's may differ by this much

RpcHandler = Callable[[Session, dict[str, Any]], dict[str, Any]]


class RpcError(Exception):
    """A handler's refusal, sent back as {"ok": false, "error": message, ...details}."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class RpcTimeout(TimeoutError):
    """No reply in time: the server is down, overloaded or the broker is unreachable."""


class RpcClient:
    """One per thread: it owns a connection. Reconnects on the next call after a failure."""

    def __init__(self, amqp_url: str, app_id: str, timeout: float = 3.0) -> None:
        self.amqp_url = amqp_url
        self.app_id = app_id
        self.timeout = timeout
        self._connection: pika.BlockingConnection | None = None
        self._channel = None
        self._waiting_for: str | None = None
        self._reply: dict[str, Any] | None = None

    def call(self, queue: str, request_type: str, body: dict[str, Any]) -> dict[str, Any]:
        """Send a request and return the reply body; raise RpcTimeout when none comes."""
        for attempt in (1, 2):
            try:
                return self._call(queue, request_type, body)
            except RpcTimeout:
                raise  # a TimeoutError is an OSError: keep it from the branch below
            except (*CONNECTION_ERRORS, BrokerUnavailable) as error:
                # Between calls nobody serves this connection's heartbeats, so after a quiet
                # minute the broker may have dropped it: reconnect and try once more (every
                # request is safe to repeat: quotes read, a reservation is per order id).
                self.close()
                if attempt == 2:
                    log.warning("RPC %s: the broker connection failed: %r", request_type, error)
                    raise RpcTimeout(
                        f"no reply to {request_type}: the message broker cannot be reached"
                    ) from error
        raise AssertionError("unreachable")

    def _call(self, queue: str, request_type: str, body: dict[str, Any]) -> dict[str, Any]:
        connection, channel = self._connect()
        correlation_id = str(uuid.uuid4())
        self._waiting_for, self._reply = correlation_id, None
        channel.basic_publish(
            exchange="",
            routing_key=queue,
            body=json.dumps(body).encode(),
            properties=pika.BasicProperties(
                content_type=CONTENT_TYPE,
                message_id=str(uuid.uuid4()),
                correlation_id=correlation_id,
                reply_to=DIRECT_REPLY_TO,
                type=request_type,
                app_id=self.app_id,
                timestamp=int(time.time()),
                headers={
                    "schema_version": SCHEMA_VERSION,
                    REPLY_BY: int((time.time() + self.timeout) * 1000),
                },
            ),
        )
        deadline = time.monotonic() + self.timeout
        while self._reply is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._waiting_for = None
                raise RpcTimeout(f"no reply to {request_type} within {self.timeout:g} s")
            connection.process_data_events(time_limit=remaining)
        return self._reply

    def _connect(self):  # type: ignore[no-untyped-def]
        if self._connection is None or not self._connection.is_open:
            self._connection = open_connection(
                self.amqp_url, f"{self.app_id} rpc client", timeout=self.timeout
            )
            self._channel = self._connection.channel()
            # Direct reply-to: consume the pseudo-queue, no-ack, before the first publish.
            self._channel.basic_consume(DIRECT_REPLY_TO, self._on_reply, auto_ack=True)
        return self._connection, self._channel

    def _on_reply(self, _channel, _method, properties, body) -> None:  # type: ignore[no-untyped-def]
        if properties.correlation_id != self._waiting_for:
            log.info("late RPC reply %s ignored", properties.correlation_id)
            return
        try:
            reply = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            reply = {"ok": False, "error": "the server sent a reply that is not JSON"}
        self._reply = reply if isinstance(reply, dict) else {"ok": False, "error": "bad reply"}

    def close(self) -> None:
        close_quietly(self._connection)
        self._connection = self._channel = None


class RpcServer(QueueWorker):
    """Answers requests on one queue with one handler per request `type`."""

    def __init__(self, *, handlers: Mapping[str, RpcHandler], **worker_options: Any) -> None:
        # A caller waits for each answer: a request is answered as it comes, not gathered.
        super().__init__(**{"gather_seconds": 0.0, **worker_options})
        self.handlers = handlers

    def handle(self, delivery: Delivery) -> None:
        properties, extra = delivery.properties, delivery.log_context
        if not properties.reply_to or not properties.correlation_id:
            log.error(
                "%s: request without reply_to/correlation_id dead-lettered", self.queue, extra=extra
            )
            self.stats.dead_lettered += 1
            delivery.reject()
            return
        if _expired(properties):
            # The caller gave up already; acting now (say, reserving a coupon) would only
            # leave a reservation nobody waits for.
            log.warning("%s: stale %s request dropped", self.queue, properties.type, extra=extra)
            delivery.ack()
            return
        reply = self.answer(properties.type, delivery.body, extra)
        delivery.channel.basic_publish(
            exchange="",
            routing_key=properties.reply_to,
            body=json.dumps(reply).encode(),
            properties=pika.BasicProperties(
                content_type=CONTENT_TYPE,
                correlation_id=properties.correlation_id,
                timestamp=int(time.time()),
            ),
        )
        delivery.ack()
        self.stats.handled += 1

    def answer(
        self, request_type: str | None, body: bytes, extra: dict[str, str | None]
    ) -> dict[str, Any]:
        handler = self.handlers.get(request_type or "")
        if handler is None:
            known = ", ".join(sorted(self.handlers))
            return {"ok": False, "error": f"unknown request type {request_type!r}; known: {known}"}
        try:
            request = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            return {"ok": False, "error": f"the request is not JSON: {error}"}
        if not isinstance(request, dict):
            return {"ok": False, "error": "the request must be a JSON object"}
        try:
            with self._sessions.begin() as session:
                return {"ok": True, **handler(session, request)}
        except RpcError as error:
            return {"ok": False, "error": error.message, **error.details}
        except IntegrityError:  # a concurrent request created the same thing a moment ago
            return {"ok": False, "error": "it exists already", "refused": "exists"}
        except DBAPIError:
            log.exception("%s: database error answering %s", self.queue, request_type, extra=extra)
            return {"ok": False, "error": "the service's database is unavailable", "retry": True}
        except Exception:
            log.exception("%s: failed answering %s", self.queue, request_type, extra=extra)
            return {"ok": False, "error": "internal error", "retry": True}


def _expired(properties: pika.BasicProperties) -> bool:
    """True when the caller's deadline has passed (it answered its user with a 503)."""
    reply_by = (properties.headers or {}).get(REPLY_BY)
    if not isinstance(reply_by, int):
        return False
    return time.time() * 1000 > reply_by + CLOCK_SKEW_MS
