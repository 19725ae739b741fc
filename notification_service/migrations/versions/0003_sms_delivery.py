"""sms delivery state: the consumer stores an SMS PENDING, a sender delivers it and records
SENT or FAILED; the SMS already there were sent inside the consumer, so they become SENT

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 01:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

NEW_COLUMNS = ("status", "created_at", "next_attempt_at", "attempts", "last_error")


def upgrade() -> None:
    with op.batch_alter_table("sms_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("status", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("created_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("attempts", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("last_error", sa.Text(), nullable=True))
    op.execute(
        "UPDATE sms_messages SET status = 'SENT', created_at = sent_at, "
        "next_attempt_at = sent_at, attempts = 0"
    )
    with op.batch_alter_table("sms_messages", schema=None) as batch_op:
        for name in ("status", "created_at", "next_attempt_at", "attempts"):
            batch_op.alter_column(name, nullable=False)
        batch_op.alter_column("sent_at", nullable=True)
        batch_op.create_index("ix_sms_messages_due", ["status", "next_attempt_at"], unique=False)


def downgrade() -> None:
    # An SMS not sent yet has no sent_at: it is dropped, as the old schema cannot hold it.
    op.execute("DELETE FROM sms_messages WHERE sent_at IS NULL")
    with op.batch_alter_table("sms_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_sms_messages_due")
        batch_op.alter_column("sent_at", nullable=False)
        for name in NEW_COLUMNS:
            batch_op.drop_column(name)
