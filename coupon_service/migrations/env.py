"""Alembic environment of the coupon service (its own history and version table)."""

from coupon_service.service import SERVICE
from messaging.migrations import run_environment

run_environment(SERVICE)
