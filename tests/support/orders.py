"""The order service under test: a migrated database, a Flask test client, relay drains,
events written straight into its outbox."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, func, select

from messaging.connection import open_connection
from messaging.database import make_engine, make_session_factory
from messaging.migrations import upgrade
from messaging.publisher import ConfirmingPublisher
from messaging.relay import OutboxRelay
from order_service.events import outbox
from order_service.models import OrderOutbox
from order_service.service import SERVICE as ORDER
from shop.catalog import CATALOG, ShopSettings
from shop.web import create_app
from tests.support.amqp import declare

ADMIN_TOKEN = "test-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def order_settings(database_url: str, amqp_url: str) -> ShopSettings:
    """The shop's settings with a migrated order database (the others: their defaults)."""
    upgrade(ORDER, database_url)
    return (
        CATALOG.default_settings()
        .with_changes(amqp_url=amqp_url, admin_token=ADMIN_TOKEN)
        .with_service("order", database_url=database_url)
    )


def client_for(settings: ShopSettings):
    app = create_app(settings)
    app.testing = True
    return app.test_client()


def relay_for(engine: Engine, amqp_url: str, **options) -> OutboxRelay:
    return OutboxRelay(
        engine=engine,
        model=OrderOutbox,
        amqp_url=amqp_url,
        topology=CATALOG.topology(),
        name="test relay",
        **options,
    )


def drain_outbox(settings: ShopSettings) -> int:
    """Publish everything in the order outbox once, with confirms; returns how many."""
    engine = make_engine(settings.of("order").database_url)
    relay = relay_for(engine, settings.amqp_url)
    connection = open_connection(settings.amqp_url, "tests: drain")
    try:
        channel = connection.channel()
        CATALOG.topology().declare(channel)
        publisher = ConfirmingPublisher(connection, channel)
        total = 0
        while (batch := relay.relay_once(publisher)).claimed:
            assert batch.refused == 0, "the broker refused an event"
            total += batch.claimed
        return total
    finally:
        connection.close()
        engine.dispose()


def outbox_rows(settings: ShopSettings) -> int:
    engine = make_engine(settings.of("order").database_url)
    try:
        with make_session_factory(engine)() as session:
            return session.scalar(select(func.count()).select_from(OrderOutbox)) or 0
    finally:
        engine.dispose()


def a_product(sku: str = "TEA-1", stock: int = 10, price_cents: int = 450) -> dict:
    return {"sku": sku, "name": f"Product {sku}", "price_cents": price_cents, "stock": stock}


def an_order(*items: tuple[str, int], name: str = "Ann Lee", phone: str = "+4930123456") -> dict:
    return {
        "customer": {"name": name, "phone": phone},
        "items": [{"sku": sku, "quantity": quantity} for sku, quantity in items],
    }


@contextmanager
def migrated_outbox(database_url: str, amqp_url: str) -> Iterator[Engine]:
    """An engine on a migrated order database, the broker's topology declared."""
    upgrade(ORDER, database_url)
    declare(amqp_url)
    engine = make_engine(database_url)
    try:
        yield engine
    finally:
        engine.dispose()


def add_events(engine: Engine, count: int, first: int = 0) -> None:
    """Write `count` order.created events ({"n": first}, ...) into the outbox, unsent."""
    with make_session_factory(engine).begin() as session:
        for number in range(first, first + count):
            outbox.add(session, "order.created", {"n": number}, correlation_id="c")
