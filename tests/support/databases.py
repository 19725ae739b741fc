"""Databases for the tests: a SQLite file per test, and a fresh PostgreSQL database per test
on the server named by TEST_POSTGRES_URL (or a testcontainers PostgreSQL where Docker answers)."""

from __future__ import annotations

from shop.postgres_instances import create_scratch_database, drop_scratch_database


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


# One copy, beside the throwaway PostgreSQL instances (shop/failover.py uses it too).
create_postgres_database = create_scratch_database
drop_postgres_database = drop_scratch_database
