"""Alembic environment of the order service (its own history and version table)."""

from messaging.migrations import run_environment
from messaging.settings import Settings
from order_service.models import Base

run_environment("order_service", Base.metadata, "ORDER_DATABASE_URL", Settings().order_database_url)
