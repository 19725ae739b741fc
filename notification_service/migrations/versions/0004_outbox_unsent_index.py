"""the unsent outbox rows' own index: the relay's claim walks it and stops after a batch

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 16:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UNSENT = sa.text("sent_at IS NULL")


def upgrade() -> None:
    op.create_index(
        "ix_notification_outbox_unsent",
        "notification_outbox",
        ["id"],
        sqlite_where=UNSENT,
        postgresql_where=UNSENT,
    )


def downgrade() -> None:
    op.drop_index("ix_notification_outbox_unsent", table_name="notification_outbox")
