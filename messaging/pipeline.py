"""What the pipeline holds right now: queue depths, outbox backlogs, handled-message counts.

`read_queues()` reports every work queue of the topology and its `<queue>.dead` with
`ready`, `unacked` and `consumers`. It asks the RabbitMQ management HTTP API (one GET of
`/api/queues/<vhost>`), the only place that knows the unacknowledged count; its numbers
are refreshed by the broker every few seconds, so they lag by up to ~5 s. When the
management API does not answer (or has no statistics yet for a queue declared a moment
ago), it falls back to passive `queue.declare` over AMQP: live `ready` and `consumers`,
and `unacked` null. A queue that does not exist has nulls. Where the broker cannot be
reached at all it raises `BrokerUnavailable`.

The management API is at `http://<AMQP host>:15672` with the AMQP URL's user and
password, unless the setting RABBITMQ_MANAGEMENT_URL says otherwise (for example
`https://user:secret@rabbit.example:15671`; messaging/management.py is its client).

`outbox_backlogs()` and `handled_messages()` count rows of the services' outbox and inbox
tables with plain read-only queries, given each service's engine and table name (a name,
not a model: the web app may not import another service's models). A database that is
down or not migrated yields None for its service instead of an error.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from urllib.parse import quote

import pika
from sqlalchemy import Engine, column, create_engine, func, select, table
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from messaging.connection import (
    CONNECTION_ERRORS,
    BrokerUnavailable,
    close_quietly,
    open_connection,
)
from messaging.management import TIMEOUT_SECONDS, ManagementApi, ManagementError, first_url
from messaging.topology import Topology

log = logging.getLogger(__name__)

STAT_FIELDS = ("ready", "unacked", "consumers")

# {service: (engine, table name)}, e.g. {"order_service": (engine, "order_outbox")}
ServiceTables = Mapping[str, tuple[Engine, str]]


@dataclass(frozen=True)
class QueueStatus:
    name: str
    ready: int | None  # None: unknown (the queue does not exist, or no statistics yet)
    unacked: int | None  # None: unknown (no management API, or no statistics yet)
    consumers: int | None
    dead: bool  # a dead-letter queue `<work queue>.dead`
    # Deliveries that were redeliveries (after a failed attempt was requeued, or a consumer
    # was lost), since the queue was declared: the broker's count of failures. Management
    # API only; None without it.
    redelivered: int | None = None

    def as_json(self) -> dict[str, object]:
        return asdict(self)


def queue_names(topology: Topology) -> list[tuple[str, bool]]:
    """(name, is dead-letter queue) of every queue to report, each work queue before its DLQ."""
    names: list[tuple[str, bool]] = []
    for queue in topology.queues:
        names += [(queue.name, False), (queue.dead_letter_queue, True)]
    return names


def read_queues(
    amqp_url: str,
    topology: Topology,
    management: str | None = None,
    *,
    timeout: float = TIMEOUT_SECONDS,
) -> list[QueueStatus]:
    """Every work and dead-letter queue; raises BrokerUnavailable if nothing answers."""
    try:
        stats = management_stats(amqp_url, management, timeout=timeout)
    except ManagementError as error:
        log.debug("management API unavailable (%s); asking over AMQP", error)
        stats = {}
    names = queue_names(topology)
    unknown = [name for name, _ in names if stats.get(name, {}).get("ready") is None]
    if unknown:  # no management API, or no statistics yet for a queue declared a moment ago
        live = amqp_stats(amqp_url, unknown, timeout=timeout)
        stats.update({name: live[name] for name in unknown if name in live})
    return [
        QueueStatus(name=name, dead=dead, **stats.get(name, dict.fromkeys(STAT_FIELDS)))
        for name, dead in names
    ]


def management_url(amqp_url: str, override: str | None = None) -> str:
    """The configured management URL, else http://<the AMQP URL's host>:15672."""
    return ManagementApi.for_broker(amqp_url, override).base_url


def management_stats(
    amqp_url: str, management: str | None = None, *, timeout: float = TIMEOUT_SECONDS
) -> dict[str, dict[str, int | None]]:
    """{queue: {ready, unacked, consumers}} of the AMQP URL's vhost, from the management API."""
    api = ManagementApi.for_broker(amqp_url, management, timeout=timeout)
    vhost = pika.URLParameters(first_url(amqp_url)).virtual_host
    columns = "name,messages_ready,messages_unacknowledged,consumers,message_stats.redeliver"
    queues = api.get(f"/api/queues/{api.quoted(vhost)}?columns={columns}")
    if not isinstance(queues, list):
        raise ManagementError("GET /api/queues did not answer with a list")
    return {
        queue["name"]: {
            "ready": queue.get("messages_ready"),
            "unacked": queue.get("messages_unacknowledged"),
            "consumers": queue.get("consumers"),
            "redelivered": (queue.get("message_stats") or {}).get("redeliver", 0),
        }
        for queue in queues
        if isinstance(queue, dict) and "name" in queue
    }


def amqp_stats(
    amqp_url: str, queues: list[str], *, timeout: float = TIMEOUT_SECONDS
) -> dict[str, dict[str, int | None]]:
    """{queue: {ready, unacked: None, consumers}} by passive queue.declare; raises
    BrokerUnavailable. A queue that does not exist is left out."""
    connection = open_connection(amqp_url, "pipeline status", timeout=timeout)
    try:
        channel = connection.channel()
        stats: dict[str, dict[str, int | None]] = {}
        for name in queues:
            try:
                declared = channel.queue_declare(name, passive=True).method
            except pika.exceptions.ChannelClosedByBroker:  # 404: not declared (yet)
                channel = connection.channel()
                continue
            stats[name] = {
                "ready": declared.message_count,
                "unacked": None,
                "consumers": declared.consumer_count,
            }
        return stats
    except CONNECTION_ERRORS as error:
        raise BrokerUnavailable(f"RabbitMQ went away ({type(error).__name__})") from error
    finally:
        close_quietly(connection)


def read_only_engine(url: str) -> Engine:
    """An engine for counting rows without side effects: SQLite is opened read-only (no
    write lock, no empty file made where none was), PostgreSQL in read-only transactions
    with a connect timeout, so an unreachable server costs seconds, not minutes."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database
        if not database or database == ":memory:" or database.startswith("file:"):
            return create_engine(url)
        uri = parsed.set(database=f"file:{quote(database)}", query={"mode": "ro", "uri": "true"})
        return create_engine(uri)
    if backend == "postgresql":
        options = "-c default_transaction_read_only=on -c statement_timeout=5000"
        return create_engine(
            url,
            pool_pre_ping=True,
            pool_size=2,
            max_overflow=2,
            connect_args={"connect_timeout": int(TIMEOUT_SECONDS), "options": options},
        )
    return create_engine(url, pool_pre_ping=True)


def outbox_backlogs(outboxes: ServiceTables) -> dict[str, int | None]:
    """{service: rows waiting to be published}; None where the database does not answer."""
    backlogs: dict[str, int | None] = {}
    for service, (engine, table_name) in outboxes.items():
        outbox = table(table_name, column("sent_at"))
        query = select(func.count()).select_from(outbox).where(outbox.c.sent_at.is_(None))
        try:
            with engine.connect() as connection:
                backlogs[service] = connection.scalar(query) or 0
        except SQLAlchemyError as error:
            _log_unreadable(service, table_name, error)
            backlogs[service] = None
    return backlogs


def handled_messages(inboxes: ServiceTables) -> dict[str, dict[str, int] | None]:
    """{service: {queue: messages handled}} from the inbox rows, which outlive restarts;
    None where the database does not answer."""
    handled: dict[str, dict[str, int] | None] = {}
    for service, (engine, table_name) in inboxes.items():
        inbox = table(table_name, column("queue"))
        query = select(inbox.c.queue, func.count()).group_by(inbox.c.queue)
        try:
            with engine.connect() as connection:
                handled[service] = {queue: count for queue, count in connection.execute(query)}
        except SQLAlchemyError as error:
            _log_unreadable(service, table_name, error)
            handled[service] = None
    return handled


def _log_unreadable(service: str, table_name: str, error: SQLAlchemyError) -> None:
    reason = str(getattr(error, "orig", None) or error).strip().splitlines() or ["?"]
    log.warning("%s: cannot read %s (%s)", service, table_name, reason[0])
