"""Throwaway local PostgreSQL clusters from the distribution's binaries: initdb into a
temporary directory, start on a free port, restart (a database outage), stop and delete.

Nobody else uses such a cluster, so restarting it disturbs nobody; the machine's own
PostgreSQL (5432) is never touched. Commands run as the `postgres` user when we are root
(see local_servers.py). Authentication is `trust`, listening on 127.0.0.1 only.

    instance = start_instance("chaos")
    url = create_database(instance, "orders")   # postgresql+psycopg://postgres@127.0.0.1:PORT/orders
    restart(instance)
    stop_instance(instance)

Or a throwaway database on a server that is already there (the one TEST_POSTGRES_URL
names): `create_scratch_database(server_url)`, `drop_scratch_database(server_url, url)`.
"""

from __future__ import annotations

import glob
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from shop.local_servers import (
    Missing,
    free_port,
    remove_tree,
    run_as,
    scratch_directory,
    service_user,
)

BIN_GLOB = "/usr/lib/postgresql/*/bin"
INSTALL_HINT = "install the distribution's postgresql package (apt-get install postgresql)"


class InstanceFailed(Exception):
    """initdb or pg_ctl failed; the message has their output."""


@dataclass(frozen=True)
class PostgresInstance:
    port: int
    directory: Path  # holds data/ and server.log; deleted by stop_instance
    user: str | None
    bin_directory: Path

    @property
    def data(self) -> Path:
        return self.directory / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"


def find_bin_directory() -> Path:
    found = sorted(glob.glob(BIN_GLOB), key=lambda path: int(Path(path).parent.name))
    if not found or not (Path(found[-1]) / "initdb").exists():
        raise Missing(f"PostgreSQL's initdb is not in {BIN_GLOB}: {INSTALL_HINT}")
    return Path(found[-1])


def start_instance(prefix: str = "extra") -> PostgresInstance:
    bin_directory = find_bin_directory()
    user = service_user("postgres")
    directory = scratch_directory(f"shop-{prefix}-postgres-", user)
    instance = PostgresInstance(free_port(), directory, user, bin_directory)
    initdb = [str(bin_directory / "initdb"), "-D", str(instance.data), "-U", "postgres"]
    _run(instance, [*initdb, "-A", "trust", "--no-sync"], "initdb")
    _pg_ctl(instance, "start")
    return instance


def _pg_ctl(instance: PostgresInstance, action: str) -> None:
    options = (
        f"-p {instance.port} -k {instance.directory} -c listen_addresses=127.0.0.1 "
        "-c fsync=off -c max_connections=200"
    )
    argv = [str(instance.bin_directory / "pg_ctl"), "-D", str(instance.data)]
    argv += ["-l", str(instance.directory / "server.log"), "-o", options, "-w", "-t", "60"]
    argv += ["-m", "fast", action] if action != "start" else [action]
    _run(instance, argv, f"pg_ctl {action}")


def _run(instance: PostgresInstance, argv: list[str], what: str) -> None:
    result = run_as(instance.user, argv, timeout=120)
    if result.returncode != 0:
        raise InstanceFailed(f"{what} failed: {(result.stderr or result.stdout).strip()}")


def create_database(instance: PostgresInstance, name: str) -> str:
    """A new empty database on the instance; returns its SQLAlchemy URL."""
    dsn = f"host=127.0.0.1 port={instance.port} user=postgres dbname=postgres"
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return instance.url(name)


def restart(instance: PostgresInstance) -> None:
    """Stop (fast: open transactions are rolled back, connections cut) and start again."""
    _pg_ctl(instance, "restart")


def stop_instance(instance: PostgresInstance) -> None:
    """Stop the cluster and delete its files."""
    try:
        _pg_ctl(instance, "stop")
    finally:
        remove_tree(instance.directory)


def _admin_dsn(server_url: str) -> str:
    url = make_url(server_url).set(drivername="postgresql", database="postgres")
    return url.render_as_string(hide_password=False)


def create_scratch_database(
    server_url: str, prefix: str = "test", connect_timeout: int | None = None
) -> str:
    """A new empty database `{prefix}_<random>` on the server; returns its SQLAlchemy URL.
    psycopg.OperationalError when the server does not answer (within `connect_timeout` s)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = _admin_dsn(server_url)
    with psycopg.connect(admin, autocommit=True, connect_timeout=connect_timeout) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def drop_scratch_database(server_url: str, url: str) -> None:
    name = make_url(url).database
    with psycopg.connect(_admin_dsn(server_url), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
