"""`GET /metrics`: the pipeline and the web app in the Prometheus text format, written by
prometheus_client.

Two kinds of numbers:
- read at each scrape (`PipelineCollector`): the broker's queues (`shop_broker_up`,
  `shop_queue_messages`, `shop_queue_consumers`, `shop_messages_redelivered_total`,
  `shop_dead_letters`), each service's outbox backlog and handled messages, and each
  service's probes (`shop_sms_backlog`, `shop_flash_sale_*`), through shop/ops/readings.py.
  A broker that cannot be reached is `shop_broker_up 0` and no queue samples; a database
  that does not answer has no samples.
- counted by the web workers (`HttpMetrics`): `shop_http_requests_total` and the
  `shop_http_request_duration_seconds` histogram. Under gunicorn each worker is its own
  process; with PROMETHEUS_MULTIPROC_DIR set (`shop up` sets it) every worker writes its
  counts there and a scrape, answered by any one worker, adds up all of them
  (prometheus_client's multiprocess mode). Without it, a process counts its own.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

from flask import Flask, Response, request
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from messaging.connection import BrokerUnavailable
from shop.ops.readings import PipelineReader

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STARTED_KEY = "shop.started"


def multiprocess_directory() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class HttpMetrics:
    """Request counts and latencies of this web app (all workers', in multiprocess mode)."""

    def __init__(self) -> None:
        # An app's own registry: two apps in one process (the tests) never collide.
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "shop_http_requests",
            "HTTP requests answered, by route and status.",
            ["method", "endpoint", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "shop_http_request_duration_seconds",
            "Time to answer a request.",
            ["method", "endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def observe(self, method: str, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(method, endpoint, str(status)).inc()
        self.duration.labels(method, endpoint).observe(seconds)


class PipelineCollector(Collector):
    """The pipeline's numbers, read when Prometheus scrapes."""

    def __init__(self, reader: PipelineReader) -> None:
        self.reader = reader

    def collect(self) -> Iterator[Metric]:
        try:
            queues = self.reader.queues()
        except BrokerUnavailable:
            queues = None
        yield _gauge(
            "shop_broker_up",
            "1 if RabbitMQ answered this scrape, else 0.",
            [({}, 0 if queues is None else 1)],
        )
        known = queues or []
        yield _gauge(
            "shop_queue_messages",
            "Messages in a queue: ready, or delivered and not yet acked.",
            [
                ({"queue": q.name, "state": state}, getattr(q, state))
                for q in known
                for state in ("ready", "unacked")
            ],
        )
        yield _gauge(
            "shop_queue_consumers",
            "Consumers attached to a queue.",
            [({"queue": q.name}, q.consumers) for q in known],
        )
        yield _counter(
            "shop_messages_redelivered",
            "Redeliveries of a work queue's messages: failed attempts requeued, or lost consumers.",
            [({"queue": q.name}, q.redelivered) for q in known if not q.dead],
        )
        yield _gauge(
            "shop_dead_letters",
            "Messages in a work queue's dead-letter queue <queue>.dead.",
            [
                ({"queue": q.name.removesuffix(".dead")}, q.ready + (q.unacked or 0))
                for q in known
                if q.dead and q.ready is not None
            ],
        )
        yield _gauge(
            "shop_outbox_backlog",
            "Events in a service's outbox not yet published.",
            [({"service": name}, n) for name, n in self.reader.outbox_backlogs().items()],
        )
        yield _counter(
            "shop_messages_handled",
            "Messages a service has handled from a queue (rows of its inbox).",
            [
                ({"service": name, "queue": queue}, count)
                for name, queues in self.reader.handled_messages().items()
                for queue, count in sorted((queues or {}).items())
            ],
        )
        for metric in self.reader.metrics_of_probes(self.reader.probes()):
            make = _counter if metric.kind == "counter" else _gauge
            yield make(metric.name.removesuffix("_total"), metric.help, metric.samples)


Samples = list[tuple[dict[str, str], float | None]]


def _gauge(name: str, help_text: str, samples: Samples) -> GaugeMetricFamily:
    return _family(GaugeMetricFamily(name, help_text, labels=_label_names(samples)), samples)


def _counter(name: str, help_text: str, samples: Samples) -> CounterMetricFamily:
    return _family(CounterMetricFamily(name, help_text, labels=_label_names(samples)), samples)


def _label_names(samples: Samples) -> list[str]:
    return list(samples[0][0]) if samples else []


def _family(family, samples: Samples):  # type: ignore[no-untyped-def]
    """Add the samples whose value is known (None: unknown, left out)."""
    for labels, value in samples:
        if value is not None:
            family.add_metric([str(v) for v in labels.values()], value)
    return family


def install(app: Flask, reader: PipelineReader) -> HttpMetrics:
    """Time every request (no I/O in the hooks) and serve GET /metrics."""
    from order_service.web.openapi import Answer, documented

    http = HttpMetrics()
    collector = PipelineCollector(reader)
    app.wsgi_app = _stamp_start_time(app.wsgi_app)  # one cheap hook instead of two

    @app.after_request
    def count_request(response: Response) -> Response:
        started = request.environ.get(STARTED_KEY)
        if started is not None:
            rule = request.url_rule.rule if request.url_rule else "<unmatched>"
            http.observe(request.method, rule, response.status_code, time.perf_counter() - started)
        return response

    @documented(
        "The pipeline and the web app, for Prometheus.",
        Answer(200, "The text format.", media_type="text/plain"),
        tag="operations",
    )
    def metrics() -> Response:
        scrape = CollectorRegistry(auto_describe=False)
        scrape.register(collector)
        if multiprocess_directory():
            MultiProcessCollector(scrape)
            text = generate_latest(scrape)
        else:
            text = generate_latest(scrape) + generate_latest(http.registry)
        return Response(text, content_type=CONTENT_TYPE)

    app.add_url_rule("/metrics", "metrics", metrics)
    return http


def _stamp_start_time(wsgi_app):  # type: ignore[no-untyped-def]
    def app(environ, start_response):  # type: ignore[no-untyped-def]
        environ[STARTED_KEY] = time.perf_counter()
        return wsgi_app(environ, start_response)

    return app
