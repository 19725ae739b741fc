"""A RabbitMQ for the tests and the benchmarks: AMQP_URL from the environment (or the
default), a container only where a Docker engine answers, and a fresh vhost per test (or
per measurement) so nobody sees another's messages on a shared broker.

Vhosts are made through the management API when it answers, else with `rabbitmqctl`
(the distribution's RabbitMQ has no management plugin enabled), `batch` per call and in
the background (tests/support/vhosts.py); `close()` deletes what is left. This module is
the one copy of that code: bench.support uses it too.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from base64 import b64encode
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit, urlunsplit

from messaging.connection import BrokerUnavailable, close_quietly, open_connection
from messaging.settings import DEFAULT_AMQP_URL
from tests.support.vhosts import ENABLE_MANAGEMENT, RabbitmqctlVhosts, VhostError, new_name

VHOST_READY_SECONDS = 120.0

__all__ = ["ENABLE_MANAGEMENT", "Broker", "VhostError", "find_broker", "management_api"]


@dataclass
class Broker:
    amqp_url: str  # the base URL; tests get their own vhost on the same host
    management_url: str | None  # None: the management API does not answer
    batch: int = 1  # vhosts made and deleted per rabbitmqctl call
    _rabbitmqctl: RabbitmqctlVhosts | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.management_url is None:
            self._rabbitmqctl = RabbitmqctlVhosts(self.user, self.batch)

    @property
    def user(self) -> str:
        return urlsplit(self.amqp_url).username or "guest"

    @property
    def password(self) -> str:
        return urlsplit(self.amqp_url).password or "guest"

    def url_for(self, vhost: str) -> str:
        parts = urlsplit(self.amqp_url)
        return urlunsplit(parts._replace(path="/" + quote(vhost, safe=""), query=""))

    def create_vhost(self, prefix: str = "test") -> str:
        """A new empty vhost `{prefix}-{random}` on which the user has every right, once it
        takes connections (a busy broker starts a new vhost's processes a while later)."""
        if self.management_url:
            vhost = new_name(prefix)
            self._api("PUT", f"/api/vhosts/{quote(vhost, safe='')}")
            self._api(
                "PUT",
                f"/api/permissions/{quote(vhost, safe='')}/{quote(self.user, safe='')}",
                {"configure": ".*", "write": ".*", "read": ".*"},
            )
        else:
            vhost = self._rabbitmqctl.create(prefix)
        self._await_connections(vhost)
        return vhost

    def _await_connections(self, vhost: str, deadline_seconds: float = VHOST_READY_SECONDS) -> None:
        deadline = time.monotonic() + deadline_seconds
        while True:
            try:
                close_quietly(open_connection(self.url_for(vhost), "tests: vhost ready"))
                return
            except BrokerUnavailable as error:
                if time.monotonic() >= deadline:
                    raise VhostError(
                        f"vhost {vhost} took no connection within {deadline_seconds:.0f} s: {error}"
                    ) from error
                time.sleep(0.5)

    def delete_vhost(self, vhost: str) -> None:
        if self.management_url:
            self._api("DELETE", f"/api/vhosts/{quote(vhost, safe='')}")
            return
        self._rabbitmqctl.delete(vhost)

    def close(self) -> None:
        """Delete the vhosts still waiting for a batch, and the spare ones never used."""
        if self._rabbitmqctl is not None:
            self._rabbitmqctl.close()

    def _api(self, method: str, path: str, body: object | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.management_url + path, data=data, method=method)
        token = b64encode(f"{self.user}:{self.password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10):
                pass
        except OSError as error:
            raise VhostError(f"the management API refused {method} {path}: {error}") from error


def find_broker(environ: dict[str, str], batch: int = 1) -> Broker | str:
    """The broker to test against, or a sentence saying why there is none."""
    url = environ.get("AMQP_URL", DEFAULT_AMQP_URL)
    try:
        close_quietly(open_connection(url, "tests: probe", timeout=3))
    except BrokerUnavailable as error:
        container = _start_container()
        if container is None:
            return f"{error}; set AMQP_URL, or run a Docker engine for testcontainers"
        return container
    return Broker(url, management_api(url, environ.get("RABBITMQ_MANAGEMENT_URL")), batch)


def management_api(amqp_url: str, override: str | None = None) -> str | None:
    """The management API's base URL for making vhosts: `override` if it answers, else the
    AMQP host's port 15672 if that answers, else None (nothing listens, as on a fresh
    install: `make test` enables the plugin first where it can, see tests/support/preflight.py).
    """
    parts = urlsplit(amqp_url)
    default = f"http://{parts.hostname or 'localhost'}:15672"
    for candidate in dict.fromkeys(filter(None, (override, default))):
        if _answers(candidate.rstrip("/")):
            return candidate.rstrip("/")
    return None


def _answers(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(base_url + "/api/overview", timeout=2):
            pass
    except urllib.error.HTTPError:
        return True  # it answers (401 without credentials is fine)
    except OSError:
        return False
    return True


def _start_container() -> Broker | None:
    try:
        from testcontainers.community.rabbitmq import RabbitMqContainer
    except ImportError:  # pragma: no cover - testcontainers is a dev dependency
        return None
    try:
        container = RabbitMqContainer("rabbitmq:3.13-management")
        container.with_exposed_ports(5672, 15672)
        container.start()
    except Exception:  # no Docker engine answers
        return None
    host = container.get_container_host_ip()
    amqp = f"amqp://guest:guest@{host}:{container.get_exposed_port(5672)}/%2F"
    management = f"http://{host}:{container.get_exposed_port(15672)}"
    return Broker(amqp, management)
