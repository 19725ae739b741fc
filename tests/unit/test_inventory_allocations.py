"""The inventory's flash-sale allocation rules on an in-memory SQLite database (no broker):
how many units a sale holds, what a winner draws, what comes back when the sale ends."""

import json

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from inventory_service.handlers import ROUTES
from inventory_service.models import Allocation, Base, InventoryOutbox, Reservation, StockItem
from messaging.database import make_engine
from messaging.envelope import Envelope


@pytest.fixture
def session():
    engine = make_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as session, session.begin():
        session.add(StockItem(sku="PHONE", available=6, version=1))
        session.flush()
        yield session


def handle(session, event_type, **body):
    envelope = Envelope.new(event_type, body, correlation_id="c", app_id="test")
    ROUTES(session, envelope)
    session.flush()


def stock(session) -> int:
    return session.get(StockItem, "PHONE", populate_existing=True).available


def published(session, event_type):
    query = select(InventoryOutbox.payload).where(InventoryOutbox.event_type == event_type)
    return [json.loads(payload) for payload in session.scalars(query)]


def win(session, order_id, sale_id="s1"):
    line = [{"sku": "PHONE", "quantity": 1}]
    handle(session, "order.created", order_id=order_id, items=line, flash_sale_id=sale_id)
    return session.get(Reservation, order_id).status


def test_a_sale_holds_its_quota_and_ordinary_orders_take_only_the_rest(session):
    handle(session, "flash_sale.created", sale_id="s1", sku="PHONE", quota=4)
    assert stock(session) == 2
    assert published(session, "inventory.allocated") == [
        {"sale_id": "s1", "sku": "PHONE", "requested": 4, "units": 4}
    ]
    handle(session, "order.created", order_id="o1", items=[{"sku": "PHONE", "quantity": 3}])
    assert session.get(Reservation, "o1").status == "REJECTED"
    assert [win(session, f"w{n}") for n in range(4)] == ["RESERVED"] * 4
    assert stock(session) == 2  # the winners drew from the allocation


def test_a_sale_larger_than_the_stock_holds_what_there_is(session):
    handle(session, "flash_sale.created", sale_id="s1", sku="PHONE", quota=10)
    assert session.get(Allocation, "s1").units == 6
    assert stock(session) == 0
    assert published(session, "inventory.allocated")[0]["units"] == 6


def test_a_second_created_changes_nothing(session):
    handle(session, "flash_sale.created", sale_id="s1", sku="PHONE", quota=2)
    handle(session, "flash_sale.created", sale_id="s1", sku="PHONE", quota=2)
    assert stock(session) == 4
    assert len(published(session, "inventory.allocated")) == 1


def test_the_end_keeps_what_was_sold_and_gives_back_the_rest_once(session):
    handle(session, "flash_sale.created", sale_id="s1", sku="PHONE", quota=5)
    assert win(session, "w1") == "RESERVED"
    handle(session, "flash_sale.ended", sale_id="s1", sku="PHONE", sold=2)  # w2 on its way
    assert stock(session) == 1 + 3
    assert win(session, "w2") == "RESERVED"  # its unit was kept
    assert win(session, "w3") == "REJECTED"  # nothing beyond what the sale sold
    handle(session, "flash_sale.ended", sale_id="s1", sku="PHONE", sold=2)
    assert stock(session) == 4  # a second end returns nothing


def test_an_end_that_overtakes_the_creation_sets_nothing_aside(session):
    handle(session, "flash_sale.ended", sale_id="s1", sku="PHONE", sold=0)
    handle(session, "flash_sale.created", sale_id="s1", sku="PHONE", quota=3)
    assert stock(session) == 6
    assert session.get(Allocation, "s1").status == "CLOSED"


def test_a_sale_from_before_allocations_sells_from_the_stock(session):
    assert win(session, "w1", sale_id="older-sale") == "RESERVED"
    assert stock(session) == 5
