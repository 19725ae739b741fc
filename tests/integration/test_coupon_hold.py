"""A single-use coupon is used once, however long its order waits, on SQLite and
PostgreSQL: a reservation lapses after the TTL only while its order does not exist; once
`order.created` reaches the coupon service it holds until the order's outcome."""

import time

import pytest

from coupon_service.models import Coupon
from messaging.database import make_engine, make_session_factory
from order_service.coupon_client import CouponDesk
from tests.support.amqp import declare, wait_until
from tests.support.orders import ADMIN, a_product, an_order, client_for
from tests.support.pipeline import ServiceThread, events_of, pipeline_settings, wait_settled

pytestmark = pytest.mark.integration

TTL = 3.0  # seconds; the default is 15 minutes


@pytest.fixture
def settings(tmp_path, database_url, amqp_url):
    declare(amqp_url)
    return pipeline_settings(tmp_path, database_url, amqp_url).with_changes(reservation_ttl=TTL)


@pytest.fixture
def client(settings):
    client = client_for(settings)
    assert client.post("/api/products", json=a_product("TEA-1"), headers=ADMIN).status_code == 201
    return client


def start(start_in_thread, settings, *names):
    for name in names:
        start_in_thread(ServiceThread(name, settings))


def add_single_use_coupon(client):
    coupon = {"code": "ONCE", "amount_off_cents": 100}
    assert client.post("/api/coupons", json=coupon, headers=ADMIN).status_code == 201


def coupon(settings) -> Coupon:
    engine = make_engine(settings.of("coupon").database_url)
    try:
        with make_session_factory(engine)() as session:
            return session.get(Coupon, "ONCE")
    finally:
        engine.dispose()


def order_with_coupon(client, phone="+4930123456"):
    return client.post(
        "/api/orders", json={**an_order(("TEA-1", 1), phone=phone), "coupon_code": "ONCE"}
    )


def outlive_the_ttl():
    """Let the reservation TTL pass: a deadline of its own, not a guess at a slow system."""
    deadline = time.monotonic() + TTL * 2
    wait_until(lambda: time.monotonic() > deadline, TTL * 3, "the reservation TTL to pass")


def test_a_coupon_held_by_a_waiting_order_is_not_given_to_another(
    settings, client, start_in_thread
):
    start(start_in_thread, settings, "order", "coupon", "notification")  # no inventory
    add_single_use_coupon(client)
    first = order_with_coupon(client)
    assert first.status_code == 201, first.get_json()
    first_id = first.get_json()["id"]

    def held():
        found = coupon(settings)
        return found.status == "RESERVED" and found.reserved_until is None and found

    held_coupon = wait_until(held, 20, "order.created to turn the reservation into a hold")
    assert held_coupon.order_id == first_id
    outlive_the_ttl()

    second = order_with_coupon(client, phone="+4930999999")
    assert second.status_code == 422
    assert second.get_json()["errors"] == [
        {"field": "coupon_code", "message": "this coupon is being used by another order"}
    ]

    start(start_in_thread, settings, "inventory")  # the outage ends
    order = wait_settled(client, first_id, timeout=30)
    assert (order["status"], order["discount_cents"]) == ("CONFIRMED", 100)
    order = wait_until(
        lambda: (
            (o := client.get(f"/api/orders/{first_id}").get_json())
            and "coupon.redeemed" in events_of(o)
            and o
        ),
        20,
        "coupon.redeemed in the timeline",
    )
    assert events_of(order).count("coupon.redeemed") == 1
    redeemed = coupon(settings)
    assert (redeemed.status, redeemed.order_id) == ("REDEEMED", first_id)


def test_a_reservation_whose_order_was_never_created_lapses_after_the_ttl(
    settings, client, start_in_thread
):
    start(start_in_thread, settings, "order", "coupon", "notification", "inventory")
    add_single_use_coupon(client)
    # A request that reserved the coupon and then failed before its order was stored.
    CouponDesk(settings.amqp_url).reserve("ONCE", "never-created", "+4930123456", 450)
    assert order_with_coupon(client).status_code == 422  # held while it may still come
    outlive_the_ttl()

    placed = order_with_coupon(client)
    assert placed.status_code == 201, placed.get_json()
    assert wait_settled(client, placed.get_json()["id"])["status"] == "CONFIRMED"
