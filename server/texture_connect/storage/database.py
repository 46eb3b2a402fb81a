"""Engines, transactions and migrations for SQLite (aiosqlite) and PostgreSQL (asyncpg).

``TEXTURE_DATABASE_URL`` is ``sqlite:///PATH`` or ``postgresql://USER@HOST:PORT/DB``.
SQLite runs in WAL mode; in-process writers queue on one writer thread (SQLite allows one
writer at a time) and take the write lock up front with ``BEGIN IMMEDIATE``, so a
transaction never fails half-way upgrading a read lock, even with several processes.
PostgreSQL runs at READ COMMITTED; rules that must hold across replicas use unique
constraints and row claims.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

T = TypeVar("T")
MIGRATIONS_DIR = Path(__file__).parent / "migrations"


class DatabaseURLError(ValueError):
    pass


@dataclass(frozen=True)
class DatabaseTarget:
    engine_url: str = field(repr=False)  # may carry a password
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


def _raw_sqlite(connection: sa.Connection) -> Any:
    """The driver's own connection, in autocommit: for pragmas that must run outside any
    transaction (SQLAlchemy would begin one around exec_driver_sql)."""
    return connection.connection.driver_connection


def _on_sqlite_begin(connection: sa.Connection) -> None:
    if connection.get_execution_options().get("texture_write"):
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        connection.exec_driver_sql("BEGIN")


class Database:
    """An engine plus the knowledge of how to run a unit of work on it.

    SQLite: a synchronous engine (the stdlib driver) used from threads: one writer thread,
    so in-process writers queue without contention, and a few reader threads (WAL lets
    them read while the writer writes). PostgreSQL: asyncpg, with the unit of work run
    through SQLAlchemy's greenlet bridge."""

    def __init__(self, target: DatabaseTarget, *, pool_size: int = 8) -> None:
        self.target = target
        self._sync_engine: sa.Engine | None = None
        self._async_engine: AsyncEngine | None = None
        if target.dialect == "sqlite":
            assert target.sqlite_path is not None
            target.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
            self._sync_engine = sa.create_engine(
                f"sqlite:///{target.sqlite_path}",
                pool_size=pool_size,
                max_overflow=0,
                connect_args={"check_same_thread": False},
                # Errors are logged: their SQL parameters (emails, addresses) must not be.
                hide_parameters=True,
            )
            event.listen(self._sync_engine, "connect", _on_sqlite_connect)
            event.listen(self._sync_engine, "begin", _on_sqlite_begin)
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
            self._readers = ThreadPoolExecutor(
                max(1, pool_size // 2), thread_name_prefix="sqlite-reader"
            )
        else:
            connect_args: dict[str, Any] = {}
            if target.schema:
                connect_args["server_settings"] = {"search_path": target.schema}
            self._async_engine = create_async_engine(
                target.engine_url,
                pool_size=pool_size,
                max_overflow=4,
                pool_pre_ping=True,
                hide_parameters=True,
                connect_args=connect_args,
            )

    @property
    def dialect(self) -> str:
        return self.target.dialect

    async def run(
        self, work: Callable[[sa.Connection], T], *, write: bool, migration: bool = False
    ) -> T:
        """Runs ``work`` inside one transaction: committed when it returns, rolled back
        if it raises."""
        if self._sync_engine is not None:
            engine = self._sync_engine

            def job() -> T:
                with engine.connect() as connection:
                    if write:
                        connection.execution_options(texture_write=True)
                    if migration:
                        # Batch migrations rebuild tables (copy, drop, rename); SQLite would
                        # refuse the drop while rows reference it. The pragma cannot change
                        # inside a transaction, so it is turned off around it, and the
                        # result is checked before the transaction commits.
                        _raw_sqlite(connection).execute("PRAGMA foreign_keys=OFF")
                    try:
                        with connection.begin():
                            result = work(connection)
                            if migration:
                                problems = connection.exec_driver_sql(
                                    "PRAGMA foreign_key_check"
                                ).fetchall()
                                if problems:
                                    raise RuntimeError(f"migration broke references: {problems}")
                            return result
                    finally:
                        if migration:
                            _raw_sqlite(connection).execute("PRAGMA foreign_keys=ON")

            executor = self._writer if write else self._readers
            return await asyncio.get_running_loop().run_in_executor(executor, job)
        assert self._async_engine is not None
        async with self._async_engine.connect() as connection, connection.begin():
            return await connection.run_sync(work)

    async def close(self) -> None:
        if self._sync_engine is not None:
            self._writer.shutdown(wait=True)
            self._readers.shutdown(wait=True)
            self._sync_engine.dispose()
        if self._async_engine is not None:
            await self._async_engine.dispose()

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
        return await self.run(
            lambda c: MigrationContext.configure(c).get_current_revision(), write=False
        )

    async def migrate(self, revision: str = "head") -> None:
        await self.create_schema_if_needed()
        config = self._alembic_config()

        def upgrade(connection: sa.Connection) -> None:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)

        await self.run(upgrade, write=True, migration=True)

    async def downgrade(self, revision: str) -> None:
        config = self._alembic_config()

        def downgrade(connection: sa.Connection) -> None:
            config.attributes["connection"] = connection
            command.downgrade(config, revision)

        await self.run(downgrade, write=True, migration=True)

    async def is_migrated(self) -> bool:
        return await self.current_revision() == self.head_revision()
