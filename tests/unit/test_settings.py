import pytest

from coupon_service.settings import CouponSettings
from messaging.settings import SettingsError, amqp_urls, redact_url
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


CLUSTER = "amqp://u:p@rabbit-1:5672/shop,amqp://u:p@rabbit-2:5672/shop,amqp://u:p@rabbit-3/shop"


def test_amqp_url_may_list_the_nodes_of_a_cluster():
    settings = OrderSettings.from_env({"AMQP_URL": CLUSTER.replace(",", " , ")})
    assert settings.amqp_url == CLUSTER  # spaces around the commas are dropped
    assert amqp_urls(settings.amqp_url) == CLUSTER.split(",")
    assert amqp_urls("amqps://u:p@broker/%2F") == ["amqps://u:p@broker/%2F"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("amqp://a/%2F,,amqp://b/%2F", r"empty entry \(entry 2 of 3\)"),
        ("amqp://a/%2F,", r"empty entry \(entry 2 of 2\)"),
        ("http://broker:15672", "must start with amqp:// or amqps://"),
        ("amqp://a/%2F,broker:5672", "entry 2 of 2 must start with amqp://"),
        ("amqp://a/shop,amqp://b/other", "same vhost"),
        ("amqp://a/%2F,amqp://b", None),  # %2F and no path are both the default vhost
    ],
)
def test_a_bad_amqp_url_is_a_clear_error(value, message):
    if message is None:
        assert len(OrderSettings.from_env({"AMQP_URL": value}).amqp_url.split(",")) == 2
        return
    with pytest.raises(SettingsError, match=message):
        OrderSettings.from_env({"AMQP_URL": value})


def test_a_bad_amqp_url_error_shows_no_password():
    with pytest.raises(SettingsError) as raised:
        OrderSettings.from_env({"AMQP_URL": "amqp://u:s3cret@a/%2F,http://u:s3cret@b/"})
    assert "s3cret" not in str(raised.value)


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        (
            "amqp://u:p1@a:5672/%2F,amqp://u:p2@b/%2F,amqp://u:p3@c/%2F",
            "amqp://u:***@a:5672/%2F,amqp://u:***@b/%2F,amqp://u:***@c/%2F",
        ),
        ("amqp://u:p1@a,amqp://v:p2@b/x", "amqp://u:***@a,amqp://v:***@b/x"),  # no path
        ("amqp://a:5672/%2F,amqp://u:p2@b/%2F", "amqp://a:5672/%2F,amqp://u:***@b/%2F"),
        ("amqp://u:p@ss@host/%2F", "amqp://u:***@host/%2F"),  # an @ in the password
        ("postgresql+psycopg://u:pa,ss@db/orders", "postgresql+psycopg://u:***@db/orders"),
        ("postgresql://u:p@h1:5432,h2:5432/db", "postgresql://u:***@h1:5432,h2:5432/db"),
        ("amqp://guest@host/%2F", "amqp://guest@host/%2F"),  # no password: as it was
    ],
)
def test_every_password_of_a_list_is_redacted(url, redacted):
    assert redact_url(url) == redacted
