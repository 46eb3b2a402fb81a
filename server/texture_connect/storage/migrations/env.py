"""Alembic environment. Migrations run on a connection the caller hands over in
``config.attributes["connection"]`` (see ``texture_connect.storage.migrate``), so the same
code path serves the CLI, the tests and both engines."""

from __future__ import annotations

from alembic import context

from texture_connect.storage.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `texture-connect migrate`")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
