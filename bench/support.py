"""What the benchmark scripts (bench.outbox, bench.pipeline, bench.flash_sale) share.

The local RabbitMQ they all use (AMQP on HOST:AMQP_PORT, the management API at
MANAGEMENT_URL, user guest/guest), a fresh vhost per measurement (made and deleted through
the management API, so every queue starts empty), its AMQP URL, and the small helpers for
waiting on a server: a free TCP port, whether a URL answers 200, and polling a condition
until it holds.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from urllib.parse import quote

import requests

from shop.process_tree import descendants, proc_stat  # noqa: F401 (the benchmarks import them from here)

HOST = "127.0.0.1"
AMQP_HOST = HOST
AMQP_PORT = 5672
MANAGEMENT_URL = f"http://{HOST}:15672"
USER, PASSWORD = "guest", "guest"


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


def create_vhost(label: str) -> str:
    """Make a new vhost `bench-{label}-{random}` through the management API and give guest
    full rights on it; return its name. If the rights cannot be set, the vhost is deleted."""
    vhost = f"bench-{label}-{secrets.token_hex(3)}"
    name = quote(vhost, safe="")
    auth = (USER, PASSWORD)
    response = requests.put(f"{MANAGEMENT_URL}/api/vhosts/{name}", auth=auth, timeout=10)
    response.raise_for_status()
    try:
        permissions = {"configure": ".*", "write": ".*", "read": ".*"}
        response = requests.put(
            f"{MANAGEMENT_URL}/api/permissions/{name}/{USER}",
            json=permissions,
            auth=auth,
            timeout=10,
        )
        response.raise_for_status()
    except BaseException:
        delete_vhost(vhost)
        raise
    return vhost


def delete_vhost(vhost: str) -> None:
    name = quote(vhost, safe="")
    requests.delete(f"{MANAGEMENT_URL}/api/vhosts/{name}", auth=(USER, PASSWORD), timeout=30)


def amqp_url(vhost: str) -> str:
    return f"amqp://{USER}:{PASSWORD}@{AMQP_HOST}:{AMQP_PORT}/{quote(vhost, safe='')}"


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
