import pytest

from messaging.settings import Settings, SettingsError, redact_url


def test_defaults_are_the_contract_defaults():
    settings = Settings.from_env({})
    assert settings.amqp_url == "amqp://guest:guest@localhost:5672/%2F"
    assert settings.order_database_url == "sqlite:///var/orders.db"
    assert settings.inventory_database_url == "sqlite:///var/inventory.db"
    assert settings.coupon_database_url == "sqlite:///var/coupons.db"
    assert settings.notification_database_url == "sqlite:///var/notifications.db"
    assert (settings.http_host, settings.http_port) == ("127.0.0.1", 8000)
    assert settings.admin_token is None
    assert settings.flash_sale_queue_limit == 1000
    assert settings.sms_gateway_url is None


def test_every_variable_is_read():
    settings = Settings.from_env(
        {
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
    )
    assert settings.coupon_reservation_ttl == 2.5
    assert (settings.outbox_retention_days, settings.inbox_retention_days) == (1.0, 0.5)
    assert settings.rabbitmq_management_url == "http://broker:15672"
    assert settings.amqp_url == "amqp://u:p@broker:5672/shop"
    assert settings.order_database_url == "postgresql+psycopg://db/orders"
    assert settings.http_port == 9000
    assert settings.admin_token == "secret"
    assert settings.flash_sale_queue_limit == 50
    assert settings.sms_gateway_url == "http://sms.local/send"


@pytest.mark.parametrize("value", ["many", "0", "-3", "1.5"])
def test_a_bad_number_is_a_clear_error(value):
    with pytest.raises(SettingsError, match="FLASH_SALE_QUEUE_LIMIT"):
        Settings.from_env({"FLASH_SALE_QUEUE_LIMIT": value})


@pytest.mark.parametrize("value", ["soon", "0", "-1", "inf", "nan"])
def test_a_bad_duration_is_a_clear_error(value):
    with pytest.raises(SettingsError, match="COUPON_RESERVATION_TTL_SECONDS"):
        Settings.from_env({"COUPON_RESERVATION_TTL_SECONDS": value})


def test_retention_and_ttl_defaults():
    settings = Settings.from_env({})
    assert settings.coupon_reservation_ttl == 15 * 60
    assert (settings.outbox_retention_days, settings.inbox_retention_days) == (7.0, 14.0)


def test_settings_are_frozen():
    with pytest.raises(AttributeError):
        Settings().http_port = 1  # type: ignore[misc]


def test_passwords_never_reach_a_log_line():
    assert redact_url("amqp://guest:s3cret@host:5672/%2F") == "amqp://guest:***@host:5672/%2F"
    assert redact_url("sqlite:///var/orders.db") == "sqlite:///var/orders.db"
