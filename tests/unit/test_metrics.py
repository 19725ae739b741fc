"""What /metrics writes (through prometheus_client), and where the management API is looked
for. No broker, no database: the pipeline's numbers come from a fake reader."""

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from messaging.connection import BrokerUnavailable
from messaging.pipeline import QueueStatus, management_url
from messaging.service import Metric
from order_service.settings import OrderSettings
from shop.ops.metrics import HttpMetrics, PipelineCollector


def samples(text: bytes) -> list[tuple[str, dict, float]]:
    return [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
    ]


def test_the_latency_histogram_is_cumulative_with_inclusive_bounds():
    metrics = HttpMetrics()
    for seconds in (0.05, 0.1, 0.5, 3.0):
        metrics.observe("GET", "/x", 200, seconds)
    metrics.observe("GET", "/x", 404, 0.01)

    found = samples(generate_latest(metrics.registry))
    buckets = {
        labels["le"]: value
        for name, labels, value in found
        if name == "shop_http_request_duration_seconds_bucket"
    }
    assert (buckets["0.01"], buckets["0.1"], buckets["1.0"], buckets["+Inf"]) == (1, 3, 4, 5)
    assert ("shop_http_request_duration_seconds_count", {"method": "GET", "endpoint": "/x"}, 5) in [
        (name, labels, value) for name, labels, value in found
    ]
    requests = {
        labels["status"]: value
        for name, labels, value in found
        if name == "shop_http_requests_total"
    }
    assert requests == {"200": 4, "404": 1}


class FakeReader:
    def __init__(self, queues):
        self._queues = queues

    def queues(self):
        if self._queues is None:
            raise BrokerUnavailable("down")
        return self._queues

    def outbox_backlogs(self):
        return {"order_service": 2, "coupon_service": None}

    def handled_messages(self):
        return {"order_service": {"orders.inventory": 7}, "coupon_service": None}

    def probes(self):
        return {"sms": {"pending": 1, "failed": 0}}

    def metrics_of_probes(self, readings):
        return [Metric("shop_sms_backlog", "gauge", "SMS.", [({"status": "pending"}, 1)])]


def scrape(queues) -> list[tuple[str, dict, float]]:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(PipelineCollector(FakeReader(queues)))
    return samples(generate_latest(registry))


def test_unknown_numbers_are_left_out_rather_than_written_as_zero():
    found = scrape(
        [
            QueueStatus("inventory.orders", ready=4, unacked=None, consumers=1, dead=False),
            QueueStatus("inventory.orders.dead", ready=2, unacked=None, consumers=0, dead=True),
        ]
    )
    assert ("shop_broker_up", {}, 1) in found
    assert ("shop_queue_messages", {"queue": "inventory.orders", "state": "ready"}, 4) in found
    assert not [labels for name, labels, _ in found if labels.get("state") == "unacked"]
    assert ("shop_dead_letters", {"queue": "inventory.orders"}, 2) in found
    assert ("shop_outbox_backlog", {"service": "order_service"}, 2) in found
    assert not [labels for _, labels, _ in found if labels.get("service") == "coupon_service"]
    assert (
        "shop_messages_handled_total",
        {"service": "order_service", "queue": "orders.inventory"},
        7,
    ) in found
    assert ("shop_sms_backlog", {"status": "pending"}, 1) in found


def test_a_broker_that_does_not_answer_is_broker_up_0_and_no_queue_samples():
    found = scrape(None)
    assert ("shop_broker_up", {}, 0) in found
    assert not [name for name, _, _ in found if name.startswith(("shop_queue", "shop_dead"))]


@pytest.mark.parametrize(
    ("amqp_url", "environ", "expected"),
    [
        ("amqp://guest:guest@rabbit:5672/%2F", {}, "http://rabbit:15672"),
        ("amqp://u:p@[::1]:5672/shop", {}, "http://[::1]:15672"),
        ("amqp://localhost", {"RABBITMQ_MANAGEMENT_URL": "https://m:15671/"}, "https://m:15671"),
    ],
)
def test_the_management_api_is_on_the_brokers_host_unless_told_otherwise(
    amqp_url, environ, expected
):
    configured = OrderSettings.from_env(environ).rabbitmq_management_url
    assert management_url(amqp_url, configured) == expected
