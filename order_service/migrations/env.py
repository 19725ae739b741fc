"""Alembic environment of the order service (its own history and version table)."""

from messaging.migrations import run_environment
from order_service.service import SERVICE

run_environment(SERVICE)
