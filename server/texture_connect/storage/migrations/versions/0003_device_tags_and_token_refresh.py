"""device tags, token refresh bookkeeping, connection status width, listing indexes

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 16:15:58.390351

Tags move from the ``devices.tags`` JSON list to ``device_tags`` (one row per tag), so
ListDevices can filter by tag with an index and tags can be added and removed one by one.
The data moves with them, both ways. ``manufacturer_connections.status`` widens to hold
"needs_reauthorization".

SQLite: widening a column (and making one NOT NULL) rebuilds the table (copy, drop,
rename), which ``Database.migrate`` allows by running migrations with foreign keys off
and checking them before commit. Dropping a column needs no rebuild on SQLite 3.35+
(``ALTER TABLE ... DROP COLUMN``), so ``devices.tags`` is dropped in place rather than
copying the largest table.
"""

from __future__ import annotations

from typing import Any, Literal

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BATCH = 1000

_devices = sa.table("devices", sa.column("id", sa.String), sa.column("tags", sa.JSON))


def _in_place() -> Literal["auto", "never"]:
    """``recreate`` for batch operations that SQLite can do with a plain ALTER TABLE."""
    bind = op.get_bind()
    if bind.dialect.name == "sqlite" and (bind.dialect.server_version_info or ()) < (3, 35):
        return "auto"
    return "never"


def _distinct_tags(value: Any) -> list[str]:
    return list(dict.fromkeys(str(tag) for tag in value or () if tag))


def upgrade() -> None:
    device_tags = op.create_table(
        "device_tags",
        sa.Column("device_id", sa.String(length=32), nullable=False),
        sa.Column("tag", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_device_tags_device_id_devices")
        ),
        sa.PrimaryKeyConstraint("device_id", "tag", name=op.f("pk_device_tags")),
    )
    with op.batch_alter_table("device_tags", schema=None) as batch_op:
        batch_op.create_index("ix_device_tags_tag", ["tag", "device_id"], unique=False)

    # Move the tags, a batch of devices at a time.
    bind = op.get_bind()
    last_id = ""
    while True:
        rows = bind.execute(
            sa.select(_devices.c.id, _devices.c.tags)
            .where(_devices.c.id > last_id)
            .order_by(_devices.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        values = [
            {"device_id": row.id, "tag": tag} for row in rows for tag in _distinct_tags(row.tags)
        ]
        if values:
            bind.execute(device_tags.insert(), values)
        last_id = rows[-1].id

    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.create_index(
            "ix_customers_org_created", ["organization_id", "created_at", "id"], unique=False
        )

    with op.batch_alter_table("devices", schema=None, recreate=_in_place()) as batch_op:
        batch_op.create_index(
            "ix_devices_org_created", ["organization_id", "created_at", "id"], unique=False
        )
        batch_op.drop_column("tags")

    with op.batch_alter_table("manufacturer_connections", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("token_generation", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("refresh_claimed_at", sa.DateTime(), nullable=True))
        batch_op.alter_column(
            "status",
            existing_type=sa.String(length=16),
            type_=sa.String(length=32),
            existing_nullable=False,
        )


def downgrade() -> None:
    # 0002 knew no such status (and its column cannot hold it) and never refreshed: such a
    # connection goes back to active; once upgraded again, its next refused refresh marks
    # it anew.
    connections = sa.table("manufacturer_connections", sa.column("status", sa.String))
    op.get_bind().execute(
        connections.update()
        .where(connections.c.status == "needs_reauthorization")
        .values(status="active")
    )
    with op.batch_alter_table("manufacturer_connections", schema=None) as batch_op:
        batch_op.alter_column(
            "status",
            existing_type=sa.String(length=32),
            type_=sa.String(length=16),
            existing_nullable=False,
        )
        batch_op.drop_column("refresh_claimed_at")
        batch_op.drop_column("token_generation")

    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_index("ix_devices_org_created")
        batch_op.add_column(sa.Column("tags", sa.JSON(), nullable=True))

    # Put the tags back on their devices (sorted: the original order is not kept).
    bind = op.get_bind()
    device_tags = sa.table("device_tags", sa.column("device_id"), sa.column("tag"))
    bind.execute(_devices.update().values(tags=[]))
    tags: dict[str, list[str]] = {}
    for row in bind.execute(
        sa.select(device_tags.c.device_id, device_tags.c.tag).order_by(
            device_tags.c.device_id, device_tags.c.tag
        )
    ):
        tags.setdefault(row.device_id, []).append(row.tag)
    restore = (
        _devices.update()
        .where(_devices.c.id == sa.bindparam("b_id"))
        .values(tags=sa.bindparam("b_tags", type_=sa.JSON))
    )
    items = [{"b_id": device_id, "b_tags": values} for device_id, values in tags.items()]
    for start in range(0, len(items), BATCH):
        bind.execute(restore, items[start : start + BATCH])

    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_index("ix_customers_org_created")

    with op.batch_alter_table("device_tags", schema=None) as batch_op:
        batch_op.drop_index("ix_device_tags_tag")

    op.drop_table("device_tags")

    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.alter_column("tags", existing_type=sa.JSON(), nullable=False)
