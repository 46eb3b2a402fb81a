"""Storage: one interface (``Store`` / ``Transaction``) over SQLite and PostgreSQL."""

from texture_connect.storage.database import Database, DatabaseURLError, parse_database_url
from texture_connect.storage.store import (
    IdempotencyConflict,
    NewSession,
    Store,
    Transaction,
)

__all__ = [
    "Database",
    "DatabaseURLError",
    "IdempotencyConflict",
    "NewSession",
    "Store",
    "Transaction",
    "parse_database_url",
]


def open_store(url: str, *, schema: str | None = None, pool_size: int = 8) -> Store:
    return Store(Database(parse_database_url(url, schema), pool_size=pool_size))
