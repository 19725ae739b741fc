"""flash sale allocation: the inventory holds a sale's units; the sale closes when it ends

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 00:50:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("flash_sales", schema=None) as batch_op:
        batch_op.add_column(sa.Column("requested_quota", sa.Integer(), nullable=True))
        # Sales made before this revision had no allocation: they count as held.
        batch_op.add_column(
            sa.Column("allocation", sa.String(length=10), server_default="held", nullable=False)
        )
        batch_op.add_column(sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_flash_sales_ends_at"), ["ends_at"], unique=False)
    op.execute("UPDATE flash_sales SET requested_quota = quota")
    with op.batch_alter_table("flash_sales", schema=None) as batch_op:
        batch_op.alter_column("requested_quota", existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column("allocation", existing_type=sa.String(length=10), server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("flash_sales", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_flash_sales_ends_at"))
        batch_op.drop_column("closed_at")
        batch_op.drop_column("allocation")
        batch_op.drop_column("requested_quota")
