"""A RabbitMQ for the tests and the benchmarks: AMQP_URL from the environment (or the
default), a container only where a Docker engine answers, and a fresh vhost per test (or
per measurement) so nobody sees another's messages on a shared broker.

Vhosts are made through the management API when it answers, else with `rabbitmqctl`
(the distribution's RabbitMQ has no management plugin enabled). Each `rabbitmqctl` call
starts an Erlang VM (about a second), so without the API a broker made with `batch=N`
makes N vhosts per call (one `import_definitions`) and deletes them N at a time (one
`eval`, with `delete_vhost` one by one where the broker's internals differ); `close()`
deletes what is left. This module is the one copy of that code: bench.support uses it too.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import urllib.error
import urllib.request
import uuid
from base64 import b64encode
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit, urlunsplit

from messaging.connection import BrokerUnavailable, close_quietly, open_connection
from messaging.settings import DEFAULT_AMQP_URL

ENABLE_MANAGEMENT = "rabbitmq-plugins enable rabbitmq_management"


class VhostError(RuntimeError):
    """A vhost could not be made or deleted; the message says why, in one sentence."""


@dataclass
class Broker:
    amqp_url: str  # the base URL; tests get their own vhost on the same host
    management_url: str | None  # None: the management API does not answer
    batch: int = 1  # vhosts made and deleted per rabbitmqctl call
    _spare: dict[str, list[str]] = field(default_factory=dict, repr=False)
    _finished: list[str] = field(default_factory=list, repr=False)

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
        """A new empty vhost `{prefix}-{random}` on which the user has every right."""
        if self.management_url:
            vhost = _new_name(prefix)
            self._api("PUT", f"/api/vhosts/{quote(vhost, safe='')}")
            self._api(
                "PUT",
                f"/api/permissions/{quote(vhost, safe='')}/{quote(self.user, safe='')}",
                {"configure": ".*", "write": ".*", "read": ".*"},
            )
            return vhost
        spare = self._spare.setdefault(prefix, [])
        if not spare:
            made = [_new_name(prefix) for _ in range(self.batch)]
            _import_vhosts(made, self.user)
            spare.extend(made)
        return spare.pop()

    def delete_vhost(self, vhost: str) -> None:
        if self.management_url:
            self._api("DELETE", f"/api/vhosts/{quote(vhost, safe='')}")
            return
        self._finished.append(vhost)
        if len(self._finished) >= self.batch:
            self._delete_finished()

    def close(self) -> None:
        """Delete the vhosts still waiting for a batch, and the spare ones never used."""
        for spare in self._spare.values():
            self._finished += spare
            spare.clear()
        if self._finished:
            self._delete_finished()

    def _delete_finished(self) -> None:
        doomed, self._finished = self._finished, []
        _delete_vhosts(doomed)

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


def _new_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _import_vhosts(names: list[str], user: str) -> None:
    """Make every vhost in `names`, with all rights for `user`, in one rabbitmqctl call."""
    rights = {"configure": ".*", "write": ".*", "read": ".*"}
    definitions = {
        "vhosts": [{"name": name} for name in names],
        "permissions": [{"user": user, "vhost": name, **rights} for name in names],
    }
    # rabbitmqctl before 3.13 reads definitions from a file only, not from stdin, and the
    # broker reads it, as its own user: the file must be readable by others.
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="vhosts-") as file:
        json.dump(definitions, file)
        file.flush()
        os.chmod(file.name, 0o644)
        _rabbitmqctl("import_definitions", file.name)


def _delete_vhosts(names: list[str]) -> None:
    """Delete every vhost in `names`: one `eval` call, else one `delete_vhost` each."""
    binaries = ", ".join(f'<<"{name}">>' for name in names)
    script = (  # idempotent: a vhost already gone is skipped, so a retry is safe
        f'[ok = rabbit_vhost:delete(V, <<"tests">>) || V <- [{binaries}], rabbit_vhost:exists(V)].'
    )
    try:
        _rabbitmqctl("eval", script)
    except VhostError:  # another broker version: the documented command, one at a time
        for name in names:
            _rabbitmqctl("delete_vhost", name)


def _rabbitmqctl(*args: str) -> None:
    try:
        result = subprocess.run(
            ["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise VhostError(
            f"rabbitmqctl {args[0]} failed ({error}): without the management API, vhosts are "
            f"made with rabbitmqctl on the broker's host; or `{ENABLE_MANAGEMENT}`"
        ) from error
    if result.returncode != 0:
        said = " ".join((result.stderr or result.stdout).split()) or "no output"
        raise VhostError(
            f"rabbitmqctl {args[0]} exited {result.returncode} ({said[:300]}): run it as root "
            f"or the rabbitmq user, or `{ENABLE_MANAGEMENT}` so vhosts are made over HTTP"
        )


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
    """The management API's base URL if it answers (`override`, else the AMQP host's port
    15672), else None: nothing listens there, as on a fresh install."""
    parts = urlsplit(amqp_url)
    candidate = (override or f"http://{parts.hostname or 'localhost'}:15672").rstrip("/")
    try:
        with urllib.request.urlopen(candidate + "/api/overview", timeout=2):
            pass
    except urllib.error.HTTPError:
        return candidate  # it answers (401 without credentials is fine)
    except OSError:
        return None
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
