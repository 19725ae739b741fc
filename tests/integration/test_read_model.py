"""The order service's read model (`orders.read-model`) on the real broker, on SQLite and
PostgreSQL: a stock change older than the one shown is ignored, whatever order they come
in; an order's story gets a line per event about it, and events about orders it does not
know, or skus it does not sell, are acked, not crash-looped or dead-lettered."""

import pytest
from sqlalchemy import select

from messaging.connection import open_connection
from messaging.database import make_engine, make_session_factory
from messaging.envelope import Envelope
from messaging.migrations import upgrade
from messaging.publisher import ConfirmingPublisher, Outgoing
from messaging.service import ServiceContext
from order_service.models import Product, TimelineEntry
from order_service.use_cases.orders import new_order
from shop.catalog import CATALOG
from tests.support.amqp import queue_depth, wait_until

pytestmark = pytest.mark.integration

QUEUE = "orders.read-model"


def event(event_type: str, body: dict, app_id: str) -> Outgoing:
    envelope = Envelope.new(event_type, body, correlation_id="c", app_id=app_id)
    return Outgoing.to_queue(QUEUE, envelope)


def stock(available: int, version: int, sku: str = "TEA-1") -> Outgoing:
    body = {"sku": sku, "available": available, "version": version}
    return event("inventory.stock_changed", body, "inventory_service")


def coupon_issued(order_id: str) -> Outgoing:
    body = {"order_id": order_id, "code": "THANKS-1", "percent_off": 10}
    return event("coupon.issued", body, "coupon_service")


def test_the_read_model_keeps_the_newest_stock_and_each_orders_story(
    database_url, amqp_url, start_in_thread
):
    order = CATALOG.get("order")
    upgrade(order, database_url)
    engine = make_engine(database_url)
    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        tea = Product(sku="TEA-1", name="Tea", price_cents=450, available=20)
        session.add(tea)
        session.flush()
        session.add(new_order("Ann", "+4930123456", [(tea, 1, 450)], order_id="known"))

    topology = CATALOG.topology()
    connection = open_connection(amqp_url, "test: read model")
    topology.declare(connection.channel())
    ConfirmingPublisher(connection, connection.channel()).publish_batch(
        [
            stock(12, 3),
            stock(15, 2),  # older than the one shown: ignored
            stock(1, 9, sku="NOPE"),  # a sku the shop does not sell
            coupon_issued("known"),
            coupon_issued("stranger"),  # an order of another shop, say
        ]
    )
    connection.close()

    settings = CATALOG.default_settings().with_changes(amqp_url=amqp_url)
    settings = settings.with_service("order", database_url=database_url)
    context = ServiceContext(order, settings.of("order"), engine, topology)
    consumer = next(w for w in order.workers(context) if getattr(w, "queue", None) == QUEUE)
    start_in_thread(consumer)
    wait_until(lambda: consumer.stats.handled == 5, what="all five events handled")

    with sessions() as session:
        shown = session.get(Product, "TEA-1")
        assert (shown.available, shown.stock_version) == (12, 3)
        assert session.get(Product, "NOPE") is None
        lines = session.execute(
            select(TimelineEntry.order_id, TimelineEntry.event, TimelineEntry.detail).where(
                TimelineEntry.event == "coupon.issued"
            )
        ).all()
    assert lines == [("known", "coupon.issued", "reward coupon THANKS-1: 10% off")]
    assert queue_depth(amqp_url, QUEUE) == 0
    assert queue_depth(amqp_url, f"{QUEUE}.dead") == 0
    engine.dispose()
