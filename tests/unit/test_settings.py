import pytest

from coupon_service.settings import CouponSettings
from messaging.settings import SettingsError, redact_url
from notification_service.settings import NotificationSettings
from order_service.settings import OrderSettings
from shop.catalog import CATALOG


def test_defaults_are_the_contract_defaults():
    settings = CATALOG.settings_from_env({})
    assert settings.amqp_url == "amqp://guest:guest@localhost:5672/%2F"
    assert settings.of("order").database_url == "sqlite:///var/orders.db"
    assert settings.of("inventory").database_url == "sqlite:///var/inventory.db"
    assert settings.of("coupon").database_url == "sqlite:///var/coupons.db"
    assert settings.of("notification").database_url == "sqlite:///var/notifications.db"
    order = settings.of("order")
    assert (order.http_host, order.http_port) == ("127.0.0.1", 8000)
    assert order.admin_token is None
    assert order.flash_sale_queue_limit == 1000
    assert settings.of("notification").sms_gateway_url is None


def test_every_variable_is_read():
    environ = {
        "AMQP_URL": "amqp://u:p@broker:5672/shop",
        "ORDER_DATABASE_URL": "postgresql+psycopg://db/orders",
        "SHOP_HTTP_PORT": "9000",
        "SHOP_ADMIN_TOKEN": "secret",
        "FLASH_SALE_QUEUE_LIMIT": "50",
        "SMS_GATEWAY_URL": "http://sms.local/send",
        "RABBITMQ_MANAGEMENT_URL": "http://broker:15672",
        "COUPON_RESERVATION_TTL_SECONDS": "2.5",
        "OUTBOX_RETENTION_DAYS": "1",
        "INBOX_RETENTION_DAYS": "0.5",
    }
    settings = CATALOG.settings_from_env(environ)
    assert settings.of("coupon").reservation_ttl == 2.5
    for service in CATALOG:  # the shared variables reach every service
        each = settings.of(service.name)
        assert (each.outbox_retention_days, each.inbox_retention_days) == (1.0, 0.5)
        assert each.rabbitmq_management_url == "http://broker:15672"
        assert each.amqp_url == "amqp://u:p@broker:5672/shop"
    order = settings.of("order")
    assert order.database_url == "postgresql+psycopg://db/orders"
    assert order.http_port == 9000
    assert order.admin_token == "secret"
    assert order.flash_sale_queue_limit == 50
    assert settings.of("notification").sms_gateway_url == "http://sms.local/send"


@pytest.mark.parametrize("value", ["many", "0", "-3", "1.5"])
def test_a_bad_number_is_a_clear_error(value):
    with pytest.raises(SettingsError, match="FLASH_SALE_QUEUE_LIMIT"):
        OrderSettings.from_env({"FLASH_SALE_QUEUE_LIMIT": value})


@pytest.mark.parametrize("value", ["soon", "0", "-1", "inf", "nan"])
def test_a_bad_duration_is_a_clear_error(value):
    with pytest.raises(SettingsError, match="COUPON_RESERVATION_TTL_SECONDS"):
        CouponSettings.from_env({"COUPON_RESERVATION_TTL_SECONDS": value})


def test_retention_and_ttl_defaults():
    assert CouponSettings.from_env({}).reservation_ttl == 15 * 60
    settings = NotificationSettings.from_env({})
    assert (settings.outbox_retention_days, settings.inbox_retention_days) == (7.0, 14.0)


def test_settings_are_frozen():
    with pytest.raises(AttributeError):
        OrderSettings().http_port = 1  # type: ignore[misc]


def test_a_change_reaches_every_service_that_has_the_setting_and_no_other():
    settings = CATALOG.default_settings().with_changes(amqp_url="amqp://x", reservation_ttl=3.0)
    assert {settings.of(name).amqp_url for name in CATALOG.names} == {"amqp://x"}
    assert settings.of("coupon").reservation_ttl == 3.0
    with pytest.raises(TypeError, match="no service has the setting colour"):
        settings.with_changes(colour="red")


def test_passwords_never_reach_a_log_line():
    assert redact_url("amqp://guest:s3cret@host:5672/%2F") == "amqp://guest:***@host:5672/%2F"
    assert redact_url("sqlite:///var/orders.db") == "sqlite:///var/orders.db"
