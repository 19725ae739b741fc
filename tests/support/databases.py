"""Databases for the tests: a SQLite file per test, and a fresh PostgreSQL database per test
on the server named by TEST_POSTGRES_URL (or a testcontainers PostgreSQL where Docker answers).
The benches make and drop their PostgreSQL databases with the same two functions."""

from __future__ import annotations

import uuid

import psycopg
from sqlalchemy.engine import make_url


def find_postgres(environ: dict[str, str]) -> str | None:
    url = environ.get("TEST_POSTGRES_URL")
    if url:
        return url
    try:
        from testcontainers.community.postgres import PostgresContainer

        container = PostgresContainer("postgres:16", driver="psycopg")
        container.start()
    except Exception:  # no Docker engine answers
        return None
    return container.get_connection_url()


def _admin_dsn(base_url: str) -> str:
    url = make_url(base_url).set(drivername="postgresql", database="postgres")
    return url.render_as_string(hide_password=False)


def create_postgres_database(
    base_url: str, prefix: str = "test", connect_timeout: int | None = None
) -> str:
    """A new empty database `{prefix}_{random}` on the server of `base_url`; its URL.
    psycopg.OperationalError when the server does not answer (within `connect_timeout` s)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = _admin_dsn(base_url)
    with psycopg.connect(admin, autocommit=True, connect_timeout=connect_timeout) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return make_url(base_url).set(database=name).render_as_string(hide_password=False)


def drop_postgres_database(base_url: str, url: str) -> None:
    name = make_url(url).database
    with psycopg.connect(_admin_dsn(base_url), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
