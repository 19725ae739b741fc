"""Throwaway vhosts on one broker, for whatever must not see another's messages: each test,
each benchmark measurement, each lab run gets a fresh vhost and deletes it afterwards.

`Broker.create_vhost()` makes one through the management API where it answers (messaging/
management.py: milliseconds), else with `rabbitmqctl` (the distribution's RabbitMQ as
installed has no management plugin). Each `rabbitmqctl` call starts an Erlang VM (a second
or more on a busy machine), so there vhosts are made ahead, `batch` at a time, and deleted
in batches, with the documented commands, on one background thread: the next batch is made
while a test runs, and a finished test's vhost is deleted while the next one runs.
`close()` waits for that thread, deletes what is left (the spare vhosts too) and raises the
first error it met.

    broker = Broker.at(amqp_url, os.environ.get("RABBITMQ_MANAGEMENT_URL"))
    with broker.fresh_vhost("lab") as url: ...
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit, urlunsplit

from messaging.connection import BrokerUnavailable, close_quietly, open_connection
from messaging.management import (
    ENABLE_MANAGEMENT,
    ManagementApi,
    ManagementError,
    find_management_api,
    first_url,
)
from messaging.settings import amqp_urls
from shop.process_tree import descendants

RABBITMQCTL_SECONDS = 120
VHOST_READY_SECONDS = 120.0

__all__ = ["ENABLE_MANAGEMENT", "Broker", "VhostError"]


class VhostError(RuntimeError):
    """A vhost could not be made or deleted; the message says why, in one sentence."""


class RabbitmqctlRefused(VhostError):
    """rabbitmqctl ran and exited non-zero (not: it could not run, or timed out)."""


def new_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@dataclass
class Broker:
    # The base URL (or the comma-separated URLs of a cluster's nodes); each user gets its
    # own vhost on the same broker.
    amqp_url: str
    management_url: str | None  # None: the management API does not answer
    batch: int = 1  # vhosts made and deleted per rabbitmqctl call
    _rabbitmqctl: RabbitmqctlVhosts | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.management_url is None:
            self._rabbitmqctl = RabbitmqctlVhosts(self.user, self.batch)

    @classmethod
    def at(cls, amqp_url: str, management_override: str | None = None, batch: int = 1) -> Broker:
        """The broker at `amqp_url`, its vhosts made through the management API that
        answers (`management_override`, else the AMQP host's port 15672), else rabbitmqctl."""
        api = find_management_api(amqp_url, management_override)
        return cls(amqp_url, api.base_url if api else None, batch)

    @property
    def user(self) -> str:
        return urlsplit(first_url(self.amqp_url)).username or "guest"

    @property
    def password(self) -> str:
        return urlsplit(first_url(self.amqp_url)).password or "guest"

    def url_for(self, vhost: str) -> str:
        """The AMQP URL of `vhost`: every node's URL, with the vhost for its path."""
        path = "/" + quote(vhost, safe="")
        return ",".join(
            urlunsplit(urlsplit(url)._replace(path=path, query=""))
            for url in amqp_urls(self.amqp_url)
        )

    def create_vhost(self, prefix: str = "test") -> str:
        """A new empty vhost `{prefix}-{random}` on which the user has every right, once it
        takes connections (a busy broker starts a new vhost's processes a while later)."""
        if self._rabbitmqctl is None:
            vhost = new_name(prefix)
            api = self._api()
            self._call(api.put, f"/api/vhosts/{api.quoted(vhost)}")
            self._call(
                api.put,
                f"/api/permissions/{api.quoted(vhost)}/{api.quoted(self.user)}",
                {"configure": ".*", "write": ".*", "read": ".*"},
            )
        else:
            vhost = self._rabbitmqctl.create(prefix)
        self._await_connections(vhost)
        return vhost

    def delete_vhost(self, vhost: str) -> None:
        if self._rabbitmqctl is None:
            api = self._api()
            self._call(api.delete, f"/api/vhosts/{api.quoted(vhost)}")
            return
        self._rabbitmqctl.delete(vhost)

    @contextlib.contextmanager
    def fresh_vhost(self, prefix: str) -> Iterator[str]:
        """A new vhost for the block, deleted afterwards; yields its AMQP URL."""
        vhost = self.create_vhost(prefix)
        try:
            yield self.url_for(vhost)
        finally:
            self.delete_vhost(vhost)

    def close(self) -> None:
        """Delete the vhosts still waiting for a batch, and the spare ones never used."""
        if self._rabbitmqctl is not None:
            self._rabbitmqctl.close()

    def _api(self) -> ManagementApi:
        assert self.management_url is not None
        return ManagementApi(self.management_url, self.user, self.password, timeout=10)

    @staticmethod
    def _call(method, path: str, *body: object) -> None:  # type: ignore[no-untyped-def]
        try:
            method(path, *body)
        except ManagementError as error:
            raise VhostError(str(error)) from error

    def _await_connections(self, vhost: str, deadline_seconds: float = VHOST_READY_SECONDS) -> None:
        deadline = time.monotonic() + deadline_seconds
        while True:
            try:
                close_quietly(open_connection(self.url_for(vhost), "scratch vhost: ready?"))
                return
            except BrokerUnavailable as error:
                if time.monotonic() >= deadline:
                    raise VhostError(
                        f"vhost {vhost} took no connection within {deadline_seconds:.0f} s: {error}"
                    ) from error
                time.sleep(0.5)


class RabbitmqctlVhosts:
    def __init__(self, user: str, batch: int = 1) -> None:
        self.user = user
        self.batch = batch
        self._spare: dict[str, list[str]] = {}
        self._next: dict[str, Future[list[str]]] = {}  # a batch being made, per prefix
        self._finished: list[str] = []
        self._deletions: list[Future[None]] = []
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vhosts")

    def create(self, prefix: str) -> str:
        spare = self._spare.setdefault(prefix, [])
        if not spare:
            coming = self._next.pop(prefix, None)
            spare += coming.result() if coming else self._make(prefix)
        vhost = spare.pop()
        if not spare and self.batch > 1:  # the last spare one: make the next batch meanwhile
            self._next[prefix] = self._worker.submit(self._make, prefix)
        return vhost

    def delete(self, vhost: str) -> None:
        """Delete it now (batch 1), else soon: with its batch, on the background thread."""
        if self.batch == 1:
            delete_vhosts([vhost])
            return
        self._finished.append(vhost)
        if len(self._finished) >= self.batch:
            doomed, self._finished = self._finished, []
            self._deletions.append(self._worker.submit(delete_vhosts, doomed))

    def close(self) -> None:
        leftover = [vhost for spare in self._spare.values() for vhost in spare]
        for coming in self._next.values():
            with contextlib.suppress(VhostError):  # else nothing was made
                leftover += coming.result()
        self._spare.clear()
        self._next.clear()
        doomed, self._finished = self._finished + leftover, []
        if doomed:
            self._deletions.append(self._worker.submit(delete_vhosts, doomed))
        self._worker.shutdown(wait=True)
        errors = [future.exception() for future in self._deletions if future.exception()]
        self._deletions.clear()
        if errors:
            raise errors[0]

    def _make(self, prefix: str) -> list[str]:
        made = [new_name(prefix) for _ in range(self.batch)]
        import_vhosts(made, self.user)
        return made


def import_vhosts(names: list[str], user: str) -> None:
    """Make every vhost in `names`, with all rights for `user`, with the documented
    commands, one vhost after the other. (Not `rabbitmqctl eval` of the broker's
    internals, nor `import_definitions`: on the distribution's 3.10 broker both left it
    hung, for minutes, on a busy machine.)"""
    for name in names:
        rabbitmqctl("add_vhost", name)
        rabbitmqctl("set_permissions", "-p", name, user, ".*", ".*", ".*")


def delete_vhosts(names: list[str]) -> None:
    """Delete every vhost in `names`, one `delete_vhost` each (one already gone is fine)."""
    for name in names:
        try:
            rabbitmqctl("delete_vhost", name)
        except RabbitmqctlRefused as refusal:
            if "does_not_exist" not in str(refusal) and "not exist" not in str(refusal):
                raise


def rabbitmqctl(*args: str) -> None:
    """Run `rabbitmqctl -q ARGS`; at the deadline it and every process it started are
    killed (the wrapper script runs the real one through `su`, which would outlive it)."""
    try:
        process = subprocess.Popen(
            ["rabbitmqctl", "-q", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    except OSError as error:
        raise VhostError(
            f"rabbitmqctl {args[0]} failed ({error}): without the management API, vhosts are "
            f"made with rabbitmqctl on the broker's host; or `{ENABLE_MANAGEMENT}`"
        ) from error
    try:
        stdout, stderr = process.communicate(timeout=RABBITMQCTL_SECONDS)
    except subprocess.TimeoutExpired:
        for pid in [process.pid, *descendants(process.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait()
        raise VhostError(
            f"rabbitmqctl {args[0]} did not finish in {RABBITMQCTL_SECONDS} s: the broker "
            "does not answer"
        ) from None
    if process.returncode != 0:
        said = " ".join((stderr or stdout).split()) or "no output"
        raise RabbitmqctlRefused(
            f"rabbitmqctl {args[0]} exited {process.returncode} ({said[:300]}): run it as root "
            f"or the rabbitmq user, or `{ENABLE_MANAGEMENT}` so vhosts are made over HTTP"
        )
