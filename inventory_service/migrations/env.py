"""Alembic environment of the inventory service (its own history and version table)."""

from inventory_service.service import SERVICE
from messaging.migrations import run_environment

run_environment(SERVICE)
