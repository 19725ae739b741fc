"""One frozen settings object, read once from the environment (CONTRACT.md's variables).

AMQP_URL may list the nodes of one cluster, comma-separated (`amqp_urls()` splits it, and
every connection tries them in turn: messaging/connection.py)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from urllib.parse import unquote, urlsplit

DEFAULT_AMQP_URL = "amqp://guest:guest@localhost:5672/%2F"


class SettingsError(ValueError):
    """An environment variable holds a value the shop cannot use."""


@dataclass(frozen=True)
class Settings:
    amqp_url: str = DEFAULT_AMQP_URL
    order_database_url: str = "sqlite:///var/orders.db"
    inventory_database_url: str = "sqlite:///var/inventory.db"
    coupon_database_url: str = "sqlite:///var/coupons.db"
    notification_database_url: str = "sqlite:///var/notifications.db"
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    admin_token: str | None = None
    flash_sale_queue_limit: int = 1000
    sms_gateway_url: str | None = None
    rabbitmq_management_url: str | None = None  # default: http://<AMQP host>:15672
    coupon_reservation_ttl: float = 900.0  # seconds a coupon waits for its order.created
    outbox_retention_days: float = 7.0  # sent outbox rows are pruned after this
    inbox_retention_days: float = 14.0  # handled inbox rows are pruned after this

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        defaults = cls()
        return cls(
            amqp_url=",".join(amqp_urls(env.get("AMQP_URL") or defaults.amqp_url)),
            order_database_url=env.get("ORDER_DATABASE_URL", defaults.order_database_url),
            inventory_database_url=env.get(
                "INVENTORY_DATABASE_URL", defaults.inventory_database_url
            ),
            coupon_database_url=env.get("COUPON_DATABASE_URL", defaults.coupon_database_url),
            notification_database_url=env.get(
                "NOTIFICATION_DATABASE_URL", defaults.notification_database_url
            ),
            http_host=env.get("SHOP_HTTP_HOST", defaults.http_host),
            http_port=_positive_int(env, "SHOP_HTTP_PORT", defaults.http_port),
            admin_token=env.get("SHOP_ADMIN_TOKEN") or None,
            flash_sale_queue_limit=_positive_int(
                env, "FLASH_SALE_QUEUE_LIMIT", defaults.flash_sale_queue_limit
            ),
            sms_gateway_url=env.get("SMS_GATEWAY_URL") or None,
            rabbitmq_management_url=env.get("RABBITMQ_MANAGEMENT_URL") or None,
            coupon_reservation_ttl=_positive_number(
                env, "COUPON_RESERVATION_TTL_SECONDS", defaults.coupon_reservation_ttl
            ),
            outbox_retention_days=_positive_number(
                env, "OUTBOX_RETENTION_DAYS", defaults.outbox_retention_days
            ),
            inbox_retention_days=_positive_number(
                env, "INBOX_RETENTION_DAYS", defaults.inbox_retention_days
            ),
        )

    def with_changes(self, **changes: object) -> Settings:
        return replace(self, **changes)


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be greater than 0, got {value}")
    return value


def _positive_number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if not value > 0 or value == float("inf"):
        raise SettingsError(f"{name} must be a number greater than 0, got {raw!r}")
    return value


def amqp_urls(amqp_url: str) -> list[str]:
    """The URLs of a comma-separated AMQP_URL, in order (one for a single broker).

    SettingsError when an entry is empty or not amqp(s)://, or when they name different
    vhosts: the nodes of one cluster share their vhosts, and a failover to another vhost
    would quietly find other queues. (A comma inside a password must be written %2C.)"""
    urls = [url.strip() for url in amqp_url.split(",")]
    for position, url in enumerate(urls, start=1):
        where = f"entry {position} of {len(urls)}" if len(urls) > 1 else "the URL"
        if not url:
            raise SettingsError(
                f"AMQP_URL has an empty entry ({where}): separate the nodes' URLs with "
                "single commas, e.g. amqp://host-1:5672/%2F,amqp://host-2:5672/%2F"
            )
        if urlsplit(url).scheme not in ("amqp", "amqps"):
            raise SettingsError(
                f"AMQP_URL {where} must start with amqp:// or amqps://, got {redact_url(url)!r}"
            )
    vhosts = {_vhost(url) for url in urls}
    if len(vhosts) > 1:
        raise SettingsError(
            f"AMQP_URL lists the nodes of one cluster, so every entry must name the same "
            f"vhost; got {sorted(vhosts)}"
        )
    return urls


def _vhost(url: str) -> str:
    path = urlsplit(url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


# user:password@ after a scheme's //, the password up to the last @ before the next /:
# every URL of a comma-separated list is matched, and a password with an @ or a comma
# in it is hidden whole.
_PASSWORD = re.compile(r"(//[^/@:,]*:)[^/]*@")


def redact_url(url: str) -> str:
    """The URL (or comma-separated URLs) with every password replaced by ***, fit for a
    log line."""
    return _PASSWORD.sub(r"\1***@", url)
