"""Engines, transactions and migrations for SQLite (aiosqlite) and PostgreSQL (asyncpg).

``TEXTURE_DATABASE_URL`` is ``sqlite:///PATH`` or ``postgresql://USER@HOST:PORT/DB``.
SQLite runs in WAL mode; in-process writers are serialized by a lock (SQLite allows one
writer at a time) and take the write lock up front with ``BEGIN IMMEDIATE``, so a
transaction never fails half-way upgrading a read lock. PostgreSQL runs at READ
COMMITTED; rules that must hold across replicas use unique constraints and row claims.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


class DatabaseURLError(ValueError):
    pass


@dataclass(frozen=True)
class DatabaseTarget:
    engine_url: str
    dialect: str  # "sqlite" or "postgresql"
    sqlite_path: Path | None = None
    # PostgreSQL schema to use instead of "public" (tests isolate themselves this way).
    schema: str | None = None


def parse_database_url(url: str, schema: str | None = None) -> DatabaseTarget:
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        return DatabaseTarget(f"sqlite+aiosqlite:///{path}", "sqlite", sqlite_path=path)
    for prefix in ("postgresql://", "postgres://", "postgresql+asyncpg://"):
        if url.startswith(prefix):
            rest = url.removeprefix(prefix)
            return DatabaseTarget(f"postgresql+asyncpg://{rest}", "postgresql", schema=schema)
    raise DatabaseURLError(
        "TEXTURE_DATABASE_URL must start with sqlite:/// or postgresql:// "
        "(for example sqlite:///var/texture.db)"
    )


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's begin event issue BEGIN itself (pysqlite's implicit BEGIN would be
    # DEFERRED); then set the pragmas every connection needs.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _on_sqlite_begin(connection: sa.Connection) -> None:
    if connection.get_execution_options().get("texture_write"):
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        connection.exec_driver_sql("BEGIN")


class Database:
    """An engine plus the knowledge of how to open transactions on it."""

    def __init__(self, target: DatabaseTarget, *, pool_size: int = 8) -> None:
        self.target = target
        if target.dialect == "sqlite":
            assert target.sqlite_path is not None
            target.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
            self.engine: AsyncEngine = create_async_engine(
                target.engine_url, pool_size=pool_size, max_overflow=0
            )
            event.listen(self.engine.sync_engine, "connect", _on_sqlite_connect)
            event.listen(self.engine.sync_engine, "begin", _on_sqlite_begin)
        else:
            connect_args: dict[str, Any] = {}
            if target.schema:
                connect_args["server_settings"] = {"search_path": target.schema}
            self.engine = create_async_engine(
                target.engine_url,
                pool_size=pool_size,
                max_overflow=4,
                pool_pre_ping=True,
                connect_args=connect_args,
            )
        self._write_lock = asyncio.Lock() if target.dialect == "sqlite" else None

    @property
    def dialect(self) -> str:
        return self.target.dialect

    @contextlib.asynccontextmanager
    async def connect(self, *, write: bool) -> AsyncIterator[AsyncConnection]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        lock = self._write_lock if write else None
        if lock is not None:
            await lock.acquire()
        try:
            async with self.engine.connect() as connection:
                if write:
                    connection = await connection.execution_options(texture_write=True)
                async with connection.begin():
                    yield connection
        finally:
            if lock is not None:
                lock.release()

    async def close(self) -> None:
        await self.engine.dispose()

    async def create_schema_if_needed(self) -> None:
        if self.target.dialect == "postgresql" and self.target.schema:
            admin = create_async_engine(self.target.engine_url)
            try:
                async with admin.begin() as connection:
                    await connection.execute(
                        sa.text(f'CREATE SCHEMA IF NOT EXISTS "{self.target.schema}"')
                    )
            finally:
                await admin.dispose()

    # Migrations -------------------------------------------------------------------------

    @staticmethod
    def _alembic_config() -> Config:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        return config

    @classmethod
    def head_revision(cls) -> str | None:
        return ScriptDirectory.from_config(cls._alembic_config()).get_current_head()

    async def current_revision(self) -> str | None:
        async with self.engine.connect() as connection:
            return await connection.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision()
            )

    async def migrate(self, revision: str = "head") -> None:
        await self.create_schema_if_needed()
        config = self._alembic_config()

        def upgrade(sync_connection: sa.Connection) -> None:
            config.attributes["connection"] = sync_connection
            command.upgrade(config, revision)

        async with self.engine.begin() as connection:
            await connection.run_sync(upgrade)

    async def is_migrated(self) -> bool:
        return await self.current_revision() == self.head_revision()
