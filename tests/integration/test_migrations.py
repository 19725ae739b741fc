"""Every service's migrations make exactly the tables its models describe, on SQLite and
PostgreSQL: a column, index or table added to a model without its migration fails here
(what `shop alembic NAME revision --autogenerate` would propose must be nothing)."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from messaging.database import make_engine
from messaging.migrations import owned_by_this_service, upgrade, version_table
from shop.catalog import CATALOG

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("name", [service.name for service in CATALOG])
def test_the_migrations_make_what_the_models_describe(name, database_url):
    service = CATALOG.get(name)
    upgrade(service, database_url)
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={
                    "version_table": version_table(service),
                    "include_object": owned_by_this_service,  # as autogenerate's own run
                },
            )
            differences = compare_metadata(context, service.metadata)
    finally:
        engine.dispose()
    assert differences == [], f"{name}: the models and the migrations differ: {differences}"
