"""Settings, read once from the environment (CONTRACT.md's variables).

`ServiceSettings` holds what every service process is configured with: its own database,
the broker, and how long its outbox and inbox keep their rows. Each service subclasses it
with its own fields and names its database variable, so a service's settings live in its
own package (order_service/settings.py, ...) and messaging/ knows none of them:

    @dataclass(frozen=True)
    class CouponSettings(ServiceSettings):
        DATABASE_VARIABLE: ClassVar[str] = "COUPON_DATABASE_URL"
        database_url: str = "sqlite:///var/coupons.db"
        reservation_ttl: float = 900.0

        @classmethod
        def own_settings(cls, env: EnvReader) -> dict[str, object]:
            return {"reservation_ttl": env.positive_number("COUPON_RESERVATION_TTL_SECONDS", 900.0)}

AMQP_URL may list the nodes of one cluster, comma-separated (`amqp_urls()` splits it, and
every connection tries them in turn: messaging/connection.py). A service may connect as a
broker user of its own (least privilege: shop/broker_users.py): its `<NAME>_AMQP_URL`
(named after its database variable, `INVENTORY_DATABASE_URL` -> `INVENTORY_AMQP_URL`, or
its `AMQP_VARIABLE`) wins over AMQP_URL for its own connections, and must name the same
vhost. A bad value is a `SettingsError` naming the variable, raised before anything starts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import ClassVar, Self
from urllib.parse import quote, unquote, urlsplit, urlunsplit

DEFAULT_AMQP_URL = "amqp://guest:guest@localhost:5672/%2F"


class SettingsError(ValueError):
    """An environment variable holds a value the shop cannot use."""


class EnvReader:
    """Reads typed values from an environment; an empty variable counts as unset."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ

    def text(self, name: str, default: str) -> str:
        return self.environ.get(name) or default

    def optional_text(self, name: str) -> str | None:
        return self.environ.get(name) or None

    def positive_int(self, name: str, default: int) -> int:
        raw = self.environ.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
        if value <= 0:
            raise SettingsError(f"{name} must be greater than 0, got {value}")
        return value

    def positive_number(self, name: str, default: float) -> float:
        raw = self.environ.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a number, got {raw!r}") from None
        if not value > 0 or value == float("inf"):
            raise SettingsError(f"{name} must be a number greater than 0, got {raw!r}")
        return value


@dataclass(frozen=True)
class ServiceSettings:
    """What every service process is configured with (a service adds its own fields)."""

    DATABASE_VARIABLE: ClassVar[str] = ""  # e.g. "ORDER_DATABASE_URL"
    AMQP_VARIABLE: ClassVar[str] = ""  # default: from DATABASE_VARIABLE, "ORDER_AMQP_URL"

    database_url: str = ""
    amqp_url: str = DEFAULT_AMQP_URL  # its own connections: <NAME>_AMQP_URL, else AMQP_URL
    rabbitmq_management_url: str | None = None  # default: http://<AMQP host>:15672
    outbox_retention_days: float = 7.0  # sent outbox rows are pruned after this
    inbox_retention_days: float = 14.0  # handled inbox rows are pruned after this

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        env = EnvReader(os.environ if environ is None else environ)
        defaults = cls()
        return cls(
            database_url=env.text(cls.DATABASE_VARIABLE, defaults.database_url),
            amqp_url=own_amqp_url(env, cls.amqp_variable(), defaults.amqp_url),
            rabbitmq_management_url=env.optional_text("RABBITMQ_MANAGEMENT_URL"),
            outbox_retention_days=env.positive_number(
                "OUTBOX_RETENTION_DAYS", defaults.outbox_retention_days
            ),
            inbox_retention_days=env.positive_number(
                "INBOX_RETENTION_DAYS", defaults.inbox_retention_days
            ),
            **cls.own_settings(env),
        )

    @classmethod
    def own_settings(cls, env: EnvReader) -> dict[str, object]:
        """The service's own fields, read from `env` (none here)."""
        return {}

    @classmethod
    def amqp_variable(cls) -> str:
        """The variable of its own broker URL: `AMQP_VARIABLE`, else its database
        variable's (`INVENTORY_DATABASE_URL` -> `INVENTORY_AMQP_URL`)."""
        if cls.AMQP_VARIABLE or not cls.DATABASE_VARIABLE.endswith("_DATABASE_URL"):
            return cls.AMQP_VARIABLE
        return cls.DATABASE_VARIABLE.removesuffix("DATABASE_URL") + "AMQP_URL"

    def with_changes(self, **changes: object) -> Self:
        known = {field.name for field in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no setting {', '.join(unknown)}")
        return replace(self, **changes)


def own_amqp_url(env: EnvReader, variable: str, default: str = DEFAULT_AMQP_URL) -> str:
    """The broker URL in `variable` (a process's own user), else AMQP_URL, else `default`:
    checked, its entries joined by single commas. SettingsError when `variable` names
    another vhost than AMQP_URL (the shop's topology is declared in AMQP_URL's)."""
    shared = amqp_urls(env.text("AMQP_URL", default))
    own = env.optional_text(variable) if variable else None
    if own is None:
        return ",".join(shared)
    mine = amqp_urls(own, variable)
    if vhost_of(mine[0]) != vhost_of(shared[0]):
        raise SettingsError(
            f"{variable} must name the vhost of AMQP_URL ({vhost_of(shared[0])!r}), "
            f"got {vhost_of(mine[0])!r}"
        )
    return ",".join(mine)


def amqp_urls(amqp_url: str, variable: str = "AMQP_URL") -> list[str]:
    """The URLs of a comma-separated AMQP_URL, in order (one for a single broker).

    SettingsError when an entry is empty or not amqp(s)://, or when they name different
    vhosts: the nodes of one cluster share their vhosts, and a failover to another vhost
    would quietly find other queues. (A comma inside a password must be written %2C.)"""
    urls = [url.strip() for url in amqp_url.split(",")]
    for position, url in enumerate(urls, start=1):
        where = f"entry {position} of {len(urls)}" if len(urls) > 1 else "the URL"
        if not url:
            raise SettingsError(
                f"{variable} has an empty entry ({where}): separate the nodes' URLs with "
                "single commas, e.g. amqp://host-1:5672/%2F,amqp://host-2:5672/%2F"
            )
        if urlsplit(url).scheme not in ("amqp", "amqps"):
            raise SettingsError(
                f"{variable} {where} must start with amqp:// or amqps://, got {redact_url(url)!r}"
            )
    vhosts = {vhost_of(url) for url in urls}
    if len(vhosts) > 1:
        raise SettingsError(
            f"{variable} lists the nodes of one cluster, so every entry must name the same "
            f"vhost; got {sorted(vhosts)}"
        )
    return urls


def vhost_of(url: str) -> str:
    """The vhost an AMQP URL names ("/" when it names none)."""
    path = urlsplit(url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def with_user(amqp_url: str, user: str, password: str) -> str:
    """The same nodes and vhost (every URL of a comma-separated list), as another user."""
    credentials = f"{quote(user, safe='')}:{quote(password, safe='')}"
    return ",".join(
        urlunsplit(parts._replace(netloc=f"{credentials}@{parts.netloc.rpartition('@')[2]}"))
        for parts in map(urlsplit, amqp_urls(amqp_url))
    )


# user:password@ after a scheme's //, the password up to the last @ before the next /:
# every URL of a comma-separated list is matched, and a password with an @ or a comma
# in it is hidden whole.
_PASSWORD = re.compile(r"(//[^/@:,]*:)[^/]*@")


def redact_url(url: str) -> str:
    """The URL (or comma-separated URLs) with every password replaced by ***, fit for a
    log line."""
    return _PASSWORD.sub(r"\1***@", url)
