"""The whole pipeline under test: every service's migrated database, every service running
as a thread of the test process (or as a real process where a test kills one)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from messaging.migrations import upgrade
from shop.catalog import CATALOG, MONITORING_AMQP_VARIABLE, ShopSettings
from shop.in_process import ServiceThread  # noqa: F401  (the tests import it from here)
from tests.support.amqp import wait_until
from tests.support.orders import ADMIN_TOKEN

REPO = Path(__file__).resolve().parents[2]


def pipeline_settings(tmp_path: Path, database_url: str, amqp_url: str) -> ShopSettings:
    """SQLite: a file per service. PostgreSQL: every service shares the one test
    database, which also proves that their tables and version tables never collide."""
    settings = CATALOG.default_settings().with_changes(amqp_url=amqp_url, admin_token=ADMIN_TOKEN)
    for service in CATALOG:
        url = database_url
        if database_url.startswith("sqlite"):
            url = f"sqlite:///{tmp_path / f'{service.package}.db'}"
        upgrade(service, url)
        settings = settings.with_service(service.name, database_url=url)
    return settings


def environment(settings: ShopSettings) -> dict[str, str]:
    """The variables a process of the shop needs to run on these settings (a service's own
    broker URL only where it is not AMQP_URL: least privilege, shop/broker_users.py)."""
    management = settings.rabbitmq_management_url
    own_urls = {
        service.settings.amqp_variable(): settings.of(service.name).amqp_url
        for service in CATALOG
        if settings.of(service.name).amqp_url != settings.amqp_url
    }
    if settings.monitoring_amqp_url:
        own_urls[MONITORING_AMQP_VARIABLE] = settings.monitoring_amqp_url
    return {
        **os.environ,
        **({"RABBITMQ_MANAGEMENT_URL": management} if management else {}),
        "AMQP_URL": settings.amqp_url,
        **own_urls,
        **{
            service.settings.DATABASE_VARIABLE: settings.of(service.name).database_url
            for service in CATALOG
        },
        "PYTHONUNBUFFERED": "1",
    }


def start_process(name: str, settings: ShopSettings, log: Path) -> subprocess.Popen:
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
