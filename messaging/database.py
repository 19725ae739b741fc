"""Engines and sessions for a service's own database: SQLite (the default) or PostgreSQL.

SQLite gets WAL mode, a busy timeout and `BEGIN IMMEDIATE` transactions. With several
processes writing one file, a deferred transaction that reads and then writes can fail at
once with "database is locked"; taking the write lock up front makes writers queue instead.
Sessions that only read (`make_read_session_factory`) begin with a plain `BEGIN`: in WAL
mode they read beside the writer and never wait for, or hold up, the write lock.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import DateTime, Engine, TypeDecorator, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 15_000
READ_ONLY = "shop_read_only"  # an execution option: begin without the write lock


def as_utc(moment: datetime | None) -> datetime | None:
    """The same instant in UTC; a datetime without a zone is taken to be UTC already."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def iso(moment: datetime | None) -> str | None:
    """The instant in ISO 8601, UTC, with a Z: 2026-12-24T10:00:00Z (None stays None)."""
    utc = as_utc(moment)
    return None if utc is None else utc.isoformat().replace("+00:00", "Z")


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp column that stores UTC and always reads back a zone-aware UTC datetime.

    SQLite keeps no UTC offset: 12:00+02:00 would be stored as 12:00 and read back as a
    naive 12:00. Converting to UTC on the way in and labelling it UTC on the way out makes
    both databases answer the same instant.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):  # type: ignore[no-untyped-def]
        return as_utc(value)

    def process_result_value(self, value, dialect):  # type: ignore[no-untyped-def]
        return as_utc(value)


def make_engine(url: str, **engine_options: object) -> Engine:
    """An engine for `url`; SQLite's folder is created when missing."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        engine_options.setdefault("pool_pre_ping", True)
        return create_engine(url, **engine_options)

    database = parsed.database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **engine_options
    )
    _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection):  # type: ignore[no-untyped-def]
        if connection.get_execution_options().get(READ_ONLY):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def make_read_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions for reading only (on SQLite they take no write lock); never write in one."""
    return sessionmaker(engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False)


def supports_skip_locked(engine: Engine) -> bool:
    """True where several relays can share an outbox with `FOR UPDATE SKIP LOCKED`."""
    return engine.dialect.name == "postgresql"
