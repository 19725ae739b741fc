"""The order service's rules on a SQLite file, no broker: placing an order (with a fake
coupon service), the saga's transitions, and the read model's stock versions and timeline.
What each writes to its outbox is what the relay would publish."""

import json

import pytest
from sqlalchemy import select

from messaging.database import make_engine, make_session_factory
from messaging.envelope import Envelope
from order_service.commands import OrderIn
from order_service.consumers import read_model, saga
from order_service.errors import InvalidOrder
from order_service.models import Base, Order, OrderOutbox, Product
from order_service.use_cases import orders
from tests.support.fakes import FakeCoupons


@pytest.fixture
def sessions(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'orders.db'}")
    Base.metadata.create_all(engine)
    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        session.add(Product(sku="TEA-1", name="Green tea", price_cents=450, available=10))
    yield sessions
    engine.dispose()


def place(sessions, *items, coupon=None, coupons=None):
    body = {"customer": {"name": "Ann", "phone": "+4930123456"}, "items": list(items)}
    if coupon:
        body["coupon_code"] = coupon
    return orders.place_order(sessions, OrderIn.model_validate(body), coupons=coupons).order


def outbox(sessions, event_type):
    with sessions() as session:
        rows = session.scalars(select(OrderOutbox).where(OrderOutbox.event_type == event_type))
        return [json.loads(row.payload) for row in rows]


def answer(sessions, event_type, **body):
    envelope = Envelope.new(event_type, body, correlation_id="c", app_id="inventory_service")
    with sessions.begin() as session:
        saga.ROUTES(session, envelope)


def status(sessions, order_id):
    with sessions() as session:
        return session.get(Order, order_id).status


def test_an_order_is_priced_and_announced_with_its_coupon(sessions):
    coupons = FakeCoupons({"LAB": 100})
    order = place(sessions, {"sku": "TEA-1", "quantity": 2}, coupon="LAB", coupons=coupons)
    assert (order.subtotal_cents, order.discount_cents, order.total_cents) == (900, 100, 800)
    (created,) = outbox(sessions, "order.created")
    assert created["order_id"] == order.id and created["coupon_code"] == "LAB"
    assert created["items"] == [{"sku": "TEA-1", "quantity": 2, "unit_price_cents": 450}]
    assert coupons.reserved == [("LAB", order.id)]


def test_a_refused_coupon_stores_nothing(sessions):
    with pytest.raises(InvalidOrder) as refused:
        place(sessions, {"sku": "TEA-1", "quantity": 1}, coupon="NOPE", coupons=FakeCoupons({}))
    assert refused.value.errors == [{"field": "coupon_code", "message": "unknown coupon"}]
    assert outbox(sessions, "order.created") == []


def test_the_inventorys_answer_settles_a_pending_order_once(sessions):
    order = place(sessions, {"sku": "TEA-1", "quantity": 1})
    answer(sessions, "inventory.reserved", order_id=order.id, items=[])
    assert status(sessions, order.id) == "CONFIRMED"
    answer(sessions, "inventory.rejected", order_id=order.id, reason="late")  # ignored
    assert status(sessions, order.id) == "CONFIRMED"
    assert len(outbox(sessions, "order.confirmed")) == 1
    assert outbox(sessions, "order.rejected") == []


def test_a_rejection_carries_its_reason_and_an_unknown_order_changes_nothing(sessions):
    order = place(sessions, {"sku": "TEA-1", "quantity": 1})
    answer(sessions, "inventory.rejected", order_id=order.id, reason="not enough TEA-1")
    assert status(sessions, order.id) == "REJECTED"
    (rejected,) = outbox(sessions, "order.rejected")
    assert rejected["reason"] == "not enough TEA-1"
    answer(sessions, "inventory.reserved", order_id="no-such-order", items=[])
    assert len(outbox(sessions, "order.confirmed")) == 0


def test_the_read_model_never_shows_an_older_stock_than_it_has(sessions):
    def stock_changed(available, version):
        envelope = Envelope.new(
            "inventory.stock_changed",
            {"sku": "TEA-1", "available": available, "version": version},
            correlation_id="TEA-1",
            app_id="inventory_service",
        )
        with sessions.begin() as session:
            read_model.ROUTES(session, envelope)
        with sessions() as session:
            return session.get(Product, "TEA-1").available

    assert stock_changed(7, 3) == 7
    assert stock_changed(9, 2) == 7  # version 2 arrives after 3: ignored
    assert stock_changed(5, 4) == 5


def test_other_services_events_become_lines_of_the_orders_timeline(sessions):
    order = place(sessions, {"sku": "TEA-1", "quantity": 1})
    sent = Envelope.new(
        "notification.sms_sent",
        {"order_id": order.id, "event": "order.confirmed", "phone": "+49", "text": "Thanks!"},
        correlation_id=order.id,
        app_id="notification_service",
    )
    with sessions.begin() as session:
        read_model.ROUTES(session, sent)
    with sessions() as session:
        story = [
            (e.event, e.service, e.detail) for e in orders.get_order(session, order.id).timeline
        ]
    assert story[-1] == ("notification.sms_sent", "notification_service", "Thanks!")
