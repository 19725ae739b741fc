"""What the benchmark scripts (bench.outbox, bench.pipeline, bench.flash_sale) share.

The local RabbitMQ they all use (AMQP_URL, as for the tests, else HOST:AMQP_PORT with user
guest/guest; RABBITMQ_MANAGEMENT_URL where its management API is elsewhere), a fresh vhost
per measurement (made and deleted by shop/vhosts.py, through the management API
where it answers, else with rabbitmqctl; every queue starts empty), its AMQP URL, and the
small helpers for waiting on a server: a free TCP port, whether a URL answers 200, and
polling a condition until it holds.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

import requests

from shop.process_tree import descendants, proc_stat  # noqa: F401 (the benchmarks import them from here)
from shop.vhosts import Broker, VhostError

HOST = "127.0.0.1"
AMQP_HOST = HOST
AMQP_PORT = 5672
USER, PASSWORD = "guest", "guest"
BASE_AMQP_URL = f"amqp://{USER}:{PASSWORD}@{AMQP_HOST}:{AMQP_PORT}/%2F"


# --- Waiting -------------------------------------------------------------------------------


def wait_until(
    condition: Callable[[], object], seconds: float, pause: float = 0.05
) -> float | None:
    """Poll `condition` until it is truthy; return how long that took, None at the deadline."""
    started = time.monotonic()
    while True:
        if condition():
            return time.monotonic() - started
        if time.monotonic() - started >= seconds:
            return None
        time.sleep(pause)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


# --- RabbitMQ: a fresh vhost per measurement -----------------------------------------------


@cache
def broker() -> Broker:
    """The local broker, its vhosts made as the tests make theirs (shop/vhosts.py):
    through the management API where it answers, else with rabbitmqctl."""
    url = os.environ.get("AMQP_URL", BASE_AMQP_URL)
    return Broker.at(url, os.environ.get("RABBITMQ_MANAGEMENT_URL"))


def create_vhost(label: str) -> str:
    """Make a new vhost `bench-{label}-{random}` on which guest has every right; return its
    name. Where that cannot be done the bench stops with one line saying why."""
    try:
        return broker().create_vhost(f"bench-{label}")
    except VhostError as error:
        where = urlsplit(broker().amqp_url).hostname
        raise SystemExit(f"bench: cannot make a vhost on RabbitMQ at {where}: {error}") from None


def delete_vhost(vhost: str) -> None:
    try:
        broker().delete_vhost(vhost)
    except VhostError as error:
        print(f"bench: vhost {vhost} is left behind: {error}")


def amqp_url(vhost: str) -> str:
    return broker().url_for(vhost)


@contextmanager
def fresh_vhost(label: str) -> Iterator[str]:
    """A new vhost for the block (see create_vhost), deleted afterwards; yields its AMQP URL."""
    vhost = create_vhost(label)
    try:
        yield amqp_url(vhost)
    finally:
        delete_vhost(vhost)


# --- Processes: run a server for a block, and find what it started ----------------------


@contextmanager
def running(argv: list[str], cwd: Path, env: dict[str, str], log: Path) -> Iterator[int]:
    """Run a server for the block, then Ctrl-C it (SIGINT), as a person would.

    `shop up` and gunicorn both stop their children on SIGINT; only if the server hangs are
    it and its children (in sessions of their own, so no signal reaches them) killed.
    """
    with log.open("w") as output:
        process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT)
        try:
            yield process.pid
        finally:
            family = descendants(process.pid)
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                for pid in [process.pid, *family]:
                    with suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                process.wait()
