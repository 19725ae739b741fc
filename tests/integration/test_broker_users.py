"""Least privilege on the real broker: `shop topology --users` makes a user per service and
one for monitoring, each allowed what its catalog entry needs (shop/broker_users.py) and no
more; the inventory's user cannot take the coupon service's RPC questions nor forge dead
letters; the monitoring user reads the pipeline; and the whole pipeline, every service on
its own user, places an order, confirms it, tells its whole story and sells a flash-sale
unit. Each test has its own vhost and its own users (users are global on a broker, so
their names carry the test's prefix)."""

import logging
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass

import pika
import pika.exceptions
import pytest

from messaging.connection import close_quietly, open_connection
from messaging.management import ManagementApi
from messaging.migrations import upgrade
from messaging.pipeline import amqp_stats
from messaging.settings import vhost_of
from shop import broker_users
from shop.catalog import CATALOG
from shop.ops.readings import PipelineReader
from tests.support.amqp import publish_raw, wait_until
from tests.support.flash_sales import buy, open_sale, wait_decided
from tests.support.orders import ADMIN, a_product, an_order
from tests.support.pipeline import (
    REPO,
    ServiceThread,
    events_of,
    pipeline_settings,
    wait_settled,
)

pytestmark = pytest.mark.integration

ACCESS_REFUSED = 403


@dataclass
class Users:
    amqp_url: str  # the admin's (the test broker's user, on the test's vhost)
    made: list[broker_users.BrokerUser]
    urls: dict[str, str]  # {"ORDER_AMQP_URL": ..., "MONITORING_AMQP_URL": ...}

    def of(self, role: str) -> broker_users.BrokerUser:
        return next(user for user in self.made if user.role == role)

    def url(self, role: str) -> str:
        return self.urls[self.of(role).url_variable]


def shop_topology(amqp_url: str, *arguments: str, **environment: str):
    return subprocess.run(
        [sys.executable, "-m", "shop", "topology", *arguments],
        cwd=REPO,
        env={**os.environ, "AMQP_URL": amqp_url, **environment},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def users(amqp_url, management_url):
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    made = broker_users.broker_users(CATALOG.default_settings(), prefix=prefix)
    secrets = {user.password_variable: uuid.uuid4().hex for user in made}
    # The management API the tests found answering (RABBITMQ_MANAGEMENT_URL may name one
    # that does not, and the command would rightly say so).
    done = shop_topology(
        amqp_url,
        "--users",
        "--user-prefix",
        prefix,
        RABBITMQ_MANAGEMENT_URL=management_url,
        **secrets,
    )
    try:
        assert done.returncode == 0, done.stderr
        for user in made:  # each is named with its rights and URL, its password never
            assert f"user {user.name} on vhost {vhost_of(amqp_url.split(',')[0])}" in done.stdout
            assert f"{user.url_variable}=amqp://{user.name}:***@" in done.stdout
        assert not any(secret in done.stdout + done.stderr for secret in secrets.values())
        yield Users(amqp_url, made, broker_users.url_variables(made, amqp_url, secrets))
    finally:
        broker_users.delete_users(made, amqp_url, management_url)


def refused(action) -> int | None:
    """The reply code the broker closed the channel with, or None when it did not."""
    try:
        action()
    except pika.exceptions.ChannelClosedByBroker as closed:
        return closed.reply_code
    return None


def test_a_missing_password_is_a_clear_error_naming_its_variable(amqp_url):
    missing = shop_topology(amqp_url, "--users", "--user-prefix", "never-made-")
    assert missing.returncode == 2
    (line,) = missing.stderr.strip().splitlines()
    assert "SHOP_BROKER_PASSWORD_ORDER" in line and "SHOP_BROKER_PASSWORD_MONITORING" in line


def test_the_inventory_user_may_touch_its_own_queue_and_nothing_of_another_service(users):
    connection = open_connection(users.url("inventory"), "test: inventory user")
    try:
        channel = connection.channel()
        channel.basic_consume("inventory.orders", lambda *_: None)  # its own: allowed
        assert refused(lambda: channel.basic_get("coupons.rpc")) == ACCESS_REFUSED
        channel = connection.channel()
        channel.confirm_delivery()
        forged = pika.BasicProperties(delivery_mode=2)
        assert (
            refused(lambda: channel.basic_publish("shop.dead-letter", "coupons.rpc", b"{}", forged))
            == ACCESS_REFUSED
        )
        channel = connection.channel()  # nor may it declare (so delete) an exchange
        assert refused(lambda: channel.exchange_declare("shop.events", "topic", durable=True)) == (
            ACCESS_REFUSED
        )
    finally:
        close_quietly(connection)


def test_the_monitoring_user_reads_the_pipeline_and_takes_nothing(users, management_url):
    publish_raw(users.amqp_url, "inventory.orders", b"{}", pika.BasicProperties())
    monitoring = users.url("monitoring")
    api = ManagementApi.for_broker(monitoring, management_url)  # its own user, its tag
    vhost = api.quoted(vhost_of(users.amqp_url.split(",")[0]))
    listed = {queue["name"] for queue in api.get(f"/api/queues/{vhost}?columns=name") or []}
    assert listed >= {queue.name for queue in CATALOG.topology().queues}
    over_amqp = amqp_stats(monitoring, sorted(listed))  # its fallback: passive declares
    assert over_amqp["inventory.orders"]["ready"] == 1 and set(over_amqp) == listed
    settings = CATALOG.default_settings().with_changes(
        amqp_url=users.amqp_url, monitoring_amqp_url=monitoring
    )
    reader = PipelineReader(settings)  # what the dashboard and /metrics read with
    try:
        assert {q.name: q.ready for q in reader.queues()}["inventory.orders"] == 1
    finally:
        reader.close()
    connection = open_connection(monitoring, "test: monitoring user")
    try:
        assert refused(lambda: connection.channel().basic_get("inventory.orders")) == (
            ACCESS_REFUSED
        )
    finally:
        close_quietly(connection)


def test_a_service_cannot_make_its_own_work_queue_and_says_who_must(
    users, tmp_path, start_in_thread, caplog
):
    connection = open_connection(users.amqp_url, "test: admin")
    connection.channel().queue_delete("notifications.sms")  # as if nobody had declared it
    close_quietly(connection)
    database = f"sqlite:///{tmp_path / 'notifications.db'}"
    upgrade(CATALOG.get("notification"), database)
    settings = CATALOG.default_settings().with_changes(amqp_url=users.amqp_url)
    settings = settings.with_service(
        "notification", amqp_url=users.url("notification"), database_url=database
    )
    caplog.set_level(logging.WARNING, logger="messaging.worker")
    start_in_thread(ServiceThread("notification", settings))
    wait_until(
        lambda: "ACCESS_REFUSED" in caplog.text and "`shop topology`" in caplog.text,
        20,
        "a line saying the admin must declare the topology",
    )


def connected_users(amqp_url: str, management_url: str) -> set[str]:
    """Who is connected to the test's vhost now (the management API)."""
    api = ManagementApi.for_broker(amqp_url, management_url)
    vhost = vhost_of(amqp_url.split(",")[0])
    return {c["user"] for c in api.get(f"/api/vhosts/{api.quoted(vhost)}/connections") or []}


def test_every_service_works_with_only_its_own_user(
    users, tmp_path, database_url, start_in_thread, make_app, management_url
):
    settings = pipeline_settings(tmp_path, database_url, users.amqp_url)
    for service in CATALOG:
        settings = settings.with_service(service.name, amqp_url=users.url(service.name))
    settings = settings.with_changes(monitoring_amqp_url=users.url("monitoring"))
    for name in CATALOG.names:
        start_in_thread(ServiceThread(name, settings))
    client = make_app(settings)  # the web app: the order service's user, ops: monitoring

    assert client.post("/api/products", json=a_product(stock=10), headers=ADMIN).status_code == 201
    coupon = {"code": "OWNUSER", "amount_off_cents": 100}  # made over RPC: order -> coupon
    assert client.post("/api/coupons", json=coupon, headers=ADMIN).status_code == 201
    placed = client.post("/api/orders", json={**an_order(("TEA-1", 2)), "coupon_code": "OWNUSER"})
    assert placed.status_code == 201, placed.get_json()
    assert wait_settled(client, placed.get_json()["id"], 30)["status"] == "CONFIRMED"

    def whole_story():
        order = client.get(f"/api/orders/{placed.get_json()['id']}").get_json()
        expected = {"inventory.reserved", "order.confirmed", "coupon.redeemed", "coupon.issued"}
        return (
            expected <= set(events_of(order))
            and events_of(order).count("notification.sms_sent") == 2
        )

    wait_until(whole_story, 30, "the whole timeline, from every service")

    # The flash-sale gate publishes into its queue and hears the news on a server-named one.
    sale = open_sale(client, quota=1, stock=5)
    admitted = buy(client, sale["id"], 1)
    assert admitted.status_code == 202, admitted.get_json()
    (decided,) = wait_decided(client, sale["id"], [admitted.get_json()["ticket_id"]])
    assert decided["status"] == "WON"

    pipeline = client.get("/api/pipeline")  # as the monitoring user
    assert pipeline.status_code == 200
    assert all(queue["ready"] is not None for queue in pipeline.get_json()["queues"])
    own = {users.of(name).name for name in CATALOG.names}
    wait_until(
        lambda: connected_users(users.amqp_url, management_url) == own,
        20,
        "every service, and nobody else, connected as its own user",
    )
