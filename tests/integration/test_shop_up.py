"""`shop up`, what `make run` runs: every process starts, an order flows to the broker, a
process that dies is restarted, Ctrl-C stops everything, and no broker means one clear line."""

import os
import re
import signal
import subprocess
import sys

import pika
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, select

from inventory_service.models import StockItem
from messaging.connection import close_quietly, open_connection
from messaging.database import make_engine
from shop.catalog import CATALOG
from tests.support.amqp import wait_until
from tests.support.databases import create_postgres_database, drop_postgres_database
from tests.support.orders import a_product, an_order
from tests.support.running_shop import answers, running_shop

pytestmark = pytest.mark.integration


@pytest.fixture
def shop_up(tmp_path, amqp_url):
    with running_shop(tmp_path, amqp_url) as shop:
        yield shop.process, shop.base, shop.log


def status_of(base: str, order_id: str) -> str:
    return requests.get(f"{base}/api/orders/{order_id}", timeout=5).json()["status"]


def healthz_answered(base: str) -> float:
    """`shop_http_requests_total` of GET /healthz answered 200, as one scrape of /metrics says."""
    text = requests.get(base + "/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            wanted = labels.get("endpoint") == "/healthz" and labels.get("status") == "200"
            if sample.name == "shop_http_requests_total" and wanted:
                return sample.value
    return 0.0


def test_shop_up_runs_the_pipeline_restarts_a_dead_process_and_stops_on_ctrl_c(shop_up, tmp_path):
    process, base, log = shop_up
    token = (tmp_path / "var" / "admin-token").read_text().strip()
    assert token in log.read_text(), "the generated admin token is printed"
    admin = {"Authorization": f"Bearer {token}"}

    assert requests.post(base + "/api/products", json=a_product(), headers=admin).status_code == 201
    first = requests.post(base + "/api/orders", json=an_order(("TEA-1", 1))).json()["id"]
    wait_until(lambda: status_of(base, first) == "CONFIRMED", what="the first order to confirm")

    order_pid = int(re.search(r"started order \(pid (\d+)\)", log.read_text()).group(1))
    os.kill(order_pid, signal.SIGKILL)
    wait_until(
        lambda: "order exited with code -9; restarting" in log.read_text(),
        what="the supervisor to notice",
    )
    second = requests.post(base + "/api/orders", json=an_order(("TEA-1", 2))).json()["id"]
    wait_until(
        lambda: status_of(base, second) == "CONFIRMED",
        timeout=30,
        what="the restarted order process to relay and settle the order",
    )

    # gunicorn's two workers each answer some of these; /metrics, answered by either one,
    # counts all of them (prometheus_client's multiprocess mode).
    before = healthz_answered(base)
    for _ in range(40):
        assert requests.get(base + "/healthz", timeout=5).status_code == 200
    assert healthz_answered(base) - before == 40

    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=40) == 0
    assert "all processes stopped" in log.read_text()
    assert not answers(base + "/healthz")


def test_shop_up_without_a_broker_says_so_in_one_line(tmp_path):
    env = {**os.environ, "AMQP_URL": "amqp://guest:guest@127.0.0.1:1/%2F"}
    result = subprocess.run(
        [sys.executable, "-m", "shop", "up"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "RabbitMQ is not reachable at amqp://guest:***@127.0.0.1:1/" in line
    assert "docker compose up -d rabbitmq" in line and "rabbitmq-server" in line


def consumers_of(amqp_url: str, queue: str) -> int:
    connection = open_connection(amqp_url, "test: consumers")
    try:
        return connection.channel().queue_declare(queue, passive=True).method.consumer_count
    except pika.exceptions.ChannelClosedByBroker:  # not declared yet
        return 0
    finally:
        close_quietly(connection)


def test_shop_up_scales_a_service_on_postgresql_and_the_replicas_share_its_queue(
    tmp_path, amqp_url, postgres_base_url
):
    if postgres_base_url is None:
        pytest.skip("no PostgreSQL: set TEST_POSTGRES_URL (CI does)")
    database = create_postgres_database(postgres_base_url)
    databases = {service.settings.DATABASE_VARIABLE: database for service in CATALOG}
    try:
        with running_shop(tmp_path, amqp_url, "--scale", "inventory=2", **databases) as shop:
            wait_until(
                lambda: consumers_of(amqp_url, "inventory.orders") == 2,
                timeout=60,
                what="two inventory processes on inventory.orders",
            )
            assert "started inventory-2" in shop.log_text()
            token = (tmp_path / "var" / "admin-token").read_text().strip()
            admin = {"Authorization": f"Bearer {token}"}
            product = a_product(stock=100)
            assert requests.post(shop.base + "/api/products", json=product, headers=admin).ok
            # With two inventory processes, an order.created may be handled beside the
            # product.created of its sku (docs/design.md, "Replicas"): as an admin would,
            # let the inventory know the product before anyone buys it.
            inventory = make_engine(database)
            try:
                wait_until(
                    lambda: inventory_knows(inventory, product["sku"]),
                    timeout=30,
                    what=f"the inventory to know {product['sku']}",
                )
            finally:
                inventory.dispose()
            ids = [
                requests.post(shop.base + "/api/orders", json=an_order(("TEA-1", 1))).json()["id"]
                for _ in range(20)
            ]
            for order_id in ids:
                wait_until(
                    lambda order_id=order_id: status_of(shop.base, order_id) == "CONFIRMED",
                    timeout=30,
                    what=f"order {order_id} to be confirmed",
                )
    finally:
        drop_postgres_database(postgres_base_url, database)


def inventory_knows(engine: Engine, sku: str) -> bool:
    with engine.connect() as connection:
        known = connection.execute(select(StockItem.sku).where(StockItem.sku == sku)).first()
        return known is not None


def test_shop_up_will_not_run_two_writers_on_one_sqlite_file(tmp_path, amqp_url):
    env = {**os.environ, "AMQP_URL": amqp_url}
    result = subprocess.run(
        [sys.executable, "-m", "shop", "up", "--scale", "inventory=2"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "SQLite" in line and "INVENTORY_DATABASE_URL" in line and "PostgreSQL" in line
