"""Alembic environment of the notification service (its own history and version table)."""

from messaging.migrations import run_environment
from messaging.settings import Settings
from notification_service.models import Base

run_environment(
    "notification_service",
    Base.metadata,
    "NOTIFICATION_DATABASE_URL",
    Settings().notification_database_url,
)
