"""outbox claims: a relay leases the rows it publishes instead of holding a transaction open

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 00:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("order_outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("order_outbox", schema=None) as batch_op:
        batch_op.drop_column("claimed_until")
