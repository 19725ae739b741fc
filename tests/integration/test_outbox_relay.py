"""The transactional outbox and its relay against the real broker, on SQLite and PostgreSQL:
an order's event is published exactly when the order is committed, with every property of
CONTRACT.md, and survives the broker going away."""

import json
import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy import func, select

from messaging.connection import open_connection
from messaging.database import make_engine, make_session_factory
from messaging.management import first_url
from messaging.publisher import ConfirmingPublisher
from order_service import events as order_events
from order_service.commands import OrderIn
from order_service.models import Order, OrderOutbox
from order_service.use_cases import orders
from shop.tcp_proxy import TcpProxy
from tests.support.amqp import declare, queue_depth, take_all, wait_until
from tests.support.orders import (
    ADMIN,
    a_product,
    an_order,
    client_for,
    order_settings,
    relay_for,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def shop(database_url, amqp_url):
    settings = order_settings(database_url, amqp_url)
    declare(amqp_url)
    client = client_for(settings)
    assert client.post("/api/products", json=a_product("TEA-1"), headers=ADMIN).status_code == 201
    engine = make_engine(database_url)
    yield settings, client, engine
    engine.dispose()


def place(client, quantity: int = 1) -> str:
    response = client.post("/api/orders", json=an_order(("TEA-1", quantity)))
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def backlog(engine) -> int:
    with make_session_factory(engine)() as session:
        return order_events.outbox.backlog(session)


def test_a_committed_order_is_published_once_with_every_contract_property(
    shop, amqp_url, start_in_thread
):
    _settings, client, engine = shop
    start_in_thread(relay_for(engine, amqp_url))
    order_id = place(client)
    wait_until(lambda: backlog(engine) == 0, what="the outbox to drain")
    second = place(client)  # once this one is through, the relay has looped past the first
    events = take_all(amqp_url, "inventory.orders", expected=3)

    product_created, created, created_again = events
    assert product_created.properties.type == "product.created"
    assert [json.loads(e.body)["order_id"] for e in (created, created_again)] == [order_id, second]
    props = created.properties
    assert props.content_type == "application/json"
    assert props.delivery_mode == 2
    assert uuid.UUID(props.message_id)
    assert props.correlation_id == order_id
    assert props.type == "order.created"
    assert created.routing_key == "order.created"
    assert props.app_id == "order_service"
    assert isinstance(props.timestamp, int) and props.timestamp > 1_700_000_000
    assert props.headers["schema_version"] == 1
    body = json.loads(created.body)
    assert body["items"] == [{"sku": "TEA-1", "quantity": 1, "unit_price_cents": 450}]
    assert body["total_cents"] == 450
    assert len({e.properties.message_id for e in events}) == 3


def test_a_rolled_back_transaction_publishes_nothing(shop, amqp_url, start_in_thread, monkeypatch):
    _settings, client, engine = shop
    sessions = make_session_factory(engine)
    write_event = order_events.outbox.add

    def write_then_fail(*args, **kwargs):
        write_event(*args, **kwargs)  # the order and its event are both in the transaction
        raise RuntimeError("the request failed after the event was written")

    monkeypatch.setattr(order_events.outbox, "add", write_then_fail)
    with pytest.raises(RuntimeError):
        orders.place_order(sessions, OrderIn.model_validate(an_order(("TEA-1", 5))), coupons=None)
    monkeypatch.undo()
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Order)) == 0

    start_in_thread(relay_for(engine, amqp_url))
    committed = place(client)
    events = take_all(amqp_url, "inventory.orders", expected=2)
    assert [e.properties.type for e in events] == ["product.created", "order.created"]
    assert events[1].properties.correlation_id == committed
    assert queue_depth(amqp_url, "inventory.orders") == 0


def test_orders_are_accepted_while_the_broker_is_cut_off_and_all_events_arrive_in_order(
    shop, amqp_url, start_in_thread
):
    _settings, client, engine = shop
    parts = urlsplit(first_url(amqp_url))  # the proxy stands for one node
    proxy = TcpProxy(parts.hostname, parts.port or 5672)
    through_proxy = urlunsplit(parts._replace(netloc=f"guest:guest@127.0.0.1:{proxy.port}"))
    try:
        start_in_thread(relay_for(engine, through_proxy))
        placed = [place(client) for _ in range(5)]
        wait_until(lambda: backlog(engine) == 0, what="the first orders to be published")

        proxy.cut()
        placed += [place(client) for _ in range(20)]  # the shop keeps taking orders
        assert backlog(engine) == 20
        assert queue_depth(amqp_url, "inventory.orders") == 6  # nothing new got through

        proxy.restore()
        wait_until(lambda: backlog(engine) == 0, timeout=60, what="the relay to recover")
    finally:
        proxy.close()

    events = take_all(amqp_url, "inventory.orders", expected=26)
    first_seen: dict[str, str] = {}
    for event in events[1:]:
        first_seen.setdefault(event.properties.message_id, json.loads(event.body)["order_id"])
    assert list(first_seen.values()) == placed, "an event was lost or reordered"


def test_an_unroutable_event_stays_in_the_outbox_with_its_error(shop, amqp_url):
    _settings, client, engine = shop
    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        order_events.outbox.add(session, "nobody.listens", {"x": 1}, correlation_id="c-1")

    relay = relay_for(engine, amqp_url)
    connection = open_connection(amqp_url, "test")
    try:
        publisher = ConfirmingPublisher(connection, connection.channel())
        batch = relay.relay_once(publisher)
    finally:
        connection.close()
    assert (batch.claimed, batch.refused) == (2, 1)  # product.created went out; this did not
    with sessions() as session:
        row = session.scalar(select(OrderOutbox).where(OrderOutbox.event_type == "nobody.listens"))
        assert row.sent_at is None
        assert row.attempts == 1
        assert "unroutable" in row.last_error


def test_two_relays_share_a_postgresql_outbox_without_publishing_twice(
    shop, amqp_url, start_in_thread, database_url
):
    if not database_url.startswith("postgresql"):
        pytest.skip("several relays need FOR UPDATE SKIP LOCKED (PostgreSQL)")
    _settings, _client, engine = shop
    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        for number in range(2000):
            order_events.outbox.add(
                session, "order.created", {"n": number}, correlation_id=str(number)
            )
    start_in_thread(relay_for(engine, amqp_url, batch_size=50))
    start_in_thread(relay_for(engine, amqp_url, batch_size=50))
    wait_until(lambda: backlog(engine) == 0, timeout=60, what="both relays to drain the outbox")

    events = take_all(amqp_url, "inventory.orders", expected=2001)
    assert len(events) == 2001
    assert len({e.properties.message_id for e in events}) == 2001


def test_a_relay_waits_out_a_database_that_is_not_there_yet(
    database_url, amqp_url, start_in_thread, caplog
):
    declare(amqp_url)
    engine = make_engine(database_url)  # not migrated: every query fails for now
    running = start_in_thread(relay_for(engine, amqp_url))
    wait_until(
        lambda: "cannot use its database" in caplog.text, what="the relay to report the database"
    )
    assert running.thread.is_alive(), "a database fault must not kill the relay"

    settings = order_settings(database_url, amqp_url)  # the database comes back
    client = client_for(settings)
    assert client.post("/api/products", json=a_product("LATE-1"), headers=ADMIN).status_code == 201
    (event,) = take_all(amqp_url, "inventory.orders", expected=1, timeout=60)
    assert event.properties.type == "product.created"
    engine.dispose()
