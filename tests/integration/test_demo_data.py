"""The first five minutes: `shop up` (what `make run` runs) on an empty database loads the
demo catalog through the shop's own API, so every service hears of it (the inventory sets
the flash sale's units aside, the coupon service holds WELCOME); a shop with products is
left alone; SHOP_DEMO_DATA=0 starts empty."""

import re

import pytest
import requests

from shop import demo
from tests.support.amqp import wait_until
from tests.support.running_shop import running_shop

pytestmark = pytest.mark.integration

LOADED = re.compile(
    r"shop: loaded the demo catalog: 4 products, coupon WELCOME, a flash sale opening at "
    r"\d\d:\d\d \(SHOP_DEMO_DATA=0 to start empty\)"
)


def get(shop, path):
    answer = requests.get(shop.base + path, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def available(shop, sku) -> int:
    return get(shop, f"/api/products/{sku}")["available"]


def test_an_empty_shop_gets_the_demo_catalog_once(tmp_path, amqp_url):
    with running_shop(tmp_path, amqp_url, SHOP_DEMO_DATA="1") as shop:
        wait_until(lambda: "demo catalog" in shop.log_text(), timeout=90, what="the demo line")
        assert LOADED.search(shop.log_text()), shop.log_text()[-3000:]

        skus = {product["sku"] for product in get(shop, "/api/products")}
        assert skus == {product["sku"] for product in demo.PRODUCTS}
        (sale,) = get(shop, "/api/flash-sales")
        assert (sale["sku"], sale["status"], sale["quota"]) == ("MUG-1", "upcoming", 5)
        # The inventory heard of it as of any sale: it holds the units, and the catalog's
        # stock of the mug shows what is left for ordinary orders.
        wait_until(
            lambda: get(shop, f"/api/flash-sales/{sale['id']}")["allocation"] == "held",
            what="the inventory to set the sale's units aside",
        )
        wait_until(lambda: available(shop, "MUG-1") == 12 - 5, what="the mug's stock to follow")
        assert available(shop, "SENCHA-1") == 40
        quote = get(shop, "/api/coupons/WELCOME?subtotal_cents=2000")
        assert quote == {"valid": True, "discount_cents": 200}

    # The same var/ again: the shop has products now, so nothing is added.
    (tmp_path / "shop-up.log").rename(tmp_path / "first-run.log")
    with running_shop(tmp_path, amqp_url, SHOP_DEMO_DATA="1") as shop:
        wait_until(lambda: "demo catalog" in shop.log_text(), timeout=90, what="the demo line")
        assert "the catalog has products already" in shop.log_text()
        assert len(get(shop, "/api/products")) == len(demo.PRODUCTS)
        assert len(get(shop, "/api/flash-sales")) == 1


def test_shop_demo_data_0_starts_empty(tmp_path, amqp_url):
    with running_shop(tmp_path, amqp_url, SHOP_DEMO_DATA="0") as shop:
        assert "shop: no demo catalog (SHOP_DEMO_DATA=0)" in shop.log_text()
        # By the time the coupon service answers over RPC, a loader would have made the
        # products (they need no RPC) and tried the coupon.
        wait_until(
            lambda: requests.get(shop.base + "/api/coupons/WELCOME?subtotal_cents=1").ok,
            what="the coupon service to answer",
        )
        assert get(shop, "/api/products") == []
        assert get(shop, "/api/flash-sales") == []
        assert get(shop, "/api/coupons/WELCOME?subtotal_cents=2000")["valid"] is False
        assert "loaded the demo catalog" not in shop.log_text()
