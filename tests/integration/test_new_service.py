"""A new service is one package and one line in the catalog: a made-up payments service
(tests/support/payments.py) added to the shop's catalog gets its queue and binding in the
topology, runs as `shop run` would run it, reads what the order service announces, and what
it announces reaches the broker. Against the real broker, on both databases."""

import threading
import uuid

import pika
import pytest
from sqlalchemy import select

from messaging.connection import close_quietly, open_connection
from messaging.database import make_engine, make_session_factory
from messaging.envelope import Envelope
from messaging.publisher import Outgoing
from messaging.service import run_service
from order_service.events import OrderConfirmed
from shop.catalog import CATALOG, Catalog
from tests.support import payments
from tests.support.amqp import publish_raw, take_all, wait_until

pytestmark = pytest.mark.integration


def consumers(amqp_url: str, queue: str) -> int:
    """Consumers on `queue`; 0 while it does not exist yet."""
    connection = open_connection(amqp_url, "test: consumers")
    try:
        return connection.channel().queue_declare(queue, passive=True).method.consumer_count
    except pika.exceptions.ChannelClosedByBroker:
        return 0
    finally:
        close_quietly(connection)


def test_a_fifth_service_from_one_catalog_line_takes_part_in_the_pipeline(database_url, amqp_url):
    shop = Catalog([*CATALOG, payments.SERVICE])
    topology = shop.topology()
    assert topology.queue("payments.orders").bindings == ("order.confirmed",)
    settings = shop.default_settings().with_changes(amqp_url=amqp_url)
    settings = settings.with_service("payment", database_url=database_url)
    engine = make_engine(database_url)
    payments.Base.metadata.create_all(engine)

    stop = threading.Event()
    worker = threading.Thread(
        target=run_service, args=(payments.SERVICE, settings.of("payment"), topology, stop)
    )
    worker.start()
    try:
        wait_until(lambda: consumers(amqp_url, "payments.orders") == 1, 30, "its consumer")
        # A tap on what payments announces, bound as any other consumer would be.
        connection = open_connection(amqp_url, "test tap")
        channel = connection.channel()
        channel.queue_declare("tap.payments", durable=True)
        channel.queue_bind("tap.payments", "shop.events", "payment.#")
        connection.close()

        order_id = str(uuid.uuid4())
        confirmed = OrderConfirmed.example().model_copy(update={"order_id": order_id})
        envelope = Envelope.new(
            confirmed.TYPE, confirmed.body(), correlation_id=order_id, app_id="order_service"
        )
        event = Outgoing.event(envelope)
        publish_raw(amqp_url, "payments.orders", event.body, event.properties)

        (captured,) = take_all(amqp_url, "tap.payments", 1, timeout=30)
        assert captured.routing_key == "payment.captured"
        assert captured.properties.app_id == "payment_service"
        with make_session_factory(engine)() as session:
            paid = session.scalars(select(payments.Payment.order_id)).all()
        assert paid == [order_id]
    finally:
        stop.set()
        worker.join(timeout=30)
        engine.dispose()
