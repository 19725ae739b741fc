"""What the benchmark scripts (bench.outbox, bench.pipeline, bench.flash_sale) share, apart
from the CPU meter (bench/cpu.py), the shop's parts (bench/parts.py) and the tables
(bench/table.py):

- the broker, found as the tests find theirs (tests/support/broker.py: AMQP_URL, else the
  local one; RABBITMQ_MANAGEMENT_URL where its management API is elsewhere), and a fresh
  vhost per measurement, made and deleted by shop/vhosts.py (through the management API
  where it answers, else with rabbitmqctl), so every queue starts empty;
- running a server for a block (`running`), `shop up` itself (`shop_up`), and waiting on
  a condition or a URL;
- how many messages a queue holds, and waiting until it holds so many;
- a fresh PostgreSQL database per measurement (`fresh_postgres`), on the server of
  BENCH_POSTGRES_URL, else TEST_POSTGRES_URL, else the local one; None where none answers;
- BenchFailure: a measurement could not be made, so the bench prints FAIL and exits 1.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

import pika
import pika.exceptions
import psycopg
from pika.adapters.blocking_connection import BlockingChannel

from bench.parts import DATABASE_VARIABLES
from messaging.connection import BrokerUnavailable
from shop import local_servers
from shop.local_servers import free_port
from shop.process_tree import descendants
from shop.running_shop import answers
from shop.vhosts import Broker, VhostError
from tests.support.broker import find_broker
from tests.support.databases import create_postgres_database, drop_postgres_database

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent
START_SECONDS = 60.0  # for `shop up` or gunicorn to answer

__all__ = ["HOST", "BenchFailure", "answers", "free_port", "fresh_vhost", "running", "shop_up"]


class BenchFailure(Exception):
    """A measurement could not be made: the numbers would be meaningless."""


# What stops a bench with one FAIL line (exit 1) instead of a traceback: the broker going
# away mid-run (another user's test stopping it, say) is one of them.
CANNOT_MEASURE = (BenchFailure, BrokerUnavailable, pika.exceptions.AMQPConnectionError)


def wait_until(
    condition: Callable[[], object], seconds: float, pause: float = 0.05
) -> float | None:
    """Poll `condition` until it is truthy; return how long that took, None at the deadline."""
    started = time.monotonic()
    try:
        local_servers.wait_until(condition, seconds, "a bench condition", pause)
    except TimeoutError:
        return None
    return time.monotonic() - started


def wait_answers(what: str, url: str) -> None:
    """Wait until `url` answers 200; BenchFailure after START_SECONDS."""
    if wait_until(lambda: answers(url), START_SECONDS) is None:
        raise BenchFailure(f"{what} did not answer at {url} within {START_SECONDS:.0f} s")


# --- PostgreSQL: a fresh database per measurement --------------------------------------------

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def postgres_base_url() -> str:
    return (
        os.environ.get("BENCH_POSTGRES_URL")
        or os.environ.get("TEST_POSTGRES_URL")
        or DEFAULT_POSTGRES_URL
    )


@contextmanager
def fresh_postgres(prefix: str) -> Iterator[str | None]:
    """A new, empty PostgreSQL database for the block (dropped afterwards): its URL, or
    None when no server answers (the bench then skips its PostgreSQL rows)."""
    base = postgres_base_url()
    try:
        url = create_postgres_database(base, prefix=prefix, connect_timeout=3)
    except psycopg.OperationalError:
        yield None
        return
    try:
        yield url
    finally:
        drop_postgres_database(base, url)


# --- RabbitMQ: a fresh vhost per measurement -----------------------------------------------


@cache
def broker() -> Broker:
    found = find_broker(dict(os.environ))
    if isinstance(found, str):
        raise SystemExit(f"bench: no RabbitMQ: {found}")
    return found


def create_vhost(label: str) -> str:
    """Make a new vhost `bench-{label}-{random}` on which the user has every right; return
    its name. Where that cannot be done the bench stops with one line saying why."""
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


def queue_depth(channel: BlockingChannel, queue: str) -> int:
    """How many messages `queue` holds (a passive declare changes nothing)."""
    return channel.queue_declare(queue, passive=True).method.message_count


def wait_for_depth(
    connection: pika.BlockingConnection, queue: str, expected: int, seconds: float = 60.0
) -> float:
    """Wait until `queue` holds `expected` messages, keeping `connection` serviced; return
    how long that took. BenchFailure after `seconds`."""
    channel = connection.channel()  # a channel of its own: the caller's may be in confirm mode
    started = time.perf_counter()
    deadline = time.monotonic() + seconds
    depth = queue_depth(channel, queue)
    while depth != expected and time.monotonic() < deadline:
        connection.sleep(0.05)
        depth = queue_depth(channel, queue)
    channel.close()
    if depth != expected:
        raise BenchFailure(
            f"{queue} holds {depth} messages, expected {expected} (waited {seconds:.0f} s)"
        )
    return time.perf_counter() - started


# --- Processes: run a server for a block ---------------------------------------------------


def server_env(**changes: str) -> dict[str, str]:
    """This environment for a server, without any *_DATABASE_URL (so `shop up` uses its
    SQLite defaults under the folder it runs in), plus `changes`."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_DATABASE_URL")}
    env.update(PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", **changes)
    return env


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


@dataclass
class ShopUp:
    """`python -m shop up` running in `folder` (its var/ holds the SQLite files, unless
    every service is on the PostgreSQL database `postgres_url`)."""

    folder: Path
    amqp_url: str
    port: int
    token: str  # SHOP_ADMIN_TOKEN
    pid: int
    postgres_url: str | None = None

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@contextmanager
def shop_up(
    folder: Path,
    label: str,
    wait: bool = True,
    up_args: tuple[str, ...] = (),
    postgres_url: str | None = None,
    **env: str,
) -> Iterator[ShopUp]:
    """`shop up UP_ARGS...` on a fresh vhost, with the extra environment `env`: its
    defaults (SQLite under `folder`/var), or every service on the database `postgres_url`
    (each *_DATABASE_URL set to it). Once it answers /healthz (unless not `wait`), the
    block runs; then it is stopped."""
    with fresh_vhost(label) as amqp:
        port, token = free_port(), secrets.token_urlsafe(16)
        environment = server_env(
            AMQP_URL=amqp, SHOP_ADMIN_TOKEN=token, SHOP_HTTP_HOST=HOST, SHOP_HTTP_PORT=str(port)
        )
        if postgres_url is not None:
            environment.update(dict.fromkeys(DATABASE_VARIABLES, postgres_url))
        environment.update(env)
        argv = [sys.executable, "-m", "shop", "up", *up_args]
        with running(argv, folder, environment, folder / "shop-up.log") as pid:
            shop = ShopUp(folder, amqp, port, token, pid, postgres_url)
            if wait:
                wait_answers("`shop up`", shop.url("/healthz"))
            yield shop


def print_log_tails(folder: Path, lines: int = 20) -> None:
    """The servers' logs go with the temporary folder: show their ends first."""
    for log in sorted(folder.rglob("*.log")):
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        print(f"--- the last lines of {log.relative_to(folder)}:")
        print("\n".join(tail))
