"""Shared fixtures: real databases and real gRPC servers on ephemeral ports.

Why not pytest-grpc: its fixtures build a synchronous ``grpc.server`` and cannot host our
``grpc.aio`` servicers (and its fake-server mode fails on current generated code). These
pytest-asyncio fixtures start the real ``grpc.aio`` server from ``create_grpc_server`` on
127.0.0.1 port 0 and talk to it over TCP with the generated stubs.

Every storage-backed fixture runs on both engines: SQLite files under tmp_path and
PostgreSQL (``TEXTURE_TEST_POSTGRES_URL``, default the local server's ``test`` database),
each test in a schema of its own. With CI=true an unreachable PostgreSQL fails the run.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from texture.connect.v1 import connection_pb2_grpc
from texture_connect.app import GrpcApp, catalog_for, create_grpc_server
from texture_connect.cli import create_key, create_organization
from texture_connect.config import Settings
from texture_connect.crypto import Sealer, new_encryption_key
from texture_connect.domain.keys import KeyKind
from texture_connect.domain.records import Organization
from texture_connect.storage import Store, open_store

POSTGRES_URL = os.environ.get(
    "TEXTURE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() == "true"


async def _postgres_reachable() -> str | None:
    engine = create_async_engine(POSTGRES_URL.replace("postgresql://", "postgresql+asyncpg://"))
    try:
        async with engine.connect() as connection:
            await connection.execute(sa.text("select 1"))
        return None
    except Exception as exc:  # any failure to connect means "not reachable"
        return f"{type(exc).__name__}: {exc}"
    finally:
        await engine.dispose()


_postgres_problem: list[str | None] = []


async def require_postgres() -> None:
    if not _postgres_problem:
        _postgres_problem.append(await _postgres_reachable())
    problem = _postgres_problem[0]
    if problem is None:
        return
    message = f"PostgreSQL at {POSTGRES_URL} is unreachable ({problem})"
    if IN_CI:
        pytest.fail(message + "; CI=true requires it", pytrace=False)
    pytest.skip(message)


class ManualClock:
    """A clock tests move by hand, so expiry needs no sleeping."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def database_url(engine_name: str, tmp_path: Path) -> AsyncIterator[tuple[str, str | None]]:
    """(url, schema): a fresh, empty database for one test."""
    if engine_name == "sqlite":
        yield f"sqlite:///{tmp_path / 'texture.db'}", None
        return
    await require_postgres()
    schema = "t_" + secrets.token_hex(6)
    yield POSTGRES_URL, schema
    engine = create_async_engine(POSTGRES_URL.replace("postgresql://", "postgresql+asyncpg://"))
    try:
        async with engine.begin() as connection:
            await connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        await engine.dispose()


@pytest.fixture
async def store(database_url: tuple[str, str | None]) -> AsyncIterator[Store]:
    url, schema = database_url
    store = open_store(url, schema=schema)
    await store.database.migrate()
    yield store
    await store.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env(
        {
            "TEXTURE_DATA_DIR": str(tmp_path / "data"),
            "TEXTURE_PUBLIC_URL": "https://connect.test",
            "TEXTURE_SESSION_TTL": "1800",
        }
    )


@pytest.fixture
def sealer() -> Sealer:
    return Sealer([new_encryption_key()])


@dataclass
class Org:
    organization: Organization
    secret_key: str
    connect_key: str

    @property
    def id(self) -> str:
        return self.organization.id

    @property
    def secret(self) -> tuple[tuple[str, str]]:
        return (("texture-api-key", self.secret_key),)

    @property
    def connect(self) -> tuple[tuple[str, str]]:
        return (("texture-api-key", self.connect_key),)


OrgFactory = Callable[..., Awaitable[Org]]


@pytest.fixture
def make_org(store: Store) -> OrgFactory:
    async def make(name: str = "Energy Coffee", headless: bool = True) -> Org:
        organization = await create_organization(store, name, headless)
        _, secret = await create_key(store, organization.id, KeyKind.SECRET)
        _, connect = await create_key(store, organization.id, KeyKind.CONNECT)
        return Org(organization, secret, connect)

    return make


@pytest.fixture
async def org(make_org: OrgFactory) -> Org:
    return await make_org()


@pytest.fixture
async def grpc_app(
    store: Store, settings: Settings, sealer: Sealer, clock: ManualClock
) -> AsyncIterator[GrpcApp]:
    app = await create_grpc_server(
        store=store,
        catalog=catalog_for(settings),
        sealer=sealer,
        settings=settings,
        internal_key_value="tx_ik_test-internal-credential",
        clock=clock,
    )
    yield app
    await app.stop(grace=0)


@pytest.fixture
async def channel(grpc_app: GrpcApp) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_app.port}") as channel:
        yield channel


@pytest.fixture
def connections(channel: grpc.aio.Channel) -> connection_pb2_grpc.ConnectionServiceStub:
    return connection_pb2_grpc.ConnectionServiceStub(channel)
