"""flash sale allocations: units set aside for a sale's winners

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 00:50:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inventory_allocations",
        sa.Column("sale_id", sa.String(length=36), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("requested", sa.Integer(), nullable=False),
        sa.Column("units", sa.Integer(), nullable=False),
        sa.Column("taken", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("taken <= units", name="allocation_never_overdrawn"),
        sa.PrimaryKeyConstraint("sale_id"),
    )


def downgrade() -> None:
    op.drop_table("inventory_allocations")
