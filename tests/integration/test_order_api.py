"""The order and product endpoints of CONTRACT.md, on SQLite and PostgreSQL, against the
real broker: every accepted request leaves exactly its events in the queue; every rejected
one leaves no row and no event."""

import json

import pytest

from tests.support.amqp import declare, queue_depth, take_all
from tests.support.orders import (
    ADMIN,
    a_product,
    an_order,
    client_for,
    drain_outbox,
    order_settings,
    outbox_rows,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def shop(database_url, amqp_url):
    settings = order_settings(database_url, amqp_url)
    declare(amqp_url)
    client = client_for(settings)
    response = client.post("/api/products", json=a_product("TEA-1", stock=10), headers=ADMIN)
    assert response.status_code == 201, response.get_json()
    client.post("/api/products", json=a_product("MUG-2", stock=3, price_cents=1200), headers=ADMIN)
    drain_outbox(settings)
    take_all(amqp_url, "inventory.orders", expected=2)  # the two product.created
    return settings, client


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.content_type == "application/problem+json"
    body = response.get_json()
    assert body["status"] == status
    assert body["title"] and body["detail"] and body["type"]
    return body


def assert_nothing_written_or_published(settings, amqp_url, rows_before: int) -> None:
    assert outbox_rows(settings) == rows_before, "a rejected request wrote an event"
    assert drain_outbox(settings) == 0
    assert queue_depth(amqp_url, "inventory.orders") == 0


def test_an_order_is_stored_and_its_event_published(shop, amqp_url):
    settings, client = shop
    response = client.post("/api/orders", json=an_order(("TEA-1", 2), ("MUG-2", 1)))

    assert response.status_code == 201
    order = response.get_json()
    assert response.headers["Location"] == f"/api/orders/{order['id']}"
    assert order["status"] == "PENDING"
    assert order["customer"] == {"name": "Ann Lee", "phone": "+4930123456"}
    assert [(i["sku"], i["quantity"], i["unit_price_cents"]) for i in order["items"]] == [
        ("TEA-1", 2, 450),
        ("MUG-2", 1, 1200),
    ]
    assert order["subtotal_cents"] == order["total_cents"] == 2100
    assert [entry["event"] for entry in order["timeline"]] == ["order.created"]
    assert (
        client.get(
            order["Location"] if "Location" in order else f"/api/orders/{order['id']}"
        ).get_json()
        == order
    )

    assert drain_outbox(settings) == 1
    (event,) = take_all(amqp_url, "inventory.orders", expected=1)
    assert event.properties.type == "order.created"
    assert event.properties.correlation_id == order["id"]
    assert json.loads(event.body)["order_id"] == order["id"]


def test_products_are_listed_and_read(shop):
    _, client = shop
    products = client.get("/api/products").get_json()
    assert {p["sku"]: p["available"] for p in products} == {"TEA-1": 10, "MUG-2": 3}
    assert client.get("/api/products/MUG-2").get_json() == {
        "sku": "MUG-2",
        "name": "Product MUG-2",
        "price_cents": 1200,
        "available": 3,
    }
    assert_problem(client.get("/api/products/NOPE"), 404)
    assert_problem(client.get("/api/orders/does-not-exist"), 404)


def test_setting_stock_publishes_product_stock_set(shop, amqp_url):
    settings, client = shop
    response = client.put("/api/products/TEA-1/stock", json={"stock": 42}, headers=ADMIN)
    assert response.status_code == 202
    drain_outbox(settings)
    (event,) = take_all(amqp_url, "inventory.orders", expected=1)
    assert event.properties.type == "product.stock_set"
    assert json.loads(event.body) == {"sku": "TEA-1", "stock": 42}


BAD_ORDERS = [
    # (why, body, field that must be named)
    ("unknown sku", an_order(("NOPE", 1)), "items[0].sku"),
    ("quantity 0", an_order(("TEA-1", 0)), "items[0].quantity"),
    ("quantity 101", an_order(("TEA-1", 101)), "items[0].quantity"),
    (
        "quantity as text",
        {**an_order(), "items": [{"sku": "TEA-1", "quantity": "2"}]},
        "items[0].quantity",
    ),
    ("empty items", an_order(), "items"),
    ("no items", {"customer": {"name": "Ann", "phone": "+4930123456"}}, "items"),
    ("bad phone", an_order(("TEA-1", 1), phone="call me"), "customer.phone"),
    ("short phone", an_order(("TEA-1", 1), phone="12345"), "customer.phone"),
    ("blank name", an_order(("TEA-1", 1), name="   "), "customer.name"),
    ("no customer", {"items": [{"sku": "TEA-1", "quantity": 1}]}, "customer"),
    ("unknown field", {**an_order(("TEA-1", 1)), "gift": True}, "gift"),
    ("same sku twice", an_order(("TEA-1", 1), ("TEA-1", 2)), "items[1].sku"),
    ("body is a list", [1, 2], "body"),
]


@pytest.mark.parametrize(("why", "body", "field"), BAD_ORDERS, ids=[b[0] for b in BAD_ORDERS])
def test_an_invalid_order_gets_422_naming_the_field_and_changes_nothing(
    shop, amqp_url, why, body, field
):
    settings, client = shop
    rows_before = outbox_rows(settings)
    problem = assert_problem(client.post("/api/orders", json=body), 422)
    assert field in [error["field"] for error in problem["errors"]], problem
    assert all(error["message"] for error in problem["errors"])
    assert_nothing_written_or_published(settings, amqp_url, rows_before)


def test_malformed_json_is_400_and_not_json_is_415(shop, amqp_url):
    settings, client = shop
    rows_before = outbox_rows(settings)
    assert_problem(
        client.post("/api/orders", data='{"customer": ', content_type="application/json"), 400
    )
    assert_problem(client.post("/api/orders", data="name=Ann", content_type="text/plain"), 415)
    assert_problem(client.post("/api/orders", data="{}"), 415)  # no content type at all
    assert_nothing_written_or_published(settings, amqp_url, rows_before)


def test_a_body_over_64_kib_is_413(shop, amqp_url):
    settings, client = shop
    rows_before = outbox_rows(settings)
    huge = {**an_order(("TEA-1", 1)), "customer": {"name": "x" * 70_000, "phone": "+4930123456"}}
    assert_problem(client.post("/api/orders", json=huge), 413)
    assert_nothing_written_or_published(settings, amqp_url, rows_before)


def test_the_same_idempotency_key_gives_the_same_order_once(shop, amqp_url):
    settings, client = shop
    headers = {"Idempotency-Key": "checkout-123"}
    first = client.post("/api/orders", json=an_order(("TEA-1", 1)), headers=headers)
    again = client.post("/api/orders", json=an_order(("TEA-1", 1)), headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.get_json()["id"] == first.get_json()["id"]
    assert again.headers["Location"] == first.headers["Location"]

    rows_before = outbox_rows(settings)
    other = client.post("/api/orders", json=an_order(("TEA-1", 2)), headers=headers)
    assert_problem(other, 409)
    assert outbox_rows(settings) == rows_before

    assert drain_outbox(settings) == 1
    assert len(take_all(amqp_url, "inventory.orders", expected=1)) == 1


def test_a_blank_idempotency_key_is_400(shop):
    _, client = shop
    assert_problem(
        client.post("/api/orders", json=an_order(("TEA-1", 1)), headers={"Idempotency-Key": " "}),
        400,
    )


BAD_PRODUCTS = [
    ("missing name", {"sku": "X-1", "price_cents": 100, "stock": 1}, "name"),
    ("negative price", a_product("X-1", price_cents=-1), "price_cents"),
    ("negative stock", a_product("X-1", stock=-5), "stock"),
    ("sku with spaces", a_product("has space"), "sku"),
    ("price as float", {**a_product("X-1"), "price_cents": 1.5}, "price_cents"),
]


@pytest.mark.parametrize(("why", "body", "field"), BAD_PRODUCTS, ids=[b[0] for b in BAD_PRODUCTS])
def test_an_invalid_product_gets_422_and_changes_nothing(shop, amqp_url, why, body, field):
    settings, client = shop
    rows_before = outbox_rows(settings)
    problem = assert_problem(client.post("/api/products", json=body, headers=ADMIN), 422)
    assert field in [error["field"] for error in problem["errors"]]
    assert_nothing_written_or_published(settings, amqp_url, rows_before)


def test_product_admin_errors(shop, amqp_url):
    settings, client = shop
    rows_before = outbox_rows(settings)
    new = a_product("NEW-1")
    assert_problem(client.post("/api/products", json=new), 401)
    assert_problem(
        client.post("/api/products", json=new, headers={"Authorization": "Bearer wrong"}), 403
    )
    assert_problem(client.post("/api/products", json=a_product("TEA-1"), headers=ADMIN), 409)
    assert_problem(client.put("/api/products/NOPE/stock", json={"stock": 1}, headers=ADMIN), 404)
    assert_problem(client.put("/api/products/TEA-1/stock", json={"stock": -1}, headers=ADMIN), 422)
    assert_problem(client.put("/api/products/TEA-1/stock", json={"stock": 1}), 401)
    assert client.get("/api/products/NEW-1").status_code == 404
    assert_nothing_written_or_published(settings, amqp_url, rows_before)


def test_health_and_readiness(shop):
    _, client = shop
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200


def test_readiness_names_the_broker_when_it_is_down(database_url):
    settings = order_settings(database_url, "amqp://guest:guest@127.0.0.1:1/%2F")
    problem = assert_problem(client_for(settings).get("/readyz"), 503)
    assert "broker" in problem["detail"]


def test_an_order_with_a_coupon_and_no_broker_gets_503_and_nothing_is_stored(shop, amqp_url):
    settings, _ = shop
    no_broker = client_for(settings.with_changes(amqp_url="amqp://guest:guest@127.0.0.1:9/%2F"))
    rows_before = outbox_rows(settings)
    response = no_broker.post("/api/orders", json={**an_order(("TEA-1", 1)), "coupon_code": "X"})
    body = assert_problem(response, 503)
    assert "coupon" in body["detail"].lower()
    assert_nothing_written_or_published(settings, amqp_url, rows_before)


def test_a_database_that_does_not_answer_gives_503_with_retry_after(amqp_url):
    gone = order_settings_without_migrations(amqp_url)
    client = client_for(gone)
    for response in (
        client.get("/api/products"),
        client.post("/api/orders", json=an_order(("TEA-1", 1))),
    ):
        body = assert_problem(response, 503)
        assert response.headers["Retry-After"] == "2"
        assert "database" in body["detail"] and "psycopg" not in body["detail"]


def order_settings_without_migrations(amqp_url):
    from shop.catalog import CATALOG
    from tests.support.orders import ADMIN_TOKEN

    return (
        CATALOG.default_settings()
        .with_changes(amqp_url=amqp_url, admin_token=ADMIN_TOKEN)
        .with_service("order", database_url="postgresql+psycopg://postgres@127.0.0.1:9/gone")
    )
