"""The RabbitMQ management HTTP API: the one client the shop, its tests, benches and labs use.

Only the management API knows some numbers (unacknowledged messages, redeliveries), and it
makes vhosts and users in milliseconds where `rabbitmqctl` starts an Erlang VM per call.
It is a plugin, off on a fresh install of the distribution's RabbitMQ, so everything that
uses it has a way on without it (messaging/pipeline.py reads over AMQP instead).

It is at `http://<AMQP host>:15672` with the AMQP URL's user and password, unless
RABBITMQ_MANAGEMENT_URL says otherwise (credentials in that URL win over the AMQP URL's):

    api = ManagementApi.for_broker(amqp_url, override)
    api.get(f"/api/queues/{api.quoted(vhost)}")
    api.put(f"/api/vhosts/{api.quoted(vhost)}")
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from base64 import b64encode
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

from messaging.settings import amqp_urls

MANAGEMENT_PORT = 15672
TIMEOUT_SECONDS = 3.0
ENABLE_MANAGEMENT = "rabbitmq-plugins enable rabbitmq_management"


class ManagementError(RuntimeError):
    """The management API did not answer, or answered with an error (`status` then says which)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def first_url(amqp_url: str) -> str:
    """The first of a comma-separated list of AMQP URLs (the nodes of one cluster): the
    node whose management API is asked, unless RABBITMQ_MANAGEMENT_URL says otherwise."""
    return amqp_urls(amqp_url)[0]


@dataclass(frozen=True)
class ManagementApi:
    base_url: str  # scheme://host:port[/path], without credentials or a trailing slash
    user: str
    password: str
    timeout: float = TIMEOUT_SECONDS

    @classmethod
    def for_broker(
        cls, amqp_url: str, override: str | None = None, *, timeout: float = TIMEOUT_SECONDS
    ) -> ManagementApi:
        """The API of the broker at `amqp_url` (its first node), or at `override`."""
        amqp = urlsplit(first_url(amqp_url))
        if override:
            base = urlsplit(override.rstrip("/"))
        else:
            host = amqp.hostname or "localhost"
            host = f"[{host}]" if ":" in host else host  # an IPv6 address
            base = urlsplit(f"http://{host}:{MANAGEMENT_PORT}")
        user = unquote(base.username or amqp.username or "guest")
        password = unquote(base.password or amqp.password or "guest")
        netloc = base.netloc.rpartition("@")[2]
        return cls(f"{base.scheme}://{netloc}{base.path}", user, password, timeout)

    @staticmethod
    def quoted(name: str) -> str:
        """A vhost, user or queue name as one path segment ("/" is %2F)."""
        return quote(name, safe="")

    def request(self, method: str, path: str, body: object | None = None) -> object | None:
        """One call; the decoded JSON answer (None when empty). ManagementError otherwise."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        token = b64encode(f"{self.user}:{self.password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as error:
            raise ManagementError(
                f"the management API answered {method} {path} with HTTP {error.code}", error.code
            ) from error
        except (OSError, http.client.HTTPException) as error:  # URLError is an OSError
            raise ManagementError(
                f"the management API at {self.base_url} did not answer "
                f"({type(error).__name__}: {error})"
            ) from error
        try:
            return json.loads(raw) if raw else None
        except ValueError as error:
            raise ManagementError(f"{method} {path} did not answer with JSON") from error

    def get(self, path: str) -> object | None:
        return self.request("GET", path)

    def put(self, path: str, body: object | None = None) -> None:
        self.request("PUT", path, body if body is not None else {})

    def delete(self, path: str) -> None:
        self.request("DELETE", path)

    def answers(self) -> bool:
        """True when something answers at the base URL (even a 401: it is there)."""
        try:
            self.get("/api/overview")
        except ManagementError as error:
            return error.status is not None
        return True


def find_management_api(amqp_url: str, override: str | None = None) -> ManagementApi | None:
    """The management API that answers: `override` if it does, else the AMQP host's port
    15672 if that does, else None (nothing listens, as on a fresh install)."""
    candidates = [ManagementApi.for_broker(amqp_url, override)] if override else []
    candidates.append(ManagementApi.for_broker(amqp_url))
    for api in candidates:
        if api.answers():
            return api
    return None
