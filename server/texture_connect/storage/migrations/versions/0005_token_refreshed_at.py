"""when a connection's tokens were last refreshed

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("manufacturer_connections", schema=None) as batch_op:
        batch_op.add_column(sa.Column("token_refreshed_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("manufacturer_connections", schema=None) as batch_op:
        batch_op.drop_column("token_refreshed_at")
