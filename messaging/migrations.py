"""Alembic, one environment per service, each with its own history and version table.

A service keeps its environment in its own package (`<package>/migrations/`: env.py,
versions/), so a new service brings its schema with it. `upgrade(service, url)` runs its
migrations to head (what `shop migrate`, `make run` and the tests call);
`run_environment(service)` is the body of every env.py; `command_line(service, argv)` is
Alembic's own command line for one service (`shop alembic inventory history`,
`shop alembic inventory revision --autogenerate -m "..."`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from alembic import command, context
from alembic.config import CommandLine, Config

from messaging.database import make_engine
from messaging.service import Service


def version_table(service: Service) -> str:
    return f"alembic_version_{service.package}"


def alembic_config(service: Service, url: str | None = None) -> Config:
    if service.migrations is None:
        raise ValueError(f"{service.name} has no migrations")
    config = Config()
    config.set_main_option("script_location", str(service.migrations))
    config.attributes["url"] = url
    config.attributes["service"] = service
    return config


def upgrade(service: Service, url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(service, url), revision)


def command_line(service: Service, argv: Sequence[str], url: str | None = None) -> None:
    """Run `alembic ARGV...` against the service's environment (and `url`, else its
    *_DATABASE_URL)."""
    alembic = CommandLine(prog=f"shop alembic {service.name}")
    options = alembic.parser.parse_args(list(argv))
    if not hasattr(options, "cmd"):
        alembic.parser.error("give an Alembic command, e.g. `upgrade head` or `history`")
    config = alembic_config(service, url)
    config.cmd_opts = options
    alembic.run_cmd(config, options)


def run_environment(service: Service) -> None:
    """Run migrations online against the URL given by `upgrade()` or the environment."""
    config = context.config
    url = (
        config.attributes.get("url")
        or os.environ.get(service.settings.DATABASE_VARIABLE)
        or service.settings().database_url
    )
    engine = make_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=service.metadata,
            version_table=version_table(service),
            render_as_batch=connection.dialect.name == "sqlite",
            include_object=owned_by_this_service,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


def owned_by_this_service(obj, name, type_, reflected, compare_to) -> bool:  # type: ignore[no-untyped-def]
    """Services may share one database: autogenerate must leave the other services' tables
    (and their version tables) alone instead of proposing to drop them."""
    return not (type_ == "table" and reflected and compare_to is None)
