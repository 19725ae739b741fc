"""Alembic, one environment per service, each with its own version table.

`upgrade(service, url)` runs a service's migrations to head (what `shop migrate`, `make
run` and the tests call); `run_environment()` is the body of every service's env.py.
From the shell: `alembic --name order_service upgrade head` (see alembic.ini).
"""

from __future__ import annotations

import os
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData

from messaging.database import make_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def version_table(service: str) -> str:
    return f"alembic_version_{service}"


def alembic_config(service: str, url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR / service))
    config.attributes["url"] = url
    config.attributes["service"] = service
    return config


def upgrade(service: str, url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(service, url), revision)


def run_environment(
    service: str, target_metadata: MetaData, url_variable: str, default_url: str
) -> None:
    """Run migrations online against the URL given by `upgrade()` or the environment."""
    config = context.config
    url = config.attributes.get("url") or os.environ.get(url_variable, default_url)
    engine = make_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            version_table=version_table(service),
            render_as_batch=connection.dialect.name == "sqlite",
            include_object=_owned_by_this_service,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


def _owned_by_this_service(obj, name, type_, reflected, compare_to) -> bool:  # type: ignore[no-untyped-def]
    """Services may share one database: autogenerate must leave the other services' tables
    (and their version tables) alone instead of proposing to drop them."""
    return not (type_ == "table" and reflected and compare_to is None)
