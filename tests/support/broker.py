"""A RabbitMQ for the tests: AMQP_URL from the environment (or the default), a container
only where a Docker engine answers, and a fresh vhost per test so tests never see each
other's messages on a shared broker."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
import uuid
from base64 import b64encode
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

from messaging.connection import BrokerUnavailable, close_quietly, open_connection
from messaging.settings import DEFAULT_AMQP_URL


@dataclass(frozen=True)
class Broker:
    amqp_url: str  # the base URL; tests get their own vhost on the same host
    management_url: str | None

    @property
    def user(self) -> str:
        return urlsplit(self.amqp_url).username or "guest"

    @property
    def password(self) -> str:
        return urlsplit(self.amqp_url).password or "guest"

    def url_for(self, vhost: str) -> str:
        parts = urlsplit(self.amqp_url)
        return urlunsplit(parts._replace(path="/" + quote(vhost, safe=""), query=""))

    def create_vhost(self) -> str:
        vhost = f"test-{uuid.uuid4().hex[:12]}"
        if self.management_url:
            self._api("PUT", f"/api/vhosts/{vhost}")
            self._api(
                "PUT",
                f"/api/permissions/{vhost}/{self.user}",
                {"configure": ".*", "write": ".*", "read": ".*"},
            )
        else:
            _rabbitmqctl("add_vhost", vhost)
            _rabbitmqctl("set_permissions", "-p", vhost, self.user, ".*", ".*", ".*")
        return vhost

    def delete_vhost(self, vhost: str) -> None:
        if self.management_url:
            self._api("DELETE", f"/api/vhosts/{vhost}")
        else:
            _rabbitmqctl("delete_vhost", vhost)

    def _api(self, method: str, path: str, body: object | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.management_url + path, data=data, method=method)
        token = b64encode(f"{self.user}:{self.password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=10):
            pass


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


def find_broker(environ: dict[str, str]) -> Broker | str:
    """The broker to test against, or a sentence saying why there is none."""
    url = environ.get("AMQP_URL", DEFAULT_AMQP_URL)
    try:
        close_quietly(open_connection(url, "tests: probe", timeout=3))
    except BrokerUnavailable as error:
        container = _start_container()
        if container is None:
            return f"{error}; set AMQP_URL, or run a Docker engine for testcontainers"
        return container
    management = environ.get("RABBITMQ_MANAGEMENT_URL") or _management_url_for(url)
    return Broker(url, management)


def _management_url_for(amqp_url: str) -> str | None:
    parts = urlsplit(amqp_url)
    candidate = f"http://{parts.hostname or 'localhost'}:15672"
    try:
        with urllib.request.urlopen(candidate + "/api/overview", timeout=2):
            pass
    except urllib.error.HTTPError:
        return candidate  # it answers (401 without credentials is fine)
    except OSError:
        return None  # no management plugin: vhosts are made with rabbitmqctl
    return candidate


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
