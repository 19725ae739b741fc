"""A flash sale's units belong to the inventory, on SQLite and PostgreSQL: the inventory
sets them aside when the sale is created, ordinary orders can only take what is left, a
winner's order cannot be rejected for stock, and what the sale did not sell goes back to
the stock when it ends. The gate forgets a sale once it is over."""

from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import update

from inventory_service.models import Allocation, StockItem
from messaging.database import make_engine, make_session_factory
from messaging.outbox import utcnow
from order_service.models import FlashSale
from tests.support.amqp import wait_until
from tests.support.flash_sales import (
    buy,
    create_sale,
    open_sale,
    settings_for,
    start_services,
    wait_decided,
    wait_open,
)
from tests.support.orders import ADMIN, a_product, an_order
from tests.support.pipeline import wait_settled

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(tmp_path, database_url, amqp_url):
    return settings_for(tmp_path, database_url, amqp_url)


def read(url, model, key):
    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as session:
            return session.get(model, key)
    finally:
        engine.dispose()


def end_now(settings, sale_id):
    """The sale's time is up: move its end to now, as the clock would."""
    engine = make_engine(settings.of("order").database_url)
    try:
        with make_session_factory(engine).begin() as session:
            session.execute(
                update(FlashSale).where(FlashSale.id == sale_id).values(ends_at=utcnow())
            )
    finally:
        engine.dispose()


def available(client, sku):
    return client.get(f"/api/products/{sku}").get_json()["available"]


def wait_available(client, sku, expected):
    wait_until(lambda: available(client, sku) == expected, 30, f"{sku} available == {expected}")


def settle_all(client, order_ids):
    return [wait_settled(client, order_id, timeout=60)["status"] for order_id in order_ids]


def test_winners_keep_their_units_while_ordinary_orders_compete(
    settings, make_app, start_in_thread
):
    start_services(start_in_thread, settings)
    client = make_app(settings)
    sale = open_sale(client, quota=4, stock=6)
    wait_available(client, "PHONE", 2)  # the sale holds 4 of the 6 (the read model follows)

    ordinary_order = an_order(("PHONE", 1))
    with ThreadPoolExecutor(32) as pool:
        ordinary = [pool.submit(client.post, "/api/orders", json=ordinary_order) for _ in range(20)]
        purchases = [pool.submit(buy, client, sale["id"], n) for n in range(60)]
    placed = [future.result() for future in ordinary]
    assert [r.status_code for r in placed] == [201] * 20
    admitted = [
        r.get_json()["ticket_id"] for r in (f.result() for f in purchases) if r.status_code == 202
    ]

    winners = [t for t in wait_decided(client, sale["id"], admitted) if t["status"] == "WON"]
    assert len(winners) == 4
    assert settle_all(client, [t["order_id"] for t in winners]) == ["CONFIRMED"] * 4
    outcomes = settle_all(client, [r.get_json()["id"] for r in placed])
    assert outcomes.count("CONFIRMED") == 2  # only what the sale did not hold
    assert outcomes.count("REJECTED") == 18

    wait_available(client, "PHONE", 0)
    assert read(settings.of("inventory").database_url, StockItem, "PHONE").available == 0
    held = read(settings.of("inventory").database_url, Allocation, sale["id"])
    assert (held.units, held.taken, held.status) == (4, 4, "CLOSED")  # sold out: closed
    after = client.get(f"/api/flash-sales/{sale['id']}").get_json()
    assert (after["sold"], after["remaining"], after["status"]) == (4, 0, "sold_out")
    assert after["allocation"] == "released"


def test_the_admin_call_names_the_stock_when_the_catalog_shows_too_little(settings, make_app):
    client = make_app(settings)
    client.post("/api/products", json=a_product("PHONE", stock=3), headers=ADMIN)
    refused = client.post(
        "/api/flash-sales", json={"sku": "PHONE", "price_cents": 1, "quota": 4}, headers=ADMIN
    )
    assert refused.status_code == 422
    assert refused.get_json()["errors"] == [
        {"field": "quota", "message": "only 3 of PHONE are in stock"}
    ]


def test_a_sale_larger_than_the_stock_the_inventory_finds_opens_with_what_it_could_hold(
    settings, make_app, start_in_thread
):
    start_services(start_in_thread, settings, "order", "coupon", "notification")
    client = make_app(settings)
    client.post("/api/products", json=a_product("PHONE", stock=10), headers=ADMIN)
    # An order the inventory has not seen yet: the catalog still shows 10.
    early = client.post("/api/orders", json=an_order(("PHONE", 7))).get_json()
    sale = create_sale(client, "PHONE", quota=5)
    assert (sale["status"], sale["allocation"]) == ("upcoming", "pending")
    too_soon = buy(client, sale["id"], 1)
    assert too_soon.status_code == 409 and too_soon.headers["Retry-After"] == "1"
    assert "set its units aside" in too_soon.get_json()["detail"]

    start_services(start_in_thread, settings, "inventory")
    opened = wait_open(client, sale["id"])
    assert (opened["quota"], opened["requested_quota"], opened["remaining"]) == (3, 5, 3)
    assert opened["note"] == "the inventory could set aside 3 of the 5 units asked for"
    assert wait_settled(client, early["id"])["status"] == "CONFIRMED"
    wait_available(client, "PHONE", 0)

    # The gate's picture of a sale is up to a second old: the first buyer may hear 409 and
    # Retry-After: 1 once more, as a browser would, and then gets in.
    first = wait_until(
        lambda: (r := buy(client, sale["id"], 0)).status_code == 202 and r, 10, "the gate to open"
    )
    responses = [buy(client, sale["id"], n) for n in range(1, 10)]
    admitted = [first.get_json()["ticket_id"]]
    admitted += [r.get_json()["ticket_id"] for r in responses if r.status_code == 202]
    winners = [t for t in wait_decided(client, sale["id"], admitted) if t["status"] == "WON"]
    assert len(winners) == 3
    assert settle_all(client, [t["order_id"] for t in winners]) == ["CONFIRMED"] * 3
    assert read(settings.of("inventory").database_url, StockItem, "PHONE").available == 0


def test_a_sale_that_ends_with_units_unsold_gives_them_back(settings, make_app, start_in_thread):
    start_services(start_in_thread, settings)
    client = make_app(settings)
    sale = open_sale(client, quota=5, stock=10)
    wait_available(client, "PHONE", 5)
    admitted = [buy(client, sale["id"], n).get_json()["ticket_id"] for n in range(2)]
    winners = wait_decided(client, sale["id"], admitted)
    assert [t["status"] for t in winners] == ["WON", "WON"]

    end_now(settings, sale["id"])
    wait_available(client, "PHONE", 8)  # 10, less the 2 the sale sold
    assert settle_all(client, [t["order_id"] for t in winners]) == ["CONFIRMED"] * 2
    held = read(settings.of("inventory").database_url, Allocation, sale["id"])
    assert (held.units, held.taken, held.status) == (2, 2, "CLOSED")
    ended = client.get(f"/api/flash-sales/{sale['id']}").get_json()
    assert (ended["status"], ended["sold"], ended["allocation"]) == ("ended", 2, "released")
    wait_until(lambda: buy(client, sale["id"], 99).status_code == 410, 10, "410 from the gate")

    # Ordinary orders can have the returned units, and no more.
    order = client.post("/api/orders", json=an_order(("PHONE", 8))).get_json()
    assert wait_settled(client, order["id"])["status"] == "CONFIRMED"
    wait_available(client, "PHONE", 0)


def test_the_gate_forgets_sales_that_are_over(settings, make_app, start_in_thread):
    start_services(start_in_thread, settings)
    client = make_app(settings)
    gate = client.application.extensions["shop"].flash_sales
    client.post("/api/products", json=a_product("PHONE", stock=1000), headers=ADMIN)
    sales = [create_sale(client, "PHONE", quota=5)["id"] for _ in range(12)]
    for sale_id in sales:
        wait_open(client, sale_id)
        assert buy(client, sale_id, 1).status_code == 202
    grown = gate.memory()
    assert (grown["sales"], grown["holders"]) == (12, 12)
    # Idle, but running: the snapshots go, each sale's customers stay (the duplicate guard).
    gate.forget_after = 0.5  # instead of 30 s
    wait_until(lambda: gate.memory()["sales"] == 0, 30, "the idle snapshots to be dropped")
    assert gate.memory()["holders"] == 12
    assert buy(client, sales[0], 1).status_code == 409

    for sale_id in sales:
        end_now(settings, sale_id)

    def forgotten():
        memory = gate.memory()
        return memory if memory == {"sales": 0, "holders": 0, "sold_out": 0, "unknown": 0} else None

    wait_until(forgotten, 30, f"the gate to forget the ended sales (it holds {gate.memory()})")
    wait_available(client, "PHONE", 1000 - 12)  # each sale sold one unit, the rest came back
    assert client.get(f"/api/flash-sales/{sales[0]}").get_json()["status"] == "ended"
