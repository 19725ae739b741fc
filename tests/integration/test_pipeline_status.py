"""GET /api/pipeline, GET /metrics and `shop status` against the real broker (a vhost of
its own per test) and real databases: the numbers follow what is put into the queues
and the outboxes. The broker's numbers come from its management API where it answers
(which refreshes its statistics every few seconds, so every check of a broker number
waits with a deadline), else over AMQP; the unacked and redelivery counts only the
management API knows are checked where it answers and skipped, saying so, elsewhere."""

import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pika
import pytest

from messaging.connection import open_connection
from messaging.database import make_engine, make_session_factory
from shop.catalog import CATALOG, ShopSettings
from tests.support.amqp import declare, publish_raw, wait_until
from tests.support.orders import ADMIN, a_product, an_order, client_for, drain_outbox
from tests.support.pipeline import environment, pipeline_settings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
# The management API's statistics of a new vhost can take ~20 s to appear; more when busy.
BROKER_WAIT = 60.0

# CONTRACT.md's work queues, each followed by its dead-letter queue.
CONTRACT_QUEUES = [
    "inventory.orders",
    "orders.inventory",
    "orders.read-model",
    "coupons.orders",
    "notifications.sms",
    "coupons.rpc",
    "flash-sale.requests",
]
SERVICES = [service.package for service in CATALOG]
NOTHING_LISTENS = "http://127.0.0.1:9"  # the discard port: connection refused


def migrated_settings(
    tmp_path: Path, amqp_url: str, database_url: str = "sqlite", management: str | None = None
) -> ShopSettings:
    """Four migrated databases (see tests/support/pipeline.py), and the broker's numbers read
    from the management API at `management`, or over AMQP only where it is None."""
    if database_url == "sqlite":
        database_url = f"sqlite:///{tmp_path / 'unused.db'}"
    settings = pipeline_settings(tmp_path, database_url, amqp_url)
    return settings.with_changes(rabbitmq_management_url=management or NOTHING_LISTENS)


def pipeline_of(client) -> dict:
    response = client.get("/api/pipeline")
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def queue_of(client, name: str) -> dict:
    return {queue["name"]: queue for queue in pipeline_of(client)["queues"]}[name]


def wait_for_queue(client, name: str, **expected) -> dict:
    seen: list[dict] = []

    def matches() -> dict | None:
        seen.append(queue_of(client, name))
        return seen[-1] if all(seen[-1][k] == v for k, v in expected.items()) else None

    try:
        return wait_until(matches, BROKER_WAIT, f"{name} to show {expected}")
    except AssertionError as timed_out:
        raise AssertionError(f"{timed_out} (last seen: {seen[-1] if seen else None})") from None


SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)')
METRIC_TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def parse_metrics(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Every sample of a Prometheus text exposition; fails on any malformed line."""
    samples = []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            assert line.split()[3] in METRIC_TYPES, line
        if not line or line.startswith("#"):
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name, label_text, value = match.groups()
        labels, position = {}, 0
        while position < len(label_text or ""):
            label = LABEL.match(label_text, position)
            assert label, f"bad labels in {line!r}"
            labels[label[1]] = label[2]
            position = label.end()
        samples.append((name, labels, float(value)))
    return samples


def metrics_of(client) -> list[tuple[str, dict[str, str], float]]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=0.0.4")
    return parse_metrics(response.get_data(as_text=True))


def value_of(samples, name: str, **labels: str) -> float | None:
    found = [v for n, ls, v in samples if n == name and labels.items() <= ls.items()]
    assert len(found) <= 1, f"{name}{labels} matches several samples"
    return found[0] if found else None


def hold_one_delivery(amqp_url: str, queue: str):
    """Consume one message of `queue` without acking it; the caller settles it."""
    connection = open_connection(amqp_url, "tests: holds one message")
    channel = connection.channel()
    channel.basic_qos(prefetch_count=1)
    method, _properties, _body = next(channel.consume(queue, inactivity_timeout=10))
    assert method is not None, f"no delivery from {queue}"
    return connection, channel, method


def test_pipeline_lists_every_queue_and_follows_ready_consumers_and_dead_letters(
    amqp_url, tmp_path, broker
):
    settings = migrated_settings(tmp_path, amqp_url, management=broker.management_url)
    declare(amqp_url)
    client = client_for(settings)

    body = pipeline_of(client)
    listed = [(queue["name"], queue["dead"]) for queue in body["queues"]]
    work = [name for name, dead in listed if not dead]
    assert sorted(work) == sorted(CONTRACT_QUEUES)  # in the catalog's order
    expected = [pair for name in work for pair in ((name, False), (f"{name}.dead", True))]
    assert listed == expected  # each work queue followed by its dead-letter queue
    assert all(set(queue) >= {"name", "ready", "unacked", "consumers"} for queue in body["queues"])
    labs = {queue["name"]: queue["lab"] for queue in body["queues"]}
    assert labs["inventory.orders"] == "inbox" and labs["coupons.rpc"] == "rpc"
    assert labs["flash-sale.requests"] == "peak-shaving"
    assert {labs[name] for name, dead in listed if dead} == {"poison"}
    assert body["outbox"] == dict.fromkeys(SERVICES, 0)
    assert body["flash_sale"] == {
        "accepted": 0,
        "dropped": 0,
        "shed": {},
        "decided": {"won": 0, "lost": 0},
    }

    for number in range(3):
        publish_raw(amqp_url, "inventory.orders", f'{{"n": {number}}}'.encode())
    wait_for_queue(client, "inventory.orders", ready=3, consumers=0)

    connection, channel, method = hold_one_delivery(amqp_url, "inventory.orders")
    try:
        wait_for_queue(client, "inventory.orders", ready=2, consumers=1)
        channel.basic_reject(method.delivery_tag, requeue=False)  # -> inventory.orders.dead
        channel.cancel()
    finally:
        connection.close()
    wait_for_queue(client, "inventory.orders.dead", ready=1)
    wait_for_queue(client, "inventory.orders", ready=2, consumers=0)

    samples = metrics_of(client)
    assert value_of(samples, "shop_broker_up") == 1
    assert value_of(samples, "shop_dead_letters", queue="inventory.orders") == 1
    assert value_of(samples, "shop_queue_messages", queue="inventory.orders", state="ready") == 2
    assert value_of(samples, "shop_queue_consumers", queue="inventory.orders") == 0
    for name in CONTRACT_QUEUES:
        dead = 1 if name == "inventory.orders" else 0
        assert value_of(samples, "shop_dead_letters", queue=name) == dead
        assert value_of(samples, "shop_queue_messages", queue=f"{name}.dead", state="ready") == dead


def test_the_management_api_adds_unacked_and_redelivery_counts(amqp_url, tmp_path, management_url):
    client = client_for(migrated_settings(tmp_path, amqp_url, management=management_url))
    declare(amqp_url)
    publish_raw(amqp_url, "inventory.orders", b'{"n": 1}')
    publish_raw(amqp_url, "inventory.orders", b'{"n": 2}')
    wait_for_queue(client, "inventory.orders", ready=2, unacked=0, redelivered=0)
    body = pipeline_of(client)
    assert (body["management"], body["notes"]) == (True, [])

    connection, channel, method = hold_one_delivery(amqp_url, "inventory.orders")
    try:
        wait_for_queue(client, "inventory.orders", ready=1, unacked=1, consumers=1)
        unacked = value_of(
            metrics_of(client), "shop_queue_messages", queue="inventory.orders", state="unacked"
        )
        assert unacked == 1
        channel.basic_nack(method.delivery_tag, requeue=True)  # what a failed handler does
        method, _properties, _body = next(
            channel.consume("inventory.orders", inactivity_timeout=10)
        )
        assert method.redelivered
        channel.basic_ack(method.delivery_tag)
        channel.cancel()
    finally:
        connection.close()
    wait_for_queue(client, "inventory.orders", ready=1, unacked=0, consumers=0, redelivered=1)
    samples = metrics_of(client)
    assert value_of(samples, "shop_queue_messages", queue="inventory.orders", state="unacked") == 0
    assert value_of(samples, "shop_messages_redelivered_total", queue="inventory.orders") == 1
    assert value_of(samples, "shop_messages_redelivered_total", queue="coupons.orders") == 0


def test_without_the_management_api_queues_are_read_over_amqp_and_unacked_is_null(
    amqp_url, tmp_path
):
    settings = migrated_settings(tmp_path, amqp_url, management=None)
    declare(amqp_url)
    client = client_for(settings)
    publish_raw(amqp_url, "coupons.orders", b"{}")
    publish_raw(amqp_url, "coupons.orders", b"{}")

    wait_for_queue(client, "coupons.orders", ready=2, consumers=0)
    body = pipeline_of(client)
    assert all(queue["unacked"] is None for queue in body["queues"])
    assert body["management"] is False  # and the dashboard shows why, with what to do:
    (note,) = body["notes"]
    assert note.startswith("unacked needs the management plugin")
    assert NOTHING_LISTENS in note and "rabbitmq-plugins enable rabbitmq_management" in note
    samples = metrics_of(client)
    assert value_of(samples, "shop_queue_messages", queue="coupons.orders", state="ready") == 2
    assert value_of(samples, "shop_queue_messages", queue="coupons.orders", state="unacked") is None


def test_a_broker_that_cannot_be_reached_gives_503_and_metrics_still_answer(tmp_path):
    down = "amqp://guest:guest@127.0.0.1:1/%2F"
    client = client_for(migrated_settings(tmp_path, down))

    response = client.get("/api/pipeline")
    assert response.status_code == 503
    assert response.content_type == "application/problem+json"
    assert "RabbitMQ" in response.get_json()["detail"]

    samples = metrics_of(client)
    assert value_of(samples, "shop_broker_up") == 0
    assert value_of(samples, "shop_queue_messages", queue="inventory.orders") is None
    assert value_of(samples, "shop_outbox_backlog", service="order_service") == 0
    assert value_of(samples, "shop_http_requests_total", endpoint="/api/pipeline", status="503")


def test_outbox_backlog_counts_unsent_events_until_the_relay_publishes_them(
    database_url, amqp_url, tmp_path
):
    settings = migrated_settings(tmp_path, amqp_url, database_url)
    declare(amqp_url)
    client = client_for(settings)
    assert client.post("/api/products", json=a_product("TEA-1"), headers=ADMIN).status_code == 201
    assert client.post("/api/orders", json=an_order(("TEA-1", 1))).status_code == 201

    assert pipeline_of(client)["outbox"] == {
        "order_service": 2,  # product.created and order.created, not yet published
        "inventory_service": 0,
        "coupon_service": 0,
        "notification_service": 0,
    }
    assert value_of(metrics_of(client), "shop_outbox_backlog", service="order_service") == 2

    assert drain_outbox(settings) == 2
    assert pipeline_of(client)["outbox"]["order_service"] == 0
    assert value_of(metrics_of(client), "shop_outbox_backlog", service="order_service") == 0


def test_handled_messages_are_counted_from_each_services_inbox(database_url, amqp_url, tmp_path):
    from inventory_service.models import InventoryInbox

    settings = migrated_settings(tmp_path, amqp_url, database_url)
    declare(amqp_url)
    engine = make_engine(settings.of("inventory").database_url)
    try:
        with make_session_factory(engine).begin() as session:
            for number in range(3):
                session.add(
                    InventoryInbox(
                        queue="inventory.orders", message_id=f"m-{number}", message_type="t"
                    )
                )
    finally:
        engine.dispose()

    samples = metrics_of(client_for(settings))
    handled = [(labels, v) for n, labels, v in samples if n == "shop_messages_handled_total"]
    assert handled == [({"service": "inventory_service", "queue": "inventory.orders"}, 3.0)]


def test_a_database_that_is_down_or_not_migrated_is_null_not_an_error(amqp_url, tmp_path):
    missing = tmp_path / "never-created.db"
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    settings = migrated_settings(tmp_path, amqp_url)
    settings = (
        settings.with_service("inventory", database_url=f"sqlite:///{missing}")
        .with_service("coupon", database_url="postgresql+psycopg://postgres@127.0.0.1:1/nothing")
        .with_service("notification", database_url=f"sqlite:///{empty}")
    )
    declare(amqp_url)
    client = client_for(settings)

    assert pipeline_of(client)["outbox"] == {
        "order_service": 0,
        "inventory_service": None,
        "coupon_service": None,
        "notification_service": None,
    }
    assert not missing.exists(), "reading the backlog created a database file"
    samples = metrics_of(client)
    backlogs = {ls["service"]: v for n, ls, v in samples if n == "shop_outbox_backlog"}
    assert backlogs == {"order_service": 0}


def test_metrics_count_http_requests_and_their_latency_per_route(amqp_url, tmp_path):
    settings = migrated_settings(tmp_path, amqp_url)
    declare(amqp_url)
    client = client_for(settings)
    client.get("/healthz")
    client.get("/healthz")
    client.get("/api/orders/no-such-order")
    client.get("/no/such/page")

    samples = metrics_of(client)
    names = {name for name, _, _ in samples}
    assert {
        "shop_queue_messages",
        "shop_queue_consumers",
        "shop_dead_letters",
        "shop_outbox_backlog",
        "shop_http_requests_total",
        "shop_http_request_duration_seconds_bucket",
        "shop_http_request_duration_seconds_sum",
        "shop_http_request_duration_seconds_count",
    } <= names
    requests = "shop_http_requests_total"
    assert value_of(samples, requests, method="GET", endpoint="/healthz", status="200") == 2
    assert value_of(samples, requests, endpoint="/api/orders/<order_id>", status="404") == 1
    assert value_of(samples, requests, endpoint="<unmatched>", status="404") == 1

    duration = "shop_http_request_duration_seconds"
    buckets = [
        (labels["le"], v)
        for n, labels, v in samples
        if n == f"{duration}_bucket" and labels["endpoint"] == "/healthz"
    ]
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), "histogram buckets must be cumulative"
    assert buckets[-1] == ("+Inf", 2)
    assert value_of(samples, f"{duration}_count", endpoint="/healthz") == 2
    assert value_of(samples, f"{duration}_sum", endpoint="/healthz") > 0


def shop_status(settings: ShopSettings) -> subprocess.CompletedProcess:
    env = environment(settings)
    return subprocess.run(
        [sys.executable, "-m", "shop", "status"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def rows_of(output: str) -> dict[str, list[str]]:
    """The first column of each table row -> the row's other columns."""
    return {line.split()[0]: line.split()[1:] for line in output.splitlines() if line.strip()}


def test_shop_status_prints_every_queue_and_every_outbox_backlog(
    database_url, amqp_url, tmp_path, broker
):
    settings = migrated_settings(tmp_path, amqp_url, database_url, broker.management_url)
    unacked = "0" if broker.management_url else "-"  # -: unknown, over AMQP
    declare(amqp_url)
    client = client_for(settings)
    assert client.post("/api/products", json=a_product("TEA-1"), headers=ADMIN).status_code == 201
    publish_raw(amqp_url, "notifications.sms", b"{}", pika.BasicProperties(message_id="x"))

    def settled() -> dict[str, list[str]] | None:
        result = shop_status(settings)
        assert result.returncode == 0, result.stderr
        rows = rows_of(result.stdout)
        # ready, unacked, consumers, dead
        return rows if rows["notifications.sms"] == ["1", unacked, "0", "0"] else None

    rows = wait_until(settled, BROKER_WAIT, "shop status to show notifications.sms ready 1")
    for name in CONTRACT_QUEUES:
        assert len(rows[name]) == 4, rows[name]
    assert rows["order_service"] == ["1"]  # the product.created event
    assert rows["inventory_service"] == ["0"]
    assert rows["coupon_service"] == ["0"]
    assert rows["notification_service"] == ["0"]
