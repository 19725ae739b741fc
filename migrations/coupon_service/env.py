"""Alembic environment of the coupon service (its own history and version table)."""

from coupon_service.models import Base
from messaging.migrations import run_environment
from messaging.settings import Settings

run_environment(
    "coupon_service", Base.metadata, "COUPON_DATABASE_URL", Settings().coupon_database_url
)
