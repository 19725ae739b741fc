"""GET /api/flash-sales, what the front page shows, on SQLite and PostgreSQL: the open sales
first, then the upcoming ones by start, and a sale sold out a moment ago (so a shopper who
comes late learns what happened), but never one that has ended."""

from datetime import UTC, datetime, timedelta

import pytest

from order_service.use_cases import flash_sales
from tests.support.amqp import wait_until
from tests.support.flash_sales import (
    buy,
    create_sale,
    open_sale,
    settings_for,
    start_services,
    wait_decided,
)

pytestmark = pytest.mark.integration


def listed(client) -> list[tuple[str, str]]:
    response = client.get("/api/flash-sales")
    assert response.status_code == 200
    return [(sale["id"], sale["status"]) for sale in response.get_json()]


def test_the_list_shows_open_then_upcoming_sales_and_a_sale_just_sold_out_but_none_ended(
    tmp_path, database_url, amqp_url, make_app, start_in_thread
):
    settings = settings_for(tmp_path, database_url, amqp_url)
    start_services(start_in_thread, settings)
    client = make_app(settings)
    last_unit = open_sale(client, quota=1)  # (it makes the product PHONE)
    now = datetime.now(UTC)
    later = create_sale(client, "PHONE", 2, starts_at=(now + timedelta(hours=2)).isoformat())
    soon = create_sale(client, "PHONE", 2, starts_at=(now + timedelta(hours=1)).isoformat())
    ended = {"starts_at": now - timedelta(hours=2), "ends_at": now - timedelta(hours=1)}
    create_sale(client, "PHONE", 2, **{key: at.isoformat() for key, at in ended.items()})
    assert listed(client) == [
        (last_unit["id"], "open"),
        (soon["id"], "upcoming"),
        (later["id"], "upcoming"),
    ]

    (won,) = wait_decided(
        client, last_unit["id"], [buy(client, last_unit["id"], 1).json["ticket_id"]]
    )
    assert won["status"] == "WON"
    wait_until(lambda: (last_unit["id"], "sold_out") in listed(client), what="sold out, listed")
    assert listed(client) == [
        (soon["id"], "upcoming"),
        (later["id"], "upcoming"),
        (last_unit["id"], "sold_out"),
    ]
    # Ten minutes after it sold out, it is no longer news.
    with client.application.extensions["shop"].read_sessions() as session:
        in_11_minutes = flash_sales.current_sales(
            session, datetime.now(UTC) + timedelta(minutes=11)
        )
        assert [sale.id for sale in in_11_minutes] == [soon["id"], later["id"]]
