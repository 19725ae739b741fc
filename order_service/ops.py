"""Operations endpoints: `GET /api/pipeline` (JSON for the dashboard) and `GET /metrics`
(Prometheus text format), plus the HTTP request counters and latency histogram behind them.

Both read the same things through messaging/pipeline.py (what `shop status` prints too):
the depth of every work and dead-letter queue, each service's outbox backlog and, for
/metrics, how many messages each service has handled (its inbox rows: a count that
survives restarts). The four services' databases are read with read-only count queries
through engines made once per app, on first use; the web app reads the other services'
tables by name because it may not import their code (see pyproject's import contracts).
Both also show the SMS backlog: the notification service's SMS still pending (the
gateway has not taken them yet) and those refused for good.

A broker that cannot be reached makes /api/pipeline answer 503; /metrics always answers
with what it could read (`shop_broker_up 0`, and no queue samples). A database that is
down or not migrated is null in /api/pipeline and has no samples in /metrics.

HTTP metrics live in the memory of each web process. Under gunicorn every worker counts
its own requests and a scrape reaches one worker at a time, so those samples carry a
`pid` label: each worker is its own series, and `sum without (pid) (rate(...))` adds
them up. A restarted worker starts again from zero, as a Prometheus counter may.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import accumulate

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from sqlalchemy import Engine, column, func, select, table
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from messaging import dead_letters, pipeline
from messaging.connection import (
    CONNECTION_ERRORS,
    BrokerUnavailable,
    close_quietly,
    open_connection,
)
from messaging.publisher import PublishFailed
from messaging.settings import Settings
from order_service import flash_sale
from order_service.api import admin_only
from order_service.problems import problem, request_id_of_this_request

log = logging.getLogger(__name__)

blueprint = Blueprint("ops", __name__)

PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class ServiceTables:
    database_url: str  # the Settings attribute holding the service's database URL
    outbox: str
    inbox: str


# Every service's own tables, by name (checked against the models in tests/unit/test_metrics.py).
SERVICES: dict[str, ServiceTables] = {
    "order_service": ServiceTables("order_database_url", "order_outbox", "order_inbox"),
    "inventory_service": ServiceTables(
        "inventory_database_url", "inventory_outbox", "inventory_inbox"
    ),
    "coupon_service": ServiceTables("coupon_database_url", "coupon_outbox", "coupon_inbox"),
    "notification_service": ServiceTables(
        "notification_database_url", "notification_outbox", "notification_inbox"
    ),
}
# The SMS not delivered yet, or refused for good: the notification service's own backlog.
SMS_TABLE = "sms_messages"


@dataclass
class HttpMetrics:
    """Request counts and a latency histogram of this process, safe across threads."""

    buckets: tuple[float, ...] = LATENCY_BUCKETS
    requests: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # method, rule, status
    # (method, rule) -> requests per bucket (not cumulative), the last one above every bound
    histogram: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    seconds: Counter[tuple[str, str]] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def observe(self, method: str, endpoint: str, status: int, seconds: float) -> None:
        key = (method, endpoint)
        with self.lock:
            self.requests[(method, endpoint, str(status))] += 1
            bins = self.histogram.setdefault(key, [0] * (len(self.buckets) + 1))
            bins[bisect_left(self.buckets, seconds)] += 1  # `le` bounds are inclusive
            self.seconds[key] += seconds

    def lines(self, pid: int) -> list[str]:
        with self.lock:
            requests = sorted(self.requests.items())
            histogram = sorted((key, list(bins)) for key, bins in self.histogram.items())
            seconds = dict(self.seconds)
        out = metric(
            "shop_http_requests_total",
            "counter",
            "HTTP requests answered by this web worker (pid).",
            [
                ({"method": method, "endpoint": endpoint, "status": status, "pid": pid}, count)
                for (method, endpoint, status), count in requests
            ],
        )
        name = "shop_http_request_duration_seconds"
        out += metric(name, "histogram", "Time to answer a request, in this web worker.", [])
        bounds = [repr(bound) for bound in self.buckets] + ["+Inf"]
        for (method, endpoint), bins in histogram:
            labels: dict[str, object] = {"method": method, "endpoint": endpoint, "pid": pid}
            for bound, cumulative in zip(bounds, accumulate(bins), strict=True):
                out.append(sample(f"{name}_bucket", {**labels, "le": bound}, cumulative))
            out.append(sample(f"{name}_sum", labels, seconds[(method, endpoint)]))
            out.append(sample(f"{name}_count", labels, sum(bins)))
        return out


class Ops:
    """Per-app state: HTTP metrics and read-only engines, made on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.http = HttpMetrics()
        self._engines: dict[str, Engine] = {}
        self._lock = threading.Lock()

    def engine(self, url: str) -> Engine:
        with self._lock:
            if url not in self._engines:  # services sharing one database share one engine
                self._engines[url] = pipeline.read_only_engine(url)
            return self._engines[url]

    def tables(self, kind: str) -> dict[str, tuple[Engine, str]]:
        """{service: (engine, table)} of the services' "outbox" or "inbox" tables."""
        return {
            service: (self.engine(getattr(self.settings, t.database_url)), getattr(t, kind))
            for service, t in SERVICES.items()
        }


def install(app: Flask, settings: Settings) -> None:
    """Add the routes and the request hooks that time every request (no I/O in them)."""
    ops = Ops(settings)
    app.extensions["shop_ops"] = ops
    app.register_blueprint(blueprint)

    app.wsgi_app = _stamp_start_time(app.wsgi_app)  # one cheap hook instead of two

    @app.after_request
    def count_request(response: Response) -> Response:
        started = request.environ.get(STARTED_KEY)
        if started is not None:
            rule = request.url_rule.rule if request.url_rule else "<unmatched>"
            seconds = time.perf_counter() - started
            ops.http.observe(request.method, rule, response.status_code, seconds)
        return response


STARTED_KEY = "shop.started"


def _stamp_start_time(wsgi_app):  # type: ignore[no-untyped-def]
    def app(environ, start_response):  # type: ignore[no-untyped-def]
        environ[STARTED_KEY] = time.perf_counter()
        return wsgi_app(environ, start_response)

    return app


def _ops() -> Ops:
    return current_app.extensions["shop_ops"]


@blueprint.get("/api/pipeline")
def pipeline_status() -> Response:
    ops = _ops()
    try:
        queues = pipeline.read_queues(ops.settings.amqp_url, ops.settings.rabbitmq_management_url)
    except BrokerUnavailable as error:
        log.warning(
            "GET /api/pipeline: %s", error, extra={"correlation_id": request_id_of_this_request()}
        )
        return problem(
            503, "Service Unavailable", "RabbitMQ cannot be reached; queue depths are unknown."
        )
    return jsonify(
        queues=[queue.as_json() for queue in queues],
        outbox=pipeline.outbox_backlogs(ops.tables("outbox")),
        flash_sale=flash_sale_numbers(),
        handled=pipeline.handled_messages(ops.tables("inbox")),  # the dashboard's rates
        sms=sms_backlog(ops),
    )


@blueprint.post("/api/dead-letters/<queue>/replay")
@admin_only
def replay_dead_letters(queue: str) -> Response:
    """The dashboard's replay button: `shop dlq replay QUEUE` over HTTP."""
    settings = _ops().settings
    try:
        dead_letters.dead_letter_queue(queue)
    except dead_letters.UnknownQueue as error:
        return problem(404, "Not found", str(error))
    try:
        connection = open_connection(settings.amqp_url, "dashboard replay", timeout=3)
    except BrokerUnavailable as error:
        return problem(503, "Service Unavailable", str(error))
    try:
        moved = dead_letters.replay_dead_letters(connection, connection.channel(), queue)
    except (*CONNECTION_ERRORS, PublishFailed) as error:
        return problem(503, "Service Unavailable", f"The replay stopped: {error}.")
    finally:
        close_quietly(connection)
    log.info("replayed %d dead letters into %s", moved, queue)
    return jsonify(queue=queue, moved=moved)


def flash_sale_numbers() -> dict[str, object]:
    """Admission counters of every web process (flushed each second) and decisions."""
    try:
        with current_app.extensions["shop"].read_sessions() as session:
            counts = flash_sale.counters(session)
    except DBAPIError:
        counts = {}
    shed = {name.removeprefix("shed_"): n for name, n in counts.items() if name.startswith("shed_")}
    return {
        "accepted": counts.get("accepted", 0),
        "dropped": sum(shed.values()),
        "shed": shed,
        "decided": {"won": counts.get("won", 0), "lost": counts.get("lost", 0)},
    }


def flash_sale_lines(numbers: dict) -> list[str]:
    return [
        *metric(
            "shop_flash_sale_requests_total",
            "counter",
            "Purchase requests at the flash-sale gate: accepted, or shed and why.",
            [({"outcome": "accepted"}, numbers["accepted"])]
            + [({"outcome": reason}, n) for reason, n in sorted(numbers["shed"].items())],
        ),
        *metric(
            "shop_flash_sale_tickets_decided_total",
            "counter",
            "Admitted tickets the flash-sale worker decided, by result.",
            [({"result": result}, n) for result, n in numbers["decided"].items()],
        ),
    ]


@blueprint.get("/metrics")
def metrics() -> Response:
    ops = _ops()
    try:
        queues = pipeline.read_queues(ops.settings.amqp_url, ops.settings.rabbitmq_management_url)
    except BrokerUnavailable:
        queues = None
    lines = [
        *broker_lines(queues),
        *outbox_lines(pipeline.outbox_backlogs(ops.tables("outbox"))),
        *handled_lines(pipeline.handled_messages(ops.tables("inbox"))),
        *sms_lines(sms_backlog(ops)),
        *flash_sale_lines(flash_sale_numbers()),
        *ops.http.lines(os.getpid()),
    ]
    return Response("\n".join(lines) + "\n", content_type=PROMETHEUS_TYPE)


Samples = Iterable[tuple[dict[str, object], float | None]]


def metric(name: str, kind: str, help_text: str, samples: Samples) -> list[str]:
    """A metric family in the text format; samples whose value is unknown (None) are left out."""
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    return lines + [sample(name, labels, value) for labels, value in samples if value is not None]


def broker_lines(queues: list[pipeline.QueueStatus] | None) -> list[str]:
    known = queues or []
    dead = [q for q in known if q.dead]
    return [
        *metric(
            "shop_broker_up",
            "gauge",
            "1 if RabbitMQ answered this scrape, else 0.",
            [({}, 0 if queues is None else 1)],
        ),
        *metric(
            "shop_queue_messages",
            "gauge",
            "Messages in a queue: ready, or delivered and not yet acked.",
            [
                ({"queue": q.name, "state": state}, getattr(q, state))
                for q in known
                for state in ("ready", "unacked")
            ],
        ),
        *metric(
            "shop_queue_consumers",
            "gauge",
            "Consumers attached to a queue.",
            [({"queue": q.name}, q.consumers) for q in known],
        ),
        *metric(
            "shop_messages_redelivered_total",
            "counter",
            "Redeliveries of a work queue's messages: failed attempts requeued, or lost consumers.",
            [({"queue": q.name}, q.redelivered) for q in known if not q.dead],
        ),
        *metric(
            "shop_dead_letters",
            "gauge",
            "Messages in a work queue's dead-letter queue <queue>.dead.",
            [
                ({"queue": q.name.removesuffix(".dead")}, q.ready + (q.unacked or 0))
                for q in dead
                if q.ready is not None
            ],
        ),
    ]


def outbox_lines(backlogs: dict[str, int | None]) -> list[str]:
    return metric(
        "shop_outbox_backlog",
        "gauge",
        "Events in a service's outbox not yet published.",
        [({"service": service}, backlog) for service, backlog in backlogs.items()],
    )


def handled_lines(handled: dict[str, dict[str, int] | None]) -> list[str]:
    return metric(
        "shop_messages_handled_total",
        "counter",
        "Messages a service has handled from a queue (rows of its inbox).",
        [
            ({"service": service, "queue": queue}, count)
            for service, queues in handled.items()
            for queue, count in sorted((queues or {}).items())
        ],
    )


def sms_backlog(ops: Ops) -> dict[str, int] | None:
    """{"pending": SMS waiting for the gateway (retries too), "failed": refused for good};
    None where the notification database does not answer."""
    sms = table(SMS_TABLE, column("status"))
    query = (
        select(sms.c.status, func.count())
        .where(sms.c.status.in_(("PENDING", "FAILED")))
        .group_by(sms.c.status)
    )
    try:
        with ops.engine(ops.settings.notification_database_url).connect() as connection:
            counts = dict(connection.execute(query).all())
    except SQLAlchemyError as error:
        log.warning("cannot read %s (%s)", SMS_TABLE, type(error).__name__)
        return None
    return {"pending": counts.get("PENDING", 0), "failed": counts.get("FAILED", 0)}


def sms_lines(backlog: dict[str, int] | None) -> list[str]:
    return metric(
        "shop_sms_backlog",
        "gauge",
        "SMS not delivered: pending (waiting for the gateway, retries included) or failed.",
        [({"status": status}, n) for status, n in (backlog or {}).items()],
    )


def sample(name: str, labels: dict[str, object], value: float) -> str:
    """One line of the text format: name{label="value",...} value."""
    if not labels:
        return f"{name} {_number(value)}"
    rendered = ",".join(f'{key}="{_escape(str(v))}"' for key, v in labels.items())
    return f"{name}{{{rendered}}} {_number(value)}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))
