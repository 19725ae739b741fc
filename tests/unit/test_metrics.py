"""The Prometheus text that /metrics writes by hand, the service table names the web app
reads by name, and where the management API is looked for. No broker, no database."""

import pytest

from coupon_service.models import CouponInbox, CouponOutbox
from inventory_service.models import InventoryInbox, InventoryOutbox
from messaging.pipeline import QueueStatus, management_url
from messaging.settings import Settings
from notification_service.models import NotificationInbox, NotificationOutbox
from order_service.models import OrderInbox, OrderOutbox
from order_service.ops import SERVICES, HttpMetrics, broker_lines, sample
from shop.processes import SERVICE_DATABASES


def test_the_web_app_reads_every_services_outbox_and_inbox_by_their_real_table_names():
    models = {
        "order_service": (OrderOutbox, OrderInbox),
        "inventory_service": (InventoryOutbox, InventoryInbox),
        "coupon_service": (CouponOutbox, CouponInbox),
        "notification_service": (NotificationOutbox, NotificationInbox),
    }
    assert set(SERVICES) == set(SERVICE_DATABASES) == set(models)
    settings = Settings()
    for service, tables in SERVICES.items():
        outbox, inbox = models[service]
        assert (tables.outbox, tables.inbox) == (outbox.__tablename__, inbox.__tablename__)
        assert getattr(settings, tables.database_url) == SERVICE_DATABASES[service](settings)


def test_label_values_are_escaped():
    line = sample("m", {"a": 'say "hi"\\now\n'}, 1)
    assert line == 'm{a="say \\"hi\\"\\\\now\\n"} 1'
    assert sample("m", {}, 0.5) == "m 0.5"


def test_the_latency_histogram_is_cumulative_with_inclusive_bounds():
    metrics = HttpMetrics(buckets=(0.1, 1.0))
    for seconds in (0.05, 0.1, 0.5, 3.0):
        metrics.observe("GET", "/x", 200, seconds)
    metrics.observe("GET", "/x", 404, 0.01)

    lines = metrics.lines(pid=7)
    labels = 'method="GET",endpoint="/x",pid="7"'
    assert f'shop_http_request_duration_seconds_bucket{{{labels},le="0.1"}} 3' in lines
    assert f'shop_http_request_duration_seconds_bucket{{{labels},le="1.0"}} 4' in lines
    assert f'shop_http_request_duration_seconds_bucket{{{labels},le="+Inf"}} 5' in lines
    assert f"shop_http_request_duration_seconds_count{{{labels}}} 5" in lines
    assert 'shop_http_requests_total{method="GET",endpoint="/x",status="200",pid="7"} 4' in lines
    assert 'shop_http_requests_total{method="GET",endpoint="/x",status="404",pid="7"} 1' in lines
    assert "# TYPE shop_http_request_duration_seconds histogram" in lines


def test_unknown_numbers_are_left_out_rather_than_written_as_zero():
    queues = [
        QueueStatus("inventory.orders", ready=4, unacked=None, consumers=1, dead=False),
        QueueStatus("inventory.orders.dead", ready=2, unacked=None, consumers=0, dead=True),
    ]
    lines = broker_lines(queues)
    assert "shop_broker_up 1" in lines
    assert 'shop_queue_messages{queue="inventory.orders",state="ready"} 4' in lines
    assert not any('state="unacked"' in line for line in lines)
    assert 'shop_dead_letters{queue="inventory.orders"} 2' in lines
    down = broker_lines(None)
    assert "shop_broker_up 0" in down
    assert not [line for line in down if not line.startswith("#") and "broker_up" not in line]


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
    configured = Settings.from_env(environ).rabbitmq_management_url
    assert management_url(amqp_url, configured) == expected


def test_the_web_app_reads_the_sms_backlog_by_the_real_table_name():
    from notification_service.models import Sms
    from order_service.ops import SMS_TABLE

    assert Sms.__tablename__ == SMS_TABLE
