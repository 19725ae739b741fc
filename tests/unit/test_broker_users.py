"""The broker users' permissions follow from the catalog (shop/broker_users.py), and each
process finds its own broker URL: what least privilege relies on, without a broker (the
real broker's verdicts are tests/integration/test_broker_users.py)."""

import re

import pytest

from messaging.settings import SettingsError
from shop import broker_users
from shop.catalog import CATALOG

USERS = {user.role: user for user in broker_users.broker_users(CATALOG.default_settings())}


def allowed(regex: str) -> set[str]:
    """Which of the shop's resource names (and a server-named queue) the regex matches."""
    names = {q.name for q in CATALOG.topology().queues}
    names |= {f"{name}.dead" for name in names}
    names |= {"shop.events", "shop.dead-letter", "amq.default", "amq.gen-Xy1"}
    return {name for name in names if re.fullmatch(regex, name)}


@pytest.mark.parametrize(
    ("role", "configure", "write", "read"),
    [
        (
            "inventory",
            {"inventory.orders"},
            {"inventory.orders", "shop.events"},
            {"inventory.orders", "shop.events"},
        ),
        (
            "coupon",
            {"coupons.orders", "coupons.rpc"},
            {"coupons.orders", "shop.events", "amq.default"},  # RPC replies: default exchange
            {"coupons.orders", "coupons.rpc", "shop.events"},
        ),
        (
            "notification",
            {"notifications.sms"},
            {"notifications.sms", "shop.events"},
            {"notifications.sms", "shop.events"},
        ),
        (
            "order",
            {"orders.inventory", "orders.read-model", "flash-sale.requests", "amq.gen-Xy1"},
            {"orders.inventory", "orders.read-model", "shop.events", "amq.default", "amq.gen-Xy1"},
            {
                "orders.inventory",
                "orders.read-model",
                "flash-sale.requests",
                "shop.events",
                "amq.gen-Xy1",
            },
        ),
    ],
)
def test_each_service_may_touch_its_own_queues_and_what_it_publishes_to(
    role, configure, write, read
):
    user = USERS[role]
    assert user.name == f"shop-{role}"
    assert allowed(user.permissions.configure) == configure
    assert allowed(user.permissions.write) == write
    assert allowed(user.permissions.read) == read
    assert user.url_variable == f"{role.upper()}_AMQP_URL"
    assert user.password_variable == f"SHOP_BROKER_PASSWORD_{role.upper()}"


def test_nobody_may_declare_an_exchange_or_write_dead_letters():
    for user in USERS.values():
        rights = user.permissions
        assert not allowed(rights.configure) & {"shop.events", "shop.dead-letter"}
        assert "shop.dead-letter" not in allowed(rights.write) | allowed(rights.read)
        assert not {name for name in allowed(rights.configure) if name.endswith(".dead")}


def test_the_monitoring_user_is_tagged_and_touches_nothing():
    monitoring = USERS["monitoring"]
    assert monitoring.tags == ("monitoring",)
    for regex in monitoring.permissions.as_json().values():
        assert allowed(regex) == set()
    assert monitoring.url_variable == "MONITORING_AMQP_URL"


def test_a_missing_password_names_every_variable_and_there_is_no_default():
    with pytest.raises(broker_users.UsersError) as raised:
        broker_users.passwords(USERS.values(), {"SHOP_BROKER_PASSWORD_ORDER": "x"})
    assert "SHOP_BROKER_PASSWORD_INVENTORY" in str(raised.value)
    assert "SHOP_BROKER_PASSWORD_ORDER," not in str(raised.value)


def test_each_process_gets_a_url_of_every_node_as_its_own_user():
    environ = {user.password_variable: f"pw-{user.role}" for user in USERS.values()}
    urls = broker_users.url_variables(
        USERS.values(), "amqp://guest:guest@a/shop,amqp://b/shop", environ
    )
    assert urls["INVENTORY_AMQP_URL"] == (
        "amqp://shop-inventory:pw-inventory@a/shop,amqp://shop-inventory:pw-inventory@b/shop"
    )
    settings = CATALOG.settings_from_env({"AMQP_URL": "amqp://guest:guest@a/shop", **urls})
    assert settings.amqp_url == "amqp://guest:guest@a/shop"  # the admin's
    assert settings.of("coupon").amqp_url == urls["COUPON_AMQP_URL"]
    assert settings.monitoring_url == urls["MONITORING_AMQP_URL"]
    assert CATALOG.settings_from_env({}).monitoring_url == CATALOG.settings_from_env({}).amqp_url


def test_a_service_url_on_another_vhost_is_a_clear_error():
    environ = {"AMQP_URL": "amqp://a/shop", "ORDER_AMQP_URL": "amqp://u:secret@a/other"}
    with pytest.raises(SettingsError, match="ORDER_AMQP_URL must name the vhost") as raised:
        CATALOG.settings_from_env(environ)
    assert "secret" not in str(raised.value)


def test_a_queue_the_catalog_does_not_have_cannot_be_sent_to():
    order = CATALOG.get("order")
    lying = type(order)(**{**order.__dict__, "sends_to": ("nowhere.rpc",)})
    with pytest.raises(KeyError, match="nowhere.rpc"):
        broker_users.service_user(lying, CATALOG.topology())
