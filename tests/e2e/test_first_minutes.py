"""The first five minutes in a real browser: the front page shows a flash sale with a
countdown that ticks and a link to it; the admin page adds a product, shows a 422 next to
its field and says when the token is not valid; the dashboard says why unacked is missing
and links each queue to its lab. Screenshots of each page go to test-artifacts/."""

import re
from datetime import UTC, datetime, timedelta

import pytest
import requests
from playwright.sync_api import expect

from tests.e2e.conftest import ADMIN_TOKEN, ARTIFACTS
from tests.e2e.test_browser import SLOW, admin_post, stock
from tests.support.running_shop import free_port, running_shop

pytestmark = pytest.mark.integration


def snapshot(page, name):
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_the_front_page_shows_a_sale_with_a_ticking_countdown_and_its_link(shop, page, browser):
    stock(shop)
    starts_at = datetime.now(UTC) + timedelta(seconds=90)
    upcoming = admin_post(
        shop,
        "/api/flash-sales",
        {"sku": "MUG-2", "price_cents": 99, "quota": 3, "starts_at": starts_at.isoformat()},
    )
    page.goto(shop.base + "/")
    card = page.locator(f'.sale-card[data-sale-id="{upcoming["id"]}"]')
    expect(card.locator(".sale-name")).to_have_text("Stoneware mug")
    expect(card.locator(".sale-status")).to_have_text("upcoming")
    countdown = card.locator(".sale-countdown")
    expect(countdown).to_have_text(re.compile(r"^Starts in [01]:[0-5]\d$"))
    shown = countdown.text_content()
    expect(countdown).not_to_have_text(shown, timeout=5000)  # it ticks
    expect(card.locator(".sale-link")).to_have_attribute("href", f"/flash-sales/{upcoming['id']}")

    # Without JavaScript the server's card says when it starts, and its link works.
    no_script = browser.new_context(java_script_enabled=False).new_page()
    no_script.goto(shop.base + "/")
    static_card = no_script.locator(f'.sale-card[data-sale-id="{upcoming["id"]}"]')
    expect(static_card.locator(".sale-countdown")).to_have_text(
        f"Starts at {starts_at.strftime('%H:%M')} UTC"
    )
    static_card.get_by_role("link", name="Go to the sale").click()
    no_script.wait_for_url(f"**/flash-sales/{upcoming['id']}")
    no_script.context.close()

    # A sale made after the page loaded appears by itself, and opens once its units are held.
    running = admin_post(shop, "/api/flash-sales", {"sku": "TEA-1", "price_cents": 199, "quota": 4})
    card = page.locator(f'.sale-card[data-sale-id="{running["id"]}"]')
    expect(card.locator(".sale-status")).to_have_text("on now", timeout=SLOW)
    expect(card.locator(".sale-name")).to_have_text("Sencha green tea")
    expect(card.locator(".sale-countdown")).to_have_text("Until sold out")
    expect(page.locator(".sale-card").first).to_have_attribute("data-sale-id", running["id"])
    snapshot(page, "front-page-flash-sales")

    card.get_by_role("link", name="Go to the sale").click()
    page.wait_for_url(f"**/flash-sales/{running['id']}")
    expect(page.locator("#sale-status")).to_have_text("open")


def field_error(page, form, name):
    return page.locator(f"#{form}-{name}-error")


def test_the_admin_page_adds_a_product_shows_a_422_by_its_field_and_refuses_a_bad_token(shop, page):
    page.goto(shop.base + "/")
    page.get_by_role("navigation").get_by_role("link", name="Admin").click()
    page.wait_for_url("**/admin")

    page.get_by_label("Admin token").fill("not-the-token")
    page.get_by_role("button", name="Use this token").click()
    product = page.locator("#product-form")
    page.locator("#product-sku").fill("TEA-9")
    page.locator("#product-name").fill("Hojicha")
    page.locator("#product-price_cents").fill("-5")
    page.locator("#product-stock").fill("10")
    product.get_by_role("button", name="Add the product").click()
    token_error = page.locator("#token-error")
    expect(token_error).to_have_text("The token is not valid (403): enter it again.")
    expect(product.locator(".form-result")).to_have_text(
        "The token is not valid: nothing was changed."
    )
    expect(page.get_by_label("Admin token")).to_be_visible()  # asked again
    snapshot(page, "admin-page-bad-token")

    page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Use this token").click()
    expect(page.locator("#token-set")).to_be_visible()
    product.get_by_role("button", name="Add the product").click()
    expect(field_error(page, "product", "price_cents")).to_have_text(
        "input should be greater than or equal to 0"
    )
    expect(page.locator("#product-price_cents")).to_have_attribute("aria-invalid", "true")
    expect(field_error(page, "product", "sku")).to_have_text("")
    snapshot(page, "admin-page-422")
    assert requests.get(shop.base + "/api/products/TEA-9", timeout=10).status_code == 404

    page.locator("#product-price_cents").fill("450")
    product.get_by_role("button", name="Add the product").click()
    expect(product.locator(".form-result")).to_have_text("Added TEA-9: Hojicha, 4.50, 10 in stock.")
    expect(page.locator('#admin-products tr[data-sku="TEA-9"] td.available')).to_have_text("10")

    # The token stays for the session (a reload keeps it), never in a cookie or the URL.
    page.reload()
    expect(page.locator("#token-set")).to_be_visible()
    assert page.evaluate("document.cookie") == "" and ADMIN_TOKEN not in page.url

    page.locator("#stock-sku").fill("TEA-9")
    page.locator("#stock-stock").fill("25")
    page.get_by_role("button", name="Set the stock").click()
    expect(page.locator('#admin-products tr[data-sku="TEA-9"] td.available')).to_have_text(
        "25", timeout=SLOW
    )  # the inventory set it, and the catalog heard

    page.locator("#sale-sku").fill("TEA-9")
    page.locator("#sale-price_cents").fill("99")
    page.locator("#sale-quota").fill("26")
    page.get_by_role("button", name="Start the sale").click()
    expect(field_error(page, "sale", "quota")).to_have_text("only 25 of TEA-9 are in stock")
    page.locator("#sale-quota").fill("5")
    page.get_by_role("button", name="Start the sale").click()
    expect(page.locator("#sale-form .form-result")).to_contain_text("Created a flash sale of 5")

    page.locator("#coupon-code").fill("SPRING")
    page.locator("#coupon-amount_off_cents").fill("300")
    page.get_by_role("button", name="Create the coupon").click()
    expect(page.locator("#coupon-form .form-result")).to_have_text(
        "Created the coupon SPRING.", timeout=SLOW
    )
    snapshot(page, "admin-page-done")
    page.locator("#sale-form .form-result a").click()
    expect(page.locator("#sale-status")).to_have_text("open", timeout=SLOW)


@pytest.fixture
def shop_without_management(tmp_path, amqp_url):
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with running_shop(
        tmp_path, amqp_url, SHOP_ADMIN_TOKEN=ADMIN_TOKEN, RABBITMQ_MANAGEMENT_URL=nowhere
    ) as running:
        yield running


def test_the_dashboard_says_why_unacked_is_missing_and_links_each_queue_to_its_lab(
    shop_without_management, page
):
    page.goto(shop_without_management.base + "/dashboard")
    notes = page.locator("#pipeline-notes")
    expect(notes).to_contain_text("unacked needs the management plugin", timeout=SLOW)
    expect(notes).to_contain_text("rabbitmq-plugins enable rabbitmq_management")
    row = page.locator('#queues tr[data-queue="inventory.orders"]')
    expect(row.locator("td.unacked")).to_have_text("–")
    expect(row.get_by_role("link", name="lab: inbox")).to_have_attribute("href", "/labs#inbox")
    rpc = page.locator('#queues tr[data-queue="coupons.rpc"] a.lab-link')
    expect(rpc).to_have_attribute("href", "/labs#rpc")
    dead = page.locator('#dead tr[data-queue="flash-sale.requests.dead"] a.lab-link')
    expect(dead).to_have_attribute("href", "/labs#poison")
    snapshot(page, "dashboard-without-management")
    page.get_by_role("link", name="lab: inbox").first.click()
    expect(page).to_have_url(shop_without_management.base + "/labs#inbox")
    card = page.locator("li.lab#inbox")
    expect(card).to_contain_text("shop lab run inbox --broken")
    expect(card).to_contain_text("Not run here yet.")
    expect(page.locator("ol.labs > li.lab")).to_have_count(17)
    snapshot(page, "labs")
