"""the unsent outbox rows' own index: the relay's claim walks it and stops after a batch

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 16:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UNSENT = sa.text("sent_at IS NULL")


def upgrade() -> None:
    op.create_index(
        "ix_coupon_outbox_unsent",
        "coupon_outbox",
        ["id"],
        sqlite_where=UNSENT,
        postgresql_where=UNSENT,
    )


def downgrade() -> None:
    op.drop_index("ix_coupon_outbox_unsent", table_name="coupon_outbox")
