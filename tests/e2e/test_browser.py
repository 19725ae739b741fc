"""The shop in a real browser: order through the form and watch it confirm, see errors
next to their fields, check a coupon, win a flash-sale ticket, watch the dashboard move,
and never run a customer's name as code. Screenshots go to test-artifacts/."""

import sqlite3

import pytest
import requests
from playwright.sync_api import expect

from tests.e2e.conftest import ADMIN_TOKEN
from tests.support.amqp import wait_until

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SLOW = 30_000  # ms: the whole pipeline on a busy 2-core machine


def admin_post(shop, path, body):
    response = requests.post(shop.base + path, json=body, headers=ADMIN, timeout=10)
    assert response.status_code == 201, response.text
    return response.json()


def stock(shop):
    admin_post(
        shop,
        "/api/products",
        {"sku": "TEA-1", "name": "Sencha green tea", "price_cents": 450, "stock": 40},
    )
    admin_post(
        shop,
        "/api/products",
        {"sku": "MUG-2", "name": "Stoneware mug", "price_cents": 1290, "stock": 12},
    )


def order_status(shop, order_id: str) -> str:
    return requests.get(f"{shop.base}/api/orders/{order_id}", timeout=10).json()["status"]


def orders_stored(shop) -> int:
    with sqlite3.connect(shop.workdir / "var" / "orders.db") as db:
        return db.execute("select count(*) from orders").fetchone()[0]


def fill_order(page, name="Ann Lee", phone="+49 30 1234567", tea="2"):
    page.get_by_label("Name").fill(name)
    page.get_by_label("Phone").fill(phone)
    page.locator("#qty-TEA-1").fill(tea)


def test_an_order_placed_through_the_form_is_confirmed_with_its_sms(shop, page):
    stock(shop)
    page.goto(shop.base + "/")
    fill_order(page)
    page.get_by_role("button", name="Place order").click()

    page.wait_for_url("**/orders/*")
    expect(page.locator("#status")).to_have_text("CONFIRMED", timeout=SLOW)
    expect(page.locator("#timeline")).to_contain_text("inventory.reserved", timeout=SLOW)
    expect(page.locator("#timeline")).to_contain_text("is confirmed. Total 9.00", timeout=SLOW)


def test_the_form_works_with_javascript_off(shop, browser):
    stock(shop)
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(shop.base + "/")
    fill_order(page, tea="1")
    page.get_by_role("button", name="Place order").click()
    page.wait_for_url("**/orders/*")
    shown = page.locator("#status").inner_text()  # PENDING, unless the pipeline was quicker
    assert shown in ("PENDING", "CONFIRMED")
    order_id = page.url.rsplit("/", 1)[-1]
    wait_until(lambda: order_status(shop, order_id) == "CONFIRMED", SLOW / 1000, "CONFIRMED")
    expect(page.locator("#status")).to_have_text(shown)  # no JS: the page does not poll
    page.reload()
    expect(page.locator("#status")).to_have_text("CONFIRMED")
    expect(page.locator("#timeline")).to_contain_text("order.created")

    page.goto(shop.base + "/")
    fill_order(page, phone="nope", tea="1")
    page.get_by_role("button", name="Place order").click()
    expect(page.locator("#phone-error")).to_contain_text("7 to 15 digits")
    expect(page.get_by_label("Name")).to_have_value("Ann Lee")  # what was typed stays
    context.close()


def test_a_bad_phone_shows_an_error_next_to_the_phone_field_and_creates_nothing(shop, page):
    stock(shop)
    page.goto(shop.base + "/")
    fill_order(page, phone="call me")
    page.get_by_role("button", name="Place order").click()

    expect(page.locator("#phone-error")).to_have_text(
        "must be a phone number of 7 to 15 digits, optionally starting with +"
    )
    expect(page.get_by_label("Phone")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#name-error")).to_have_text("")
    assert page.url == shop.base + "/"
    assert orders_stored(shop) == 0


def test_a_coupon_shows_its_discount(shop, page):
    stock(shop)
    admin_post(shop, "/api/coupons", {"code": "WELCOME", "amount_off_cents": 200})
    page.goto(shop.base + "/")
    page.locator("#qty-MUG-2").fill("1")
    page.get_by_label("Coupon code").fill("WELCOME")
    expect(page.locator("#coupon-quote")).to_have_text("Coupon takes 2.00 off", timeout=SLOW)
    expect(page.locator("#discount")).to_have_text("2.00")

    page.get_by_label("Coupon code").fill("NOPE")
    expect(page.locator("#coupon-quote")).to_have_text("unknown coupon", timeout=SLOW)


def test_the_flash_sale_page_wins_a_ticket(shop, page):
    stock(shop)
    sale = admin_post(shop, "/api/flash-sales", {"sku": "MUG-2", "price_cents": 99, "quota": 2})
    page.goto(f"{shop.base}/flash-sales/{sale['id']}")
    expect(page.locator("#sale-status")).to_have_text("open", timeout=SLOW)  # units held
    expect(page.locator("#remaining")).to_have_text("2")
    page.get_by_label("Name").fill("Bo")
    page.get_by_label("Phone").fill("+4930777777")
    page.get_by_role("button", name="Buy now").click()

    expect(page.locator("#ticket")).to_contain_text("You won!", timeout=SLOW)
    expect(page.locator("#remaining")).to_have_text("1", timeout=SLOW)
    page.locator("#order-link").click()
    expect(page.locator("#status")).to_have_text("CONFIRMED", timeout=SLOW)


def test_the_dashboard_shows_the_queues_and_a_number_that_changes_after_an_order(shop, page):
    stock(shop)
    page.goto(shop.base + "/dashboard")
    row = page.locator('#queues tr[data-queue="inventory.orders"]')
    expect(row).to_be_visible(timeout=SLOW)
    for queue in ("orders.inventory", "coupons.rpc", "flash-sale.requests"):
        expect(page.locator(f'#queues tr[data-queue="{queue}"]')).to_be_visible()
    expect(page.locator("svg.topology")).to_contain_text("shop.events")
    handled = row.locator("td.handled")
    expect(handled).to_have_text("2", timeout=SLOW)  # the two product.created

    requests.post(
        shop.base + "/api/orders",
        json={
            "customer": {"name": "Cy", "phone": "+4930888888"},
            "items": [{"sku": "TEA-1", "quantity": 1}],
        },
        timeout=10,
    ).raise_for_status()
    expect(handled).to_have_text("3", timeout=SLOW)


def test_a_customer_named_like_a_script_is_shown_as_text(shop, page):
    stock(shop)
    name = "<script>alert(1)</script>"
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    order = requests.post(
        shop.base + "/api/orders",
        json={
            "customer": {"name": name, "phone": "+4930123456"},
            "items": [{"sku": "TEA-1", "quantity": 1}],
        },
        timeout=10,
    ).json()
    page.goto(f"{shop.base}/orders/{order['id']}")
    expect(page.locator("#customer-name")).to_have_text(name)
    expect(page.locator("#status")).to_have_text("CONFIRMED", timeout=SLOW)
    assert dialogs == []


def test_pages_make_no_request_outside_the_shop(shop, page):
    stock(shop)
    outside = []
    page.on("request", lambda r: None if r.url.startswith(shop.base) else outside.append(r.url))
    for path in ("/", "/dashboard", "/api/docs"):
        page.goto(shop.base + path)
        page.wait_for_load_state("networkidle")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Rabbit Shop")
    assert outside == []
