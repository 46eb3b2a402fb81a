"""hosted flow state on connect sessions

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("connect_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("link_token_sealed", sa.LargeBinary(), nullable=True))
        batch_op.add_column(
            sa.Column("flow_step", sa.String(length=32), nullable=False, server_default="welcome")
        )
        batch_op.add_column(
            sa.Column("flow_manufacturer", sa.String(length=64), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column("flow_error", sa.String(length=64), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("pending_tokens_sealed", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("pending_devices", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("otp_challenge_sealed", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("connect_sessions", schema=None) as batch_op:
        for column in (
            "otp_challenge_sealed",
            "pending_devices",
            "pending_tokens_sealed",
            "flow_error",
            "flow_manufacturer",
            "flow_step",
            "link_token_sealed",
        ):
            batch_op.drop_column(column)
