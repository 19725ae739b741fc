"""the unsent outbox rows' own index: the relay's claim walks it and stops after a batch

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 16:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

UNSENT = sa.text("sent_at IS NULL")


def upgrade() -> None:
    op.create_index(
        "ix_order_outbox_unsent",
        "order_outbox",
        ["id"],
        sqlite_where=UNSENT,
        postgresql_where=UNSENT,
    )


def downgrade() -> None:
    op.drop_index("ix_order_outbox_unsent", table_name="order_outbox")
