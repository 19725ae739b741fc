"""Alembic environment of the inventory service (its own history and version table)."""

from inventory_service.models import Base
from messaging.migrations import run_environment
from messaging.settings import Settings

run_environment(
    "inventory_service", Base.metadata, "INVENTORY_DATABASE_URL", Settings().inventory_database_url
)
