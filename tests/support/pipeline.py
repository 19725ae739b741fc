"""The whole pipeline under test: four migrated databases, every service running as a
thread of the test process (or as a real process where a test kills one)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from messaging.migrations import upgrade
from messaging.settings import Settings
from shop.in_process import ServiceThread  # noqa: F401  (the tests import it from here)
from shop.processes import SERVICE_DATABASES
from tests.support.amqp import wait_until
from tests.support.orders import ADMIN_TOKEN

REPO = Path(__file__).resolve().parents[2]


def pipeline_settings(tmp_path: Path, database_url: str, amqp_url: str) -> Settings:
    """SQLite: a file per service. PostgreSQL: all four services share the one test
    database, which also proves that their tables and version tables never collide."""
    if database_url.startswith("sqlite"):
        urls = {name: f"sqlite:///{tmp_path / f'{name}.db'}" for name in SERVICE_DATABASES}
    else:
        urls = dict.fromkeys(SERVICE_DATABASES, database_url)
    for service, url in urls.items():
        upgrade(service, url)
    return Settings(
        amqp_url=amqp_url,
        order_database_url=urls["order_service"],
        inventory_database_url=urls["inventory_service"],
        coupon_database_url=urls["coupon_service"],
        notification_database_url=urls["notification_service"],
        admin_token=ADMIN_TOKEN,
    )


def environment(settings: Settings) -> dict[str, str]:
    management = settings.rabbitmq_management_url
    return {
        **os.environ,
        **({"RABBITMQ_MANAGEMENT_URL": management} if management else {}),
        "AMQP_URL": settings.amqp_url,
        "ORDER_DATABASE_URL": settings.order_database_url,
        "INVENTORY_DATABASE_URL": settings.inventory_database_url,
        "COUPON_DATABASE_URL": settings.coupon_database_url,
        "NOTIFICATION_DATABASE_URL": settings.notification_database_url,
        "PYTHONUNBUFFERED": "1",
    }


def start_process(name: str, settings: Settings, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "shop", "run", name],
        cwd=REPO,
        env=environment(settings),
        stdout=log.open("a"),
        stderr=subprocess.STDOUT,
    )


def settled(client, order_id: str) -> dict | None:
    order = client.get(f"/api/orders/{order_id}").get_json()
    return order if order["status"] != "PENDING" else None


def wait_settled(client, order_id: str, timeout: float = 20.0) -> dict:
    return wait_until(lambda: settled(client, order_id), timeout, f"order {order_id} to settle")


def events_of(order: dict) -> list[str]:
    return [entry["event"] for entry in order["timeline"]]
