"""Alembic environment of the notification service (its own history and version table)."""

from messaging.migrations import run_environment
from notification_service.service import SERVICE

run_environment(SERVICE)
