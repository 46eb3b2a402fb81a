"""Connected devices on two ``texture-connect serve`` replicas of one PostgreSQL database.

Token refreshes are claimed in the database, so concurrent reads of one connection on both
replicas never refresh in parallel; a connection's state (needing re-authorization,
disconnected, revoked keys, tags) is the database's, so each replica sees what the other
did. Both replicas use the first one's sandbox (30-second access tokens: every first read
refreshes) and stand behind its public URL, as in test_scale_out.py.

Each test gets a database of its own, dropped afterwards. With CI=true an unreachable
PostgreSQL fails the test; otherwise it is skipped.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import grpc
import httpx
import pytest
from e2e_support import (
    HEADLESS_BODY,
    OrgKeys,
    Server,
    authorize,
    create_connection,
    make_org,
    query_of,
)
from support import RichError, rich_error

from texture.connect.v1 import (
    devices_pb2,
    devices_pb2_grpc,
    manufacturer_connections_pb2,
    manufacturer_connections_pb2_grpc,
)
from texture_connect.crypto import new_encryption_key

ADMIN_URL = os.environ.get("TEXTURE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"
TIMEOUT = 30.0

ACTIVE = manufacturer_connections_pb2.MANUFACTURER_CONNECTION_STATUS_ACTIVE
NEEDS_REAUTHORIZATION = (
    manufacturer_connections_pb2.MANUFACTURER_CONNECTION_STATUS_NEEDS_REAUTHORIZATION
)
DISCONNECTED = manufacturer_connections_pb2.MANUFACTURER_CONNECTION_STATUS_DISCONNECTED


@pytest.fixture
async def postgres_database() -> AsyncIterator[str]:
    """The URL of a fresh, empty PostgreSQL database, dropped at teardown."""
    try:
        admin = await asyncpg.connect(ADMIN_URL, timeout=10)
    except Exception as exc:  # any failure to connect means "not reachable"
        message = f"PostgreSQL at {ADMIN_URL} is unreachable ({type(exc).__name__}: {exc})"
        if IN_CI:
            pytest.fail(message + "; CI=true requires it", pytrace=False)
        pytest.skip(message)
    name = "t_" + secrets.token_hex(6)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield urlunsplit(urlsplit(ADMIN_URL)._replace(path=f"/{name}"))
    admin = await asyncpg.connect(ADMIN_URL, timeout=10)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@dataclass
class Cluster:
    first: Server
    second: Server
    org: OrgKeys

    @property
    def replicas(self) -> tuple[Server, Server]:
        return self.first, self.second


@pytest.fixture
def cluster(postgres_database: str, serve: Callable[..., Server]) -> Cluster:
    """Two replicas on one database. Requesting ``postgres_database`` before ``serve``
    makes the servers stop before the database is dropped."""
    shared = {
        "TEXTURE_ENCRYPTION_KEY": new_encryption_key(),
        "TEXTURE_INTERNAL_KEY": "tx_ik_" + secrets.token_urlsafe(32),
        "TEXTURE_SANDBOX_TOKEN_TTL": "30",
    }
    first = serve(postgres_database, **shared)
    second = serve(
        postgres_database,
        migrate=False,
        TEXTURE_PUBLIC_URL=first.http_url,
        TEXTURE_SANDBOX_URL=f"{first.http_url}/sandbox",
        **shared,
    )
    return Cluster(first, second, make_org(first.env))


@pytest.fixture
async def browser() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(follow_redirects=False, timeout=TIMEOUT) as client:
        yield client


# ---------------------------------------------------------------------------------- helpers


@dataclass
class Api:
    devices: devices_pb2_grpc.DeviceServiceStub
    connections: manufacturer_connections_pb2_grpc.ManufacturerConnectionServiceStub


def api_on(channel: grpc.aio.Channel) -> Api:
    return Api(
        devices_pb2_grpc.DeviceServiceStub(channel),
        manufacturer_connections_pb2_grpc.ManufacturerConnectionServiceStub(channel),
    )


def auth(key: str) -> tuple[tuple[str, str]]:
    return (("texture-api-key", key),)


async def error_of(call: Awaitable[Any]) -> RichError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return rich_error(caught.value)


async def assert_error(call: Awaitable[Any], code: grpc.StatusCode, reason: str) -> None:
    error = await error_of(call)
    assert (error.code, error.reason) == (code, reason), error


def headless_body(**changes: Any) -> dict[str, Any]:
    info = {**HEADLESS_BODY["customerInfo"], "email": f"jane+{secrets.token_hex(6)}@example.com"}
    return {**HEADLESS_BODY, "customerInfo": info, **changes}


async def connect(
    browser: httpx.AsyncClient,
    via: Server,
    org: OrgKeys,
    body: dict[str, Any],
    user: str,
) -> tuple[str, str]:
    """A complete headless flow started on ``via``; the callback lands on the public URL
    (the first replica). Returns (customer id, scoped key)."""
    created = await create_connection(via, org, body)
    callback_url = await authorize(browser, created.authorization.url, user)
    response = await browser.get(callback_url)
    assert response.status_code == 302, response.text
    params = query_of(response.headers["location"])
    assert "texture_error" not in params, params
    return created.customer_id, params["texture_scoped_key"]


async def sandbox_stats(browser: httpx.AsyncClient, cluster: Cluster) -> tuple[int, int]:
    response = await browser.get(f"{cluster.first.http_url}/sandbox/_stats")
    assert response.status_code == 200
    stats = response.json()
    return (
        int(stats["refresh_grants"].get("tesla", 0)),
        int(stats["token_requests"].get("tesla", 0)),
    )


async def devices_of(api: Api, key: str, **filters: str) -> list[devices_pb2.Device]:
    reply = await api.devices.ListDevices(
        devices_pb2.ListDevicesRequest(page_size=100, **filters), metadata=auth(key)
    )
    return list(reply.devices)


async def state_of(api: Api, key: str, device_id: str) -> devices_pb2.DeviceState:
    reply = await api.devices.GetDeviceState(
        devices_pb2.GetDeviceStateRequest(device_id=device_id), metadata=auth(key), timeout=TIMEOUT
    )
    return reply.state


async def connection_status(api: Api, org: OrgKeys, connection_id: str) -> int:
    reply = await api.connections.GetManufacturerConnection(
        manufacturer_connections_pb2.GetManufacturerConnectionRequest(
            manufacturer_connection_id=connection_id
        ),
        metadata=org.metadata,
    )
    return int(reply.manufacturer_connection.status)


# ------------------------------------------------------------------------------------ tests


@pytest.mark.postgres
async def test_concurrent_reads_on_both_replicas_never_refresh_in_parallel(
    cluster: Cluster, browser: httpx.AsyncClient
) -> None:
    """Ten concurrent reads of one connection whose token needs a refresh, spread over
    both replicas: all succeed and the connection stays active. The sandbox rotates
    refresh tokens, so two refreshes in parallel would present one refresh token twice and
    the second would be refused (a token request without a grant, and the connection
    marked as needing re-authorization)."""
    _, key = await connect(browser, cluster.first, cluster.org, headless_body(), "user_good")
    async with cluster.first.channel() as one, cluster.second.channel() as two:
        apis = (api_on(one), api_on(two))
        devices = await devices_of(apis[0], key)
        assert len(devices) == 2
        grants, requests = await sandbox_stats(browser, cluster)
        states = await asyncio.gather(
            *(state_of(apis[i % 2], key, devices[(i // 2) % 2].id) for i in range(10))
        )
        for state, i in zip(states, range(10), strict=True):
            assert state.device_id == devices[(i // 2) % 2].id
            assert state.WhichOneof("state") == state.type
        new_grants, new_requests = await sandbox_stats(browser, cluster)
        assert new_grants > grants
        assert new_requests - requests == new_grants - grants, "a refresh was refused"
        for api in apis:
            status = await connection_status(
                api, cluster.org, devices[0].manufacturer_connection_id
            )
            assert status == ACTIVE


@pytest.mark.postgres
async def test_each_replica_sees_what_the_other_did(
    cluster: Cluster, browser: httpx.AsyncClient
) -> None:
    first, second, org = cluster.first, cluster.second, cluster.org
    customer_id, revoked_key = await connect(
        browser, first, org, headless_body(), "user_refresh_revoked"
    )
    async with first.channel() as one, second.channel() as two:
        on_first, on_second = api_on(one), api_on(two)
        devices = await devices_of(on_first, org.secret_key, customer_id=customer_id)
        connection_id = devices[0].manufacturer_connection_id

        # A refresh refused through the second replica: the first knows without asking.
        await assert_error(
            on_second.devices.GetDeviceState(
                devices_pb2.GetDeviceStateRequest(device_id=devices[0].id),
                metadata=auth(revoked_key),
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
            "CONNECTION_NEEDS_REAUTHORIZATION",
        )
        stats = await sandbox_stats(browser, cluster)
        await assert_error(
            on_first.devices.GetDeviceState(
                devices_pb2.GetDeviceStateRequest(device_id=devices[1].id),
                metadata=org.metadata,
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
            "CONNECTION_NEEDS_REAUTHORIZATION",
        )
        assert await sandbox_stats(browser, cluster) == stats
        assert await connection_status(on_first, org, connection_id) == NEEDS_REAUTHORIZATION

        # Repaired through a session created on the second replica: the same connection.
        body = {
            "mode": "CONNECT_MODE_HEADLESS",
            "manufacturerFilters": {"manufacturers": ["tesla"]},
            "customerId": customer_id,
            "redirectUrl": HEADLESS_BODY["redirectUrl"],
        }
        repaired_customer, key = await connect(browser, second, org, body, "user_good")
        assert repaired_customer == customer_id
        assert await connection_status(on_first, org, connection_id) == ACTIVE
        good = [d for d in await devices_of(on_second, key) if d.id not in {x.id for x in devices}]
        assert {d.type for d in good} == {"battery", "thermostat"}
        state = await state_of(on_first, key, good[0].id)
        assert state.WhichOneof("state") == good[0].type

        # Tags added on one replica filter on the other.
        tag = "fleet-" + secrets.token_hex(3)
        await on_first.devices.AddDeviceTags(
            devices_pb2.AddDeviceTagsRequest(device_id=good[0].id, tags=[tag]),
            metadata=org.metadata,
        )
        assert [d.id for d in await devices_of(on_second, org.secret_key, tag=tag)] == [good[0].id]

        # Disconnected on the second replica: the first refuses the key and the reads.
        reply = await on_second.connections.DisconnectManufacturerConnection(
            manufacturer_connections_pb2.DisconnectManufacturerConnectionRequest(
                manufacturer_connection_id=connection_id
            ),
            metadata=org.metadata,
        )
        assert reply.manufacturer_connection.status == DISCONNECTED
        await assert_error(
            on_first.devices.ListDevices(devices_pb2.ListDevicesRequest(), metadata=auth(key)),
            grpc.StatusCode.UNAUTHENTICATED,
            "API_KEY_INVALID",
        )
        await assert_error(
            on_first.devices.GetDeviceState(
                devices_pb2.GetDeviceStateRequest(device_id=good[0].id), metadata=org.metadata
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
            "CONNECTION_DISCONNECTED",
        )
        again = await on_first.connections.DisconnectManufacturerConnection(
            manufacturer_connections_pb2.DisconnectManufacturerConnectionRequest(
                manufacturer_connection_id=connection_id
            ),
            metadata=org.metadata,
        )
        assert again.manufacturer_connection == reply.manufacturer_connection
