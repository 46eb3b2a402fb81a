"""Using what was connected, end to end: the real ``texture-connect serve --sandbox`` process,
real OAuth round trips against the sandbox manufacturer, and the generated stubs over real
gRPC (issue 5).

Scoped-key isolation (between two customers of one organization and between two
organizations), what each kind of key may call, secret-key filters and pagination across
page boundaries, tags, customers and sites, live state per device type, token refresh
(counted at the sandbox's token endpoint through ``/sandbox/_stats``), a refused refresh
and its repair, disconnect, scoped-key revocation, and tokens encrypted at rest with key
rotation.

Most tests share one server per configuration (module scope); each uses customers of its
own (unique emails), or an organization of its own when it needs to know every record of
the organization. Tests that need the manufacturer to misbehave, or a read held in flight,
put a gate (a reverse proxy in this process) between the server and its sandbox.
Nothing sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from asgi_server import serving
from e2e_support import (
    HEADLESS_BODY,
    OrgKeys,
    Server,
    authorize,
    cli,
    create_connection,
    make_org,
    query_of,
    server_env,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from support import RichError, rich_error

from texture.connect.v1 import (
    connection_pb2,
    connection_pb2_grpc,
    customers_pb2,
    customers_pb2_grpc,
    devices_pb2,
    devices_pb2_grpc,
    manufacturer_connections_pb2,
    manufacturer_connections_pb2_grpc,
)
from texture_connect.crypto import DecryptionError, Sealer, new_encryption_key
from texture_connect.services.token_access import token_context

APP_URL = "https://yourapp.com/oauth/callback"
TIMEOUT = 30.0
DOMAIN = "connect.texturehq.com"
# What the sandbox users own (README, "The sandbox manufacturer").
USER_DEVICES = {
    "user_good": {"battery", "thermostat"},
    "user_ev": {"vehicle", "charger"},
    "user_solar": {"inverter", "battery"},
    "user_refresh_revoked": {"battery", "thermostat"},
}
MISSING_ID = "c" + "0" * 24  # well-formed, never issued

ACTIVE = manufacturer_connections_pb2.MANUFACTURER_CONNECTION_STATUS_ACTIVE
NEEDS_REAUTHORIZATION = (
    manufacturer_connections_pb2.MANUFACTURER_CONNECTION_STATUS_NEEDS_REAUTHORIZATION
)
DISCONNECTED = manufacturer_connections_pb2.MANUFACTURER_CONNECTION_STATUS_DISCONNECTED

Device = devices_pb2.Device


# --------------------------------------------------------------------------------- fixtures


def _start(tmp: Path, **extra: str) -> Server:
    env, grpc_addr, http_url = server_env(tmp, **extra)
    cli(env, "migrate")
    return Server(env, grpc_addr, http_url, tmp / "server.log").start()


@dataclass
class Shared:
    server: Server
    org: OrgKeys
    other_org: OrgKeys


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    """One server (default token lifetime) and two organizations for the tests that need no
    special configuration; each test uses customers of its own."""
    server = _start(tmp_path_factory.mktemp("connected-devices"))
    try:
        yield Shared(
            server, make_org(server.env, "Energy Coffee"), make_org(server.env, "Other Org")
        )
    finally:
        assert server.stop() == 0, server.logs()


@pytest.fixture(scope="module")
def short_tokens(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, OrgKeys]]:
    """A server whose sandbox issues 30-second access tokens: under the 60-second refresh
    margin, so every first read of a fresh connection refreshes its token."""
    server = _start(tmp_path_factory.mktemp("short-tokens"), TEXTURE_SANDBOX_TOKEN_TTL="30")
    try:
        yield server, make_org(server.env)
    finally:
        assert server.stop() == 0, server.logs()


@pytest.fixture
async def browser() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(follow_redirects=False, timeout=TIMEOUT) as client:
        yield client


# ---------------------------------------------------------------------------------- helpers


@dataclass
class Api:
    devices: devices_pb2_grpc.DeviceServiceStub
    customers: customers_pb2_grpc.CustomerServiceStub
    connections: manufacturer_connections_pb2_grpc.ManufacturerConnectionServiceStub
    sessions: connection_pb2_grpc.ConnectionServiceStub


@asynccontextmanager
async def api_of(server: Server) -> AsyncIterator[Api]:
    async with server.channel() as channel:
        yield Api(
            devices_pb2_grpc.DeviceServiceStub(channel),
            customers_pb2_grpc.CustomerServiceStub(channel),
            manufacturer_connections_pb2_grpc.ManufacturerConnectionServiceStub(channel),
            connection_pb2_grpc.ConnectionServiceStub(channel),
        )


def auth(key: str) -> tuple[tuple[str, str]]:
    return (("texture-api-key", key),)


async def error_of(call: Awaitable[Any]) -> RichError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return rich_error(caught.value)


async def assert_error(
    call: Awaitable[Any], code: grpc.StatusCode, reason: str, field: str | None = None
) -> RichError:
    error = await error_of(call)
    assert (error.code, error.reason, error.domain) == (code, reason, DOMAIN), error
    if field is not None and code is grpc.StatusCode.INVALID_ARGUMENT:
        assert field in error.fields, error.fields  # google.rpc.BadRequest
    elif field is not None:
        assert error.metadata.get("field") == field, error.metadata  # ErrorInfo.metadata
    return error


def unique_email() -> str:
    return f"jane+{secrets.token_hex(6)}@example.com"


def headless_body(manufacturer: str = "tesla", **changes: Any) -> dict[str, Any]:
    """The seed's headless body for a new customer (a unique email)."""
    info = {**HEADLESS_BODY["customerInfo"], "email": unique_email()}
    return {
        **HEADLESS_BODY,
        "customerInfo": info,
        "manufacturerFilters": {"manufacturers": [manufacturer]},
        **changes,
    }


def existing_customer_body(customer_id: str, manufacturer: str, **changes: Any) -> dict[str, Any]:
    return {
        "mode": "CONNECT_MODE_HEADLESS",
        "manufacturerFilters": {"manufacturers": [manufacturer]},
        "customerId": customer_id,
        "redirectUrl": APP_URL,
        **changes,
    }


@dataclass
class Connected:
    customer_id: str
    site_id: str
    scoped_key: str
    location: str


async def connect(
    browser: httpx.AsyncClient,
    server: Server,
    org: OrgKeys,
    body: dict[str, Any] | None = None,
    user: str = "user_good",
) -> Connected:
    """A complete headless flow: CreateConnection, sign-in and consent at the sandbox, our
    callback; returns what the app receives."""
    created = await create_connection(server, org, body or headless_body())
    callback_url = await authorize(browser, created.authorization.url, user)
    response = await browser.get(callback_url)
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    params = query_of(location)
    assert "texture_error" not in params, location
    assert params["texture_customer_id"] == created.customer_id
    return Connected(created.customer_id, created.site_id, params["texture_scoped_key"], location)


async def sandbox_stats(
    browser: httpx.AsyncClient, server: Server, manufacturer: str = "tesla"
) -> tuple[int, int]:
    """(refresh grants, token requests) the sandbox's token endpoint saw for
    ``manufacturer``."""
    response = await browser.get(f"{server.http_url}/sandbox/_stats")
    assert response.status_code == 200, response.text
    stats = response.json()
    return (
        int(stats["refresh_grants"].get(manufacturer, 0)),
        int(stats["token_requests"].get(manufacturer, 0)),
    )


async def devices_of(api: Api, key: str, **filters: str) -> list[Device]:
    reply = await api.devices.ListDevices(
        devices_pb2.ListDevicesRequest(page_size=100, **filters),
        metadata=auth(key),
        timeout=TIMEOUT,
    )
    assert reply.next_page_token == ""
    return list(reply.devices)


async def device_pages(api: Api, key: str, page_size: int, **filters: str) -> list[list[Device]]:
    """Every page of a device listing, checking the AIP-158 page invariants on the way."""
    pages: list[list[Device]] = []
    token = ""
    while True:
        reply = await api.devices.ListDevices(
            devices_pb2.ListDevicesRequest(page_size=page_size, page_token=token, **filters),
            metadata=auth(key),
            timeout=TIMEOUT,
        )
        pages.append(list(reply.devices))
        token = reply.next_page_token
        if not token:
            break
        assert len(reply.devices) == page_size, "only the last page may be short"
        assert len(pages) < 100, "the listing never ended"
    assert len(pages[-1]) <= page_size
    return pages


def ids(items: Any) -> list[str]:
    return [item.id for item in items]


def by_type(devices: list[Device]) -> dict[str, Device]:
    found = {d.type: d for d in devices}
    assert len(found) == len(devices), "one device per type expected"
    return found


async def connection_of(api: Api, org: OrgKeys, connection_id: str) -> Any:
    reply = await api.connections.GetManufacturerConnection(
        manufacturer_connections_pb2.GetManufacturerConnectionRequest(
            manufacturer_connection_id=connection_id
        ),
        metadata=org.metadata,
        timeout=TIMEOUT,
    )
    return reply.manufacturer_connection


async def state_of(api: Api, key: str, device_id: str) -> devices_pb2.DeviceState:
    reply = await api.devices.GetDeviceState(
        devices_pb2.GetDeviceStateRequest(device_id=device_id), metadata=auth(key), timeout=TIMEOUT
    )
    return reply.state


def database_file(server: Server) -> Path:
    url = server.env["TEXTURE_DATABASE_URL"]
    assert url.startswith("sqlite:///")
    return Path(url.removeprefix("sqlite:///"))


def query_db(server: Server, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """A read-only look at the server's SQLite file."""
    uri = f"file:{database_file(server)}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True)) as db:
        return db.execute(sql, args).fetchall()


def _database_bytes(server: Server) -> bytes:
    path = database_file(server)
    return b"".join(
        candidate.read_bytes()
        for candidate in (path, Path(f"{path}-wal"), Path(f"{path}-journal"))
        if candidate.exists()
    )


def _sealed_tokens(server: Server, connection_id: str) -> tuple[bytes, bytes]:
    ((access, refresh),) = query_db(
        server,
        "SELECT access_token_sealed, refresh_token_sealed FROM manufacturer_connections "
        "WHERE id = ?",
        connection_id,
    )
    return access, refresh


def _open(key: str, connection_id: str, which: str, sealed: bytes) -> str:
    """Opens a sealed token as the server does (bound to its row and role)."""
    return Sealer.from_setting(key).open_text(sealed, token_context(connection_id, which))


def newest_first(devices: list[Device]) -> bool:
    keys = [(d.create_time.ToDatetime(), d.id) for d in devices]
    return keys == sorted(keys, reverse=True)


# ------------------------------------------------------------------ scoped keys: isolation


async def test_scoped_key_sees_only_its_own_customers_devices(
    shared: Shared, browser: httpx.AsyncClient
) -> None:
    server, org = shared.server, shared.org
    a = await connect(browser, server, org, headless_body(), "user_good")
    b = await connect(browser, server, org, headless_body(), "user_ev")
    async with api_of(server) as api:
        a_devices = await devices_of(api, org.secret_key, customer_id=a.customer_id)
        b_devices = await devices_of(api, org.secret_key, customer_id=b.customer_id)
        assert {d.type for d in a_devices} == USER_DEVICES["user_good"]
        assert {d.type for d in b_devices} == USER_DEVICES["user_ev"]

        # Listing with A's key: A's devices, nothing else, with or without naming A.
        assert ids(await devices_of(api, a.scoped_key)) == ids(a_devices)
        assert ids(await devices_of(api, a.scoped_key, customer_id=a.customer_id)) == ids(a_devices)
        # Filters cannot widen a scoped listing: B's site or manufacturer lists nothing of B.
        assert await devices_of(api, a.scoped_key, site_id=b.site_id) == []
        assert ids(await devices_of(api, a.scoped_key, manufacturer="tesla")) == ids(a_devices)

        own = a_devices[0]
        got = await api.devices.GetDevice(
            devices_pb2.GetDeviceRequest(device_id=own.id), metadata=auth(a.scoped_key)
        )
        assert got.device == own
        state = await state_of(api, a.scoped_key, own.id)
        assert state.device_id == own.id and state.type == own.type

        # B's devices: PERMISSION_DENIED, exactly as for an id that does not exist.
        answers = []
        for device_id in (b_devices[0].id, b_devices[1].id, MISSING_ID, "dev_nonexistent"):
            for call in (
                api.devices.GetDevice(
                    devices_pb2.GetDeviceRequest(device_id=device_id), metadata=auth(a.scoped_key)
                ),
                api.devices.GetDeviceState(
                    devices_pb2.GetDeviceStateRequest(device_id=device_id),
                    metadata=auth(a.scoped_key),
                ),
            ):
                error = await assert_error(
                    call, grpc.StatusCode.PERMISSION_DENIED, "SCOPED_KEY_FORBIDDEN"
                )
                answers.append((error.message, error.metadata, error.fields))
        assert len(set(map(repr, answers))) == 1, "the answer must not tell them apart"

        await assert_error(
            api.devices.ListDevices(
                devices_pb2.ListDevicesRequest(customer_id=b.customer_id),
                metadata=auth(a.scoped_key),
            ),
            grpc.StatusCode.PERMISSION_DENIED,
            "SCOPED_KEY_FORBIDDEN",
        )
        # And B's key sees B's devices only.
        assert ids(await devices_of(api, b.scoped_key)) == ids(b_devices)


async def test_organizations_are_isolated(shared: Shared, browser: httpx.AsyncClient) -> None:
    server, org, other = shared.server, shared.org, shared.other_org
    mine = await connect(browser, server, org, headless_body(), "user_good")
    theirs = await connect(browser, server, other, headless_body(), "user_solar")
    async with api_of(server) as api:
        my_devices = await devices_of(api, org.secret_key, customer_id=mine.customer_id)
        their_devices = await devices_of(api, other.secret_key, customer_id=theirs.customer_id)
        assert len(my_devices) == len(their_devices) == 2
        device = my_devices[0]
        connection_id = device.manufacturer_connection_id

        # The other organization's secret key: NOT_FOUND for everything of mine.
        other_key = other.metadata
        for call in (
            api.devices.GetDevice(
                devices_pb2.GetDeviceRequest(device_id=device.id), metadata=other_key
            ),
            api.devices.GetDeviceState(
                devices_pb2.GetDeviceStateRequest(device_id=device.id), metadata=other_key
            ),
            api.devices.AddDeviceTags(
                devices_pb2.AddDeviceTagsRequest(device_id=device.id, tags=["stolen"]),
                metadata=other_key,
            ),
            api.devices.RemoveDeviceTags(
                devices_pb2.RemoveDeviceTagsRequest(device_id=device.id, tags=["stolen"]),
                metadata=other_key,
            ),
        ):
            await assert_error(call, grpc.StatusCode.NOT_FOUND, "DEVICE_NOT_FOUND", "deviceId")
        await assert_error(
            api.customers.GetCustomer(
                customers_pb2.GetCustomerRequest(customer_id=mine.customer_id), metadata=other_key
            ),
            grpc.StatusCode.NOT_FOUND,
            "CUSTOMER_NOT_FOUND",
        )
        await assert_error(
            api.customers.GetSite(
                customers_pb2.GetSiteRequest(site_id=mine.site_id), metadata=other_key
            ),
            grpc.StatusCode.NOT_FOUND,
            "SITE_NOT_FOUND",
        )
        for call in (
            api.connections.GetManufacturerConnection(
                manufacturer_connections_pb2.GetManufacturerConnectionRequest(
                    manufacturer_connection_id=connection_id
                ),
                metadata=other_key,
            ),
            api.connections.DisconnectManufacturerConnection(
                manufacturer_connections_pb2.DisconnectManufacturerConnectionRequest(
                    manufacturer_connection_id=connection_id
                ),
                metadata=other_key,
            ),
        ):
            await assert_error(call, grpc.StatusCode.NOT_FOUND, "MANUFACTURER_CONNECTION_NOT_FOUND")
        # Lists filtered by my ids are empty for them.
        assert await devices_of(api, other.secret_key, customer_id=mine.customer_id) == []
        assert await devices_of(api, other.secret_key, site_id=mine.site_id) == []
        sites = await api.customers.ListSites(
            customers_pb2.ListSitesRequest(customer_id=mine.customer_id), metadata=other_key
        )
        assert list(sites.sites) == []
        listed = await api.connections.ListManufacturerConnections(
            manufacturer_connections_pb2.ListManufacturerConnectionsRequest(
                customer_id=mine.customer_id
            ),
            metadata=other_key,
        )
        assert list(listed.manufacturer_connections) == []
        every_device_of_theirs = await devices_of(api, other.secret_key)
        assert not set(ids(my_devices)) & set(ids(every_device_of_theirs))
        # Revoking my scoped key with their secret key answers OK and changes nothing.
        await api.connections.RevokeScopedKey(
            manufacturer_connections_pb2.RevokeScopedKeyRequest(scoped_key=mine.scoped_key),
            metadata=other_key,
        )
        assert ids(await devices_of(api, mine.scoped_key)) == ids(my_devices)

        # My scoped key: their devices are PERMISSION_DENIED, and my lists hold mine only.
        for their_device in their_devices:
            await assert_error(
                api.devices.GetDevice(
                    devices_pb2.GetDeviceRequest(device_id=their_device.id),
                    metadata=auth(mine.scoped_key),
                ),
                grpc.StatusCode.PERMISSION_DENIED,
                "SCOPED_KEY_FORBIDDEN",
            )
            await assert_error(
                api.devices.GetDeviceState(
                    devices_pb2.GetDeviceStateRequest(device_id=their_device.id),
                    metadata=auth(mine.scoped_key),
                ),
                grpc.StatusCode.PERMISSION_DENIED,
                "SCOPED_KEY_FORBIDDEN",
            )
        await assert_error(
            api.devices.ListDevices(
                devices_pb2.ListDevicesRequest(customer_id=theirs.customer_id),
                metadata=auth(mine.scoped_key),
            ),
            grpc.StatusCode.PERMISSION_DENIED,
            "SCOPED_KEY_FORBIDDEN",
        )
        await assert_error(
            api.customers.GetCustomer(
                customers_pb2.GetCustomerRequest(customer_id=theirs.customer_id),
                metadata=auth(mine.scoped_key),
            ),
            grpc.StatusCode.PERMISSION_DENIED,
            "SCOPED_KEY_FORBIDDEN",
        )
        assert ids(await devices_of(api, mine.scoped_key)) == ids(my_devices)
        assert await devices_of(api, mine.scoped_key, site_id=theirs.site_id) == []
        # My connection is untouched by their disconnect attempt.
        assert (await connection_of(api, org, connection_id)).status == ACTIVE


def _every_method(api: Api, device_id: str, customer_id: str, site_id: str) -> dict[str, Any]:
    """One call factory per method of the new services (request bodies are valid)."""
    connection_pb = manufacturer_connections_pb2
    return {
        "ListDevices": lambda md: api.devices.ListDevices(
            devices_pb2.ListDevicesRequest(), metadata=md
        ),
        "GetDevice": lambda md: api.devices.GetDevice(
            devices_pb2.GetDeviceRequest(device_id=device_id), metadata=md
        ),
        "GetDeviceState": lambda md: api.devices.GetDeviceState(
            devices_pb2.GetDeviceStateRequest(device_id=device_id), metadata=md
        ),
        "AddDeviceTags": lambda md: api.devices.AddDeviceTags(
            devices_pb2.AddDeviceTagsRequest(device_id=device_id, tags=["x"]), metadata=md
        ),
        "RemoveDeviceTags": lambda md: api.devices.RemoveDeviceTags(
            devices_pb2.RemoveDeviceTagsRequest(device_id=device_id, tags=["x"]), metadata=md
        ),
        "GetCustomer": lambda md: api.customers.GetCustomer(
            customers_pb2.GetCustomerRequest(customer_id=customer_id), metadata=md
        ),
        "ListCustomers": lambda md: api.customers.ListCustomers(
            customers_pb2.ListCustomersRequest(), metadata=md
        ),
        "GetSite": lambda md: api.customers.GetSite(
            customers_pb2.GetSiteRequest(site_id=site_id), metadata=md
        ),
        "ListSites": lambda md: api.customers.ListSites(
            customers_pb2.ListSitesRequest(), metadata=md
        ),
        "ListManufacturerConnections": lambda md: api.connections.ListManufacturerConnections(
            connection_pb.ListManufacturerConnectionsRequest(), metadata=md
        ),
        "GetManufacturerConnection": lambda md: api.connections.GetManufacturerConnection(
            connection_pb.GetManufacturerConnectionRequest(manufacturer_connection_id=MISSING_ID),
            metadata=md,
        ),
        "DisconnectManufacturerConnection": (
            lambda md: api.connections.DisconnectManufacturerConnection(
                connection_pb.DisconnectManufacturerConnectionRequest(
                    manufacturer_connection_id=MISSING_ID
                ),
                metadata=md,
            )
        ),
        "RevokeScopedKey": lambda md: api.connections.RevokeScopedKey(
            connection_pb.RevokeScopedKeyRequest(scoped_key="tx_scoped_" + "A" * 43), metadata=md
        ),
    }


SCOPED_KEY_METHODS = {"ListDevices", "GetDevice", "GetDeviceState", "GetCustomer", "GetSite"}


async def test_scoped_key_cannot_call_secret_key_methods(
    shared: Shared, browser: httpx.AsyncClient
) -> None:
    server, org = shared.server, shared.org
    mine = await connect(browser, server, org, headless_body(), "user_good")
    async with api_of(server) as api:
        devices = await devices_of(api, org.secret_key, customer_id=mine.customer_id)
        device = devices[0]
        calls = _every_method(api, device.id, mine.customer_id, mine.site_id)
        # Aimed at its own records, so only the kind of key can be the reason.
        calls["GetManufacturerConnection"] = lambda md: api.connections.GetManufacturerConnection(
            manufacturer_connections_pb2.GetManufacturerConnectionRequest(
                manufacturer_connection_id=device.manufacturer_connection_id
            ),
            metadata=md,
        )
        calls["DisconnectManufacturerConnection"] = lambda md: (
            api.connections.DisconnectManufacturerConnection(
                manufacturer_connections_pb2.DisconnectManufacturerConnectionRequest(
                    manufacturer_connection_id=device.manufacturer_connection_id
                ),
                metadata=md,
            )
        )
        calls["RevokeScopedKey"] = lambda md: api.connections.RevokeScopedKey(
            manufacturer_connections_pb2.RevokeScopedKeyRequest(scoped_key=mine.scoped_key),
            metadata=md,
        )
        calls["GetConnection"] = lambda md: api.sessions.GetConnection(
            connection_pb2.GetConnectionRequest(link_session_id=MISSING_ID), metadata=md
        )
        for name, call in calls.items():
            if name in SCOPED_KEY_METHODS:
                continue
            await assert_error(
                call(auth(mine.scoped_key)),
                grpc.StatusCode.PERMISSION_DENIED,
                "SECRET_KEY_REQUIRED",
            )
        # None of it took effect.
        after = await devices_of(api, org.secret_key, customer_id=mine.customer_id)
        assert [sorted(d.tags) for d in after] == [sorted(d.tags) for d in devices]
        connection = await connection_of(api, org, device.manufacturer_connection_id)
        assert connection.status == ACTIVE
        assert ids(await devices_of(api, mine.scoped_key)) == ids(devices)
        # The methods a scoped key may call work on its own records.
        for name in sorted(SCOPED_KEY_METHODS):
            await calls[name](auth(mine.scoped_key))


async def test_connect_key_can_call_none_of_the_new_services(
    shared: Shared, browser: httpx.AsyncClient
) -> None:
    server, org = shared.server, shared.org
    mine = await connect(browser, server, org, headless_body(), "user_good")
    async with api_of(server) as api:
        device = (await devices_of(api, org.secret_key, customer_id=mine.customer_id))[0]
        calls = _every_method(api, device.id, mine.customer_id, mine.site_id)
        for call in calls.values():
            await assert_error(
                call(auth(org.connect_key)),
                grpc.StatusCode.PERMISSION_DENIED,
                "CONNECT_KEY_NOT_ALLOWED",
            )
        # Without a key, or with an unknown one: UNAUTHENTICATED.
        await assert_error(
            calls["ListDevices"](()), grpc.StatusCode.UNAUTHENTICATED, "API_KEY_MISSING"
        )
        await assert_error(
            calls["GetDevice"](auth("tx_scoped_" + secrets.token_urlsafe(32))),
            grpc.StatusCode.UNAUTHENTICATED,
            "API_KEY_INVALID",
        )


# ------------------------------------------------------------- secret key: filters, pages


@pytest.fixture(scope="module")
def filters_org(shared: Shared) -> OrgKeys:
    """An organization of its own, so that its full device list is known."""
    return make_org(shared.server.env, "Filters Org")


async def test_secret_key_filters_and_pagination(
    shared: Shared, filters_org: OrgKeys, browser: httpx.AsyncClient
) -> None:
    server, org = shared.server, filters_org
    ref_1, ref_2 = "ref-" + secrets.token_hex(4), "ref-" + secrets.token_hex(4)
    # Customer 1: tesla (user_good) at site 1, then enphase (user_solar) at a second site
    # (same email, another address); customer 2: tesla (user_ev).
    body_1 = headless_body("tesla", referenceId=ref_1, tags=["fleet-a", "vip"])
    c1_tesla = await connect(browser, server, org, body_1, "user_good")
    body_2 = headless_body(
        "enphase",
        tags=["fleet-a"],
        customerInfo={
            **body_1["customerInfo"],
            "location": {**HEADLESS_BODY["customerInfo"]["location"], "streetOne": "9 Elm St"},
        },
    )
    c1_enphase = await connect(browser, server, org, body_2, "user_solar")
    assert c1_enphase.customer_id == c1_tesla.customer_id
    assert c1_enphase.site_id != c1_tesla.site_id
    c2 = await connect(
        browser, server, org, headless_body("tesla", referenceId=ref_2, tags=["fleet-b"]), "user_ev"
    )
    c1 = c1_tesla.customer_id

    async with api_of(server) as api:
        key = org.secret_key
        everything = await devices_of(api, key)
        assert len(everything) == 6
        assert len(set(ids(everything))) == 6
        # Newest first: customer 2's devices, then customer 1's enphase, then its tesla.
        assert newest_first(everything)
        owners = [(d.customer_id, d.manufacturer) for d in everything]
        assert (
            owners == [(c2.customer_id, "tesla")] * 2 + [(c1, "enphase")] * 2 + [(c1, "tesla")] * 2
        )

        # Page boundaries: every page size gives the same list, without duplicates.
        for page_size in (1, 2, 4, 5, 6, 7):
            pages = await device_pages(api, key, page_size)
            assert [len(p) for p in pages] == [
                min(page_size, 6 - start) for start in range(0, 6, page_size)
            ]
            assert [d.id for page in pages for d in page] == ids(everything)
        # 0 means the default (50); more than 100 is coerced down, not refused.
        for page_size in (0, 1000):
            reply = await api.devices.ListDevices(
                devices_pb2.ListDevicesRequest(page_size=page_size), metadata=org.metadata
            )
            assert ids(reply.devices) == ids(everything) and reply.next_page_token == ""

        filters: dict[str, tuple[dict[str, str], Callable[[Device], bool]]] = {
            "customer 1": ({"customer_id": c1}, lambda d: d.customer_id == c1),
            "customer 2": ({"customer_id": c2.customer_id}, lambda d: d.customer_id != c1),
            "site 1": ({"site_id": c1_tesla.site_id}, lambda d: d.site_id == c1_tesla.site_id),
            "site 2": (
                {"site_id": c1_enphase.site_id},
                lambda d: d.site_id == c1_enphase.site_id,
            ),
            "reference 1": ({"reference_id": ref_1}, lambda d: d.customer_id == c1),
            "reference 2": ({"reference_id": ref_2}, lambda d: d.customer_id != c1),
            "tag vip": ({"tag": "vip"}, lambda d: d.site_id == c1_tesla.site_id),
            "tag fleet-a": ({"tag": "fleet-a"}, lambda d: d.customer_id == c1),
            "tag fleet-b": ({"tag": "fleet-b"}, lambda d: d.customer_id != c1),
            "tesla": ({"manufacturer": "tesla"}, lambda d: d.manufacturer == "tesla"),
            "enphase": ({"manufacturer": "enphase"}, lambda d: d.site_id == c1_enphase.site_id),
            "batteries": ({"device_type": "battery"}, lambda d: d.type == "battery"),
            "vehicles": ({"device_type": "vehicle"}, lambda d: d.type == "vehicle"),
            "tesla batteries": (
                {"manufacturer": "tesla", "device_type": "battery"},
                lambda d: d.manufacturer == "tesla" and d.type == "battery",
            ),
            "customer 2 on site 1": (
                {"customer_id": c2.customer_id, "site_id": c1_tesla.site_id},
                lambda d: False,
            ),
            "unknown tag": ({"tag": "nobody-has-this"}, lambda d: False),
            "unknown manufacturer": ({"manufacturer": "acme"}, lambda d: False),
            "water heaters": ({"device_type": "water_heater"}, lambda d: False),
        }
        for name, (request_filters, wanted) in filters.items():
            expected = [d.id for d in everything if wanted(d)]
            pages = await device_pages(api, key, 2, **request_filters)
            assert [d.id for page in pages for d in page] == expected, name
        assert len([d for d in everything if d.type == "battery"]) == 2
        # Each filter value is checked field by field too.
        for device in await devices_of(api, key, reference_id=ref_1):
            assert device.reference_id == ref_1
        for device in await devices_of(api, key, tag="fleet-b"):
            assert set(device.tags) == {"fleet-b"}

        await assert_error(
            api.devices.ListDevices(
                devices_pb2.ListDevicesRequest(device_type="toaster"), metadata=org.metadata
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_REQUEST",
            "deviceType",
        )

        # Tokens: bound to the list and its filters (and organization); size may change.
        first = await api.devices.ListDevices(
            devices_pb2.ListDevicesRequest(page_size=2), metadata=org.metadata
        )
        token = first.next_page_token
        assert token
        rest = await api.devices.ListDevices(
            devices_pb2.ListDevicesRequest(page_size=4, page_token=token), metadata=org.metadata
        )
        assert ids(rest.devices) == ids(everything)[2:] and rest.next_page_token == ""
        for changed in (
            {"manufacturer": "tesla"},
            {"customer_id": c1},
            {"tag": "fleet-a"},
            {"device_type": "battery"},
        ):
            await assert_error(
                api.devices.ListDevices(
                    devices_pb2.ListDevicesRequest(page_size=2, page_token=token, **changed),
                    metadata=org.metadata,
                ),
                grpc.StatusCode.INVALID_ARGUMENT,
                "INVALID_REQUEST",
                "pageToken",
            )
        for bad_token in ("garbage", token[:-3], token + "x"):
            await assert_error(
                api.devices.ListDevices(
                    devices_pb2.ListDevicesRequest(page_size=2, page_token=bad_token),
                    metadata=org.metadata,
                ),
                grpc.StatusCode.INVALID_ARGUMENT,
                "INVALID_REQUEST",
                "pageToken",
            )
        await assert_error(
            api.devices.ListDevices(
                devices_pb2.ListDevicesRequest(page_size=2, page_token=token),
                metadata=shared.org.metadata,
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_REQUEST",
            "pageToken",
        )
        await assert_error(
            api.devices.ListDevices(
                devices_pb2.ListDevicesRequest(page_size=-1), metadata=org.metadata
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_REQUEST",
            "pageSize",
        )

        # Devices connected between two pages come first in a new listing; the pages after
        # the token are exactly what followed it (no duplicate, nothing skipped).
        await connect(browser, server, org, headless_body("tesla"), "user_good")
        continued = await api.devices.ListDevices(
            devices_pb2.ListDevicesRequest(page_size=2, page_token=token), metadata=org.metadata
        )
        assert ids(continued.devices) == ids(everything)[2:4]
        now_listed = await devices_of(api, key)
        assert len(now_listed) == 8 and ids(now_listed)[2:] == ids(everything)


# ----------------------------------------------------------------------------------- tags


async def test_session_tags_then_added_and_removed_tags_are_filterable(
    shared: Shared, browser: httpx.AsyncClient
) -> None:
    server, org = shared.server, shared.org
    suffix = secrets.token_hex(3)
    fleet, season, vip, late = (f"{name}-{suffix}" for name in ("fleet", "summer", "vip", "late"))
    mine = await connect(
        browser, server, org, headless_body(tags=[fleet, season, fleet]), "user_good"
    )
    async with api_of(server) as api:
        devices = by_type(await devices_of(api, org.secret_key, customer_id=mine.customer_id))
        assert set(devices) == {"battery", "thermostat"}
        for device in devices.values():
            assert sorted(device.tags) == sorted([fleet, season])
        battery, thermostat = devices["battery"], devices["thermostat"]

        added = await api.devices.AddDeviceTags(
            devices_pb2.AddDeviceTagsRequest(device_id=battery.id, tags=[vip, fleet, vip]),
            metadata=org.metadata,
        )
        assert sorted(added.device.tags) == sorted([fleet, season, vip])
        assert added.device.update_time.ToDatetime() >= battery.update_time.ToDatetime()
        assert ids(await devices_of(api, org.secret_key, tag=vip)) == [battery.id]
        assert set(ids(await devices_of(api, org.secret_key, tag=fleet))) == {
            battery.id,
            thermostat.id,
        }
        got = await api.devices.GetDevice(
            devices_pb2.GetDeviceRequest(device_id=battery.id), metadata=auth(mine.scoped_key)
        )
        assert sorted(got.device.tags) == sorted([fleet, season, vip])
        # The scoped key's listings filter by tag too.
        assert ids(await devices_of(api, mine.scoped_key, tag=vip)) == [battery.id]

        removed = await api.devices.RemoveDeviceTags(
            devices_pb2.RemoveDeviceTagsRequest(device_id=battery.id, tags=[season, "absent"]),
            metadata=org.metadata,
        )
        assert sorted(removed.device.tags) == sorted([fleet, vip])
        assert ids(await devices_of(api, org.secret_key, tag=season)) == [thermostat.id]
        removed = await api.devices.RemoveDeviceTags(
            devices_pb2.RemoveDeviceTagsRequest(device_id=battery.id, tags=[vip]),
            metadata=org.metadata,
        )
        assert sorted(removed.device.tags) == [fleet]
        assert await devices_of(api, org.secret_key, tag=vip) == []

        # Reconnecting with other session tags adds them and removes none.
        again = await connect(
            browser,
            server,
            org,
            existing_customer_body(mine.customer_id, "tesla", tags=[late]),
            "user_good",
        )
        assert query_of(again.location)["texture_existing_devices"] == "true"
        devices = by_type(await devices_of(api, org.secret_key, customer_id=mine.customer_id))
        assert sorted(devices["battery"].tags) == sorted([fleet, late])
        assert sorted(devices["thermostat"].tags) == sorted([fleet, season, late])
        assert set(ids(await devices_of(api, org.secret_key, tag=late))) == {
            battery.id,
            thermostat.id,
        }


async def test_invalid_tag_edits_are_refused_with_field_paths(
    shared: Shared, browser: httpx.AsyncClient
) -> None:
    server, org = shared.server, shared.org
    mine = await connect(browser, server, org, headless_body(tags=["keep"]), "user_good")
    async with api_of(server) as api:
        device = (await devices_of(api, org.secret_key, customer_id=mine.customer_id))[0]
        for stub_method, request_type in (
            (api.devices.AddDeviceTags, devices_pb2.AddDeviceTagsRequest),
            (api.devices.RemoveDeviceTags, devices_pb2.RemoveDeviceTagsRequest),
        ):
            error = await assert_error(
                stub_method(
                    request_type(device_id=device.id, tags=["ok", " padded", "", "x" * 65, "y "]),
                    metadata=org.metadata,
                ),
                grpc.StatusCode.INVALID_ARGUMENT,
                "INVALID_REQUEST",
            )
            assert set(error.fields) == {"tags[1]", "tags[2]", "tags[3]", "tags[4]"}
            await assert_error(
                stub_method(request_type(device_id=device.id), metadata=org.metadata),
                grpc.StatusCode.INVALID_ARGUMENT,
                "INVALID_REQUEST",
                "tags",
            )
            await assert_error(
                stub_method(
                    request_type(device_id=device.id, tags=[f"t{i}" for i in range(21)]),
                    metadata=org.metadata,
                ),
                grpc.StatusCode.INVALID_ARGUMENT,
                "INVALID_REQUEST",
                "tags",
            )
            await assert_error(
                stub_method(request_type(tags=["ok"]), metadata=org.metadata),
                grpc.StatusCode.INVALID_ARGUMENT,
                "INVALID_REQUEST",
                "deviceId",
            )
            await assert_error(
                stub_method(request_type(device_id=MISSING_ID, tags=["ok"]), metadata=org.metadata),
                grpc.StatusCode.NOT_FOUND,
                "DEVICE_NOT_FOUND",
                "deviceId",
            )
        # A refused edit wrote nothing; 64 characters and 20 tags are fine.
        got = await api.devices.GetDevice(
            devices_pb2.GetDeviceRequest(device_id=device.id), metadata=org.metadata
        )
        assert list(got.device.tags) == ["keep"]
        longest = "z" * 64
        edited = await api.devices.AddDeviceTags(
            devices_pb2.AddDeviceTagsRequest(
                device_id=device.id, tags=[longest, *[f"t{i}" for i in range(19)]]
            ),
            metadata=org.metadata,
        )
        assert len(edited.device.tags) == 21 and longest in edited.device.tags


# ------------------------------------------------------------------------ customers, sites


async def test_customer_with_sites_and_devices(shared: Shared, browser: httpx.AsyncClient) -> None:
    server, org = shared.server, shared.org
    body = headless_body("tesla")
    first = await connect(browser, server, org, body, "user_good")
    second_location = {**HEADLESS_BODY["customerInfo"]["location"], "streetOne": "77 Oak Ave"}
    second = await connect(
        browser,
        server,
        org,
        headless_body(
            "enphase", customerInfo={**body["customerInfo"], "location": second_location}
        ),
        "user_solar",
    )
    customer_id = first.customer_id
    assert second.customer_id == customer_id and second.site_id != first.site_id
    stranger = await create_connection(server, org, headless_body())

    async with api_of(server) as api:
        devices = await devices_of(api, org.secret_key, customer_id=customer_id)
        at_first = {d.id for d in devices if d.site_id == first.site_id}
        at_second = {d.id for d in devices if d.site_id == second.site_id}
        assert len(at_first) == len(at_second) == 2

        reply = await api.customers.GetCustomer(
            customers_pb2.GetCustomerRequest(customer_id=customer_id), metadata=org.metadata
        )
        customer = reply.customer
        assert customer.id == customer_id
        assert (customer.first_name, customer.last_name) == ("Jane", "Smith")
        assert customer.email == body["customerInfo"]["email"]
        assert customer.create_time.seconds > 0
        assert ids(customer.sites) == [first.site_id, second.site_id]  # oldest first
        sites = {s.id: s for s in customer.sites}
        assert set(sites[first.site_id].device_ids) == at_first
        assert set(sites[second.site_id].device_ids) == at_second
        assert sites[first.site_id].location.street_one == "123 Main St"
        assert sites[second.site_id].location.street_one == "77 Oak Ave"
        assert sites[second.site_id].location.country == "US"
        assert all(s.customer_id == customer_id for s in customer.sites)
        assert set(ids(customer.devices)) == set(ids(devices))
        assert all(d.customer_id == customer_id for d in customer.devices)

        site = (
            await api.customers.GetSite(
                customers_pb2.GetSiteRequest(site_id=second.site_id), metadata=org.metadata
            )
        ).site
        assert site.customer_id == customer_id and set(site.device_ids) == at_second
        assert site.location.city == "Austin"

        listed = await api.customers.ListSites(
            customers_pb2.ListSitesRequest(customer_id=customer_id), metadata=org.metadata
        )
        assert ids(listed.sites) == [second.site_id, first.site_id]  # newest first
        assert {s.id: set(s.device_ids) for s in listed.sites} == {
            first.site_id: at_first,
            second.site_id: at_second,
        }
        paged: list[str] = []
        token = ""
        while True:
            page = await api.customers.ListSites(
                customers_pb2.ListSitesRequest(
                    customer_id=customer_id, page_size=1, page_token=token
                ),
                metadata=org.metadata,
            )
            assert len(page.sites) == 1
            paged += ids(page.sites)
            token = page.next_page_token
            if not token:
                break
        assert paged == [second.site_id, first.site_id]

        # Secret key: unknown ids are NOT_FOUND; a missing id is INVALID_ARGUMENT.
        await assert_error(
            api.customers.GetCustomer(
                customers_pb2.GetCustomerRequest(customer_id=MISSING_ID), metadata=org.metadata
            ),
            grpc.StatusCode.NOT_FOUND,
            "CUSTOMER_NOT_FOUND",
            "customerId",
        )
        await assert_error(
            api.customers.GetSite(
                customers_pb2.GetSiteRequest(site_id=MISSING_ID), metadata=org.metadata
            ),
            grpc.StatusCode.NOT_FOUND,
            "SITE_NOT_FOUND",
            "siteId",
        )
        await assert_error(
            api.customers.GetCustomer(customers_pb2.GetCustomerRequest(), metadata=org.metadata),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_REQUEST",
            "customerId",
        )

        # Scoped key: its own customer (all of its devices and sites), nobody else.
        own = await api.customers.GetCustomer(
            customers_pb2.GetCustomerRequest(customer_id=customer_id),
            metadata=auth(first.scoped_key),
        )
        assert ids(own.customer.sites) == ids(customer.sites)
        assert set(ids(own.customer.devices)) == set(ids(devices))
        own_site = await api.customers.GetSite(
            customers_pb2.GetSiteRequest(site_id=first.site_id), metadata=auth(first.scoped_key)
        )
        assert set(own_site.site.device_ids) == at_first
        for other_customer in (stranger.customer_id, MISSING_ID):
            await assert_error(
                api.customers.GetCustomer(
                    customers_pb2.GetCustomerRequest(customer_id=other_customer),
                    metadata=auth(first.scoped_key),
                ),
                grpc.StatusCode.PERMISSION_DENIED,
                "SCOPED_KEY_FORBIDDEN",
            )
        for other_site in (stranger.site_id, MISSING_ID):
            await assert_error(
                api.customers.GetSite(
                    customers_pb2.GetSiteRequest(site_id=other_site),
                    metadata=auth(first.scoped_key),
                ),
                grpc.StatusCode.PERMISSION_DENIED,
                "SCOPED_KEY_FORBIDDEN",
            )


async def test_list_customers_pagination_and_filters(shared: Shared) -> None:
    server = shared.server
    org = make_org(server.env, "Customers Org")
    created = []
    for index in range(5):
        body = headless_body(referenceId=f"crm-{index}")
        created.append((await create_connection(server, org, body), body))
    newest_first_ids = [c.customer_id for c, _ in reversed(created)]

    async with api_of(server) as api:

        async def customer_pages(page_size: int, **filters: str) -> list[list[str]]:
            pages: list[list[str]] = []
            token = ""
            while True:
                reply = await api.customers.ListCustomers(
                    customers_pb2.ListCustomersRequest(
                        page_size=page_size, page_token=token, **filters
                    ),
                    metadata=org.metadata,
                )
                pages.append(ids(reply.customers))
                token = reply.next_page_token
                if not token:
                    return pages
                assert len(reply.customers) == page_size

        assert await customer_pages(2) == [
            newest_first_ids[0:2],
            newest_first_ids[2:4],
            newest_first_ids[4:],
        ]
        assert await customer_pages(5) == [newest_first_ids]
        assert await customer_pages(0) == [newest_first_ids]

        # Each listed customer carries its site.
        reply = await api.customers.ListCustomers(
            customers_pb2.ListCustomersRequest(), metadata=org.metadata
        )
        for customer, (response, _) in zip(reply.customers, reversed(created), strict=True):
            assert ids(customer.sites) == [response.site_id]
            assert list(customer.devices) == []

        response, body = created[2]
        email = body["customerInfo"]["email"]
        for spelling in (email, email.upper(), f"  {email}  "):
            assert await customer_pages(2, email=spelling) == [[response.customer_id]]
        assert await customer_pages(2, reference_id="crm-2") == [[response.customer_id]]
        assert await customer_pages(2, reference_id="crm-2", email=unique_email()) == [[]]
        assert await customer_pages(2, email="nobody@example.com") == [[]]

        first = await api.customers.ListCustomers(
            customers_pb2.ListCustomersRequest(page_size=2), metadata=org.metadata
        )
        await assert_error(
            api.customers.ListCustomers(
                customers_pb2.ListCustomersRequest(
                    page_size=2, page_token=first.next_page_token, email=email
                ),
                metadata=org.metadata,
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_REQUEST",
            "pageToken",
        )
        await assert_error(
            api.customers.ListCustomers(
                customers_pb2.ListCustomersRequest(page_size=-5), metadata=org.metadata
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_REQUEST",
            "pageSize",
        )
        # Another organization's listing holds none of these customers.
        theirs = await api.customers.ListCustomers(
            customers_pb2.ListCustomersRequest(page_size=100), metadata=shared.other_org.metadata
        )
        assert not set(ids(theirs.customers)) & set(newest_first_ids)


# ------------------------------------------------------------------------------ live state


def _assert_plausible(state: devices_pb2.DeviceState) -> None:
    kind = state.WhichOneof("state")
    assert kind == state.type
    if kind == "battery":
        battery = state.battery
        assert 0 <= battery.charge_percentage <= 100
        assert battery.backup_reserve_percentage == 20
        assert battery.charging_state in ("charging", "discharging", "idle")
        if battery.charging_state == "charging":
            assert battery.power_w > 0
        elif battery.charging_state == "discharging":
            assert battery.power_w < 0
        else:
            assert battery.power_w == 0
    elif kind == "thermostat":
        thermostat = state.thermostat
        assert thermostat.mode == "heat"
        assert (thermostat.heat_setpoint_celsius, thermostat.cool_setpoint_celsius) == (20, 24)
        assert 15 <= thermostat.ambient_temperature_celsius <= 30
    elif kind == "vehicle":
        vehicle = state.vehicle
        assert 0 < vehicle.charge_percentage <= 100
        assert vehicle.range_km == pytest.approx(vehicle.charge_percentage * 4.8, abs=1)
        assert vehicle.plugged_in is True
    elif kind == "charger":
        charger = state.charger
        assert charger.status in ("charging", "idle")
        assert charger.power_w == (7200 if charger.status == "charging" else 0)
        assert 0 <= charger.session_energy_kwh <= 25
    elif kind == "inverter":
        inverter = state.inverter
        assert 0 <= inverter.power_w <= 5000
        assert 0 <= inverter.energy_today_kwh <= 24
    else:
        raise AssertionError(f"no state for {state.type}")


@pytest.mark.parametrize(
    ("manufacturer", "user"),
    [
        ("tesla", "user_good"),
        ("tesla", "user_ev"),
        ("enphase", "user_solar"),
    ],
)
async def test_live_state_per_device_type(
    shared: Shared, browser: httpx.AsyncClient, manufacturer: str, user: str
) -> None:
    server, org = shared.server, shared.org
    mine = await connect(browser, server, org, headless_body(manufacturer), user)
    async with api_of(server) as api:
        devices = by_type(await devices_of(api, mine.scoped_key))
        assert set(devices) == USER_DEVICES[user]
        for device_type, device in devices.items():
            for key in (mine.scoped_key, org.secret_key):
                state = await state_of(api, key, device.id)
                assert (state.device_id, state.type) == (device.id, device_type)
                read_at = state.read_time.ToDatetime(tzinfo=UTC)
                assert abs(read_at - datetime.now(UTC)) < timedelta(minutes=2), read_at
                _assert_plausible(state)


# --------------------------------------------------------------------------------- refresh


_HOP_BY_HOP = {"host", "content-length", "connection", "transfer-encoding", "keep-alive"}


class Gate:
    """A reverse proxy in front of the sandbox manufacturer (``TEXTURE_SANDBOX_URL`` points
    at it) that lets a test script the manufacturer's side: hold the next device-state
    read until released (a read that refreshed its token is then still in flight, its
    refresh stored, for as long as the test needs), answer device-state reads with 401
    (the manufacturer rejects the access token early), or answer token requests with 500.
    Everything else passes through unchanged."""

    def __init__(self) -> None:
        self.url = ""
        self.upstream = ""
        self.state_held = asyncio.Event()
        self.release = asyncio.Event()
        self.reject_state_reads = 0
        self.fail_token_requests = 0
        self._hold_next_state = False
        self._client = httpx.AsyncClient(follow_redirects=False, timeout=TIMEOUT)

    def app_at(self, origin: str) -> Starlette:
        self.url = origin
        return Starlette(routes=[Route("/{path:path}", self.forward, methods=["GET", "POST"])])

    def hold_next_state_read(self) -> None:
        self._hold_next_state = True

    async def aclose(self) -> None:
        await self._client.aclose()

    async def forward(self, request: Request) -> Response:
        path = request.url.path
        if self._hold_next_state and path.endswith("/state"):
            self._hold_next_state = False
            self.state_held.set()
            await self.release.wait()
        if self.reject_state_reads and path.endswith("/state"):
            self.reject_state_reads -= 1
            return JSONResponse(
                {"error": "invalid_token", "error_description": "revoked early"},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="sandbox", error="invalid_token"'},
            )
        if self.fail_token_requests and path.endswith("/oauth/token"):
            self.fail_token_requests -= 1
            return JSONResponse({"error": "server_error"}, status_code=500)
        query = f"?{request.url.query}" if request.url.query else ""
        upstream = await self._client.request(
            request.method,
            self.upstream + path + query,
            content=await request.body(),
            headers={k: v for k, v in request.headers.items() if k not in _HOP_BY_HOP},
        )
        headers = {
            k: v
            for k, v in upstream.headers.items()
            if k not in _HOP_BY_HOP | {"content-encoding", "date", "server"}
        }
        return Response(upstream.content, upstream.status_code, headers)


@asynccontextmanager
async def sandbox_gate() -> AsyncIterator[Gate]:
    gate = Gate()
    try:
        async with serving(gate.app_at):
            try:
                yield gate
            finally:
                gate.release.set()  # a held request must not hold up the shutdown
    finally:
        await gate.aclose()


@asynccontextmanager
async def gated_server(
    serve: Callable[..., Server], **env: str
) -> AsyncIterator[tuple[Server, Gate]]:
    """A server whose catalog reaches the sandbox (its own) through a gate."""
    async with sandbox_gate() as gate:
        server = serve(TEXTURE_SANDBOX_URL=f"{gate.url}/sandbox", **env)
        gate.upstream = server.http_url
        yield server, gate


async def test_an_expiring_token_is_refreshed_before_the_read(
    short_tokens: tuple[Server, OrgKeys], browser: httpx.AsyncClient
) -> None:
    server, org = short_tokens
    mine = await connect(browser, server, org, headless_body(), "user_good")
    async with api_of(server) as api:
        battery = by_type(await devices_of(api, mine.scoped_key))["battery"]
        connection_id = battery.manufacturer_connection_id
        ((generation_before,),) = query_db(
            server,
            "SELECT token_generation FROM manufacturer_connections WHERE id = ?",
            connection_id,
        )
        grants, requests = await sandbox_stats(browser, server)
        _assert_plausible(await state_of(api, mine.scoped_key, battery.id))
        assert await sandbox_stats(browser, server) == (grants + 1, requests + 1)
        _assert_plausible(await state_of(api, org.secret_key, battery.id))
        assert (await connection_of(api, org, connection_id)).status == ACTIVE

    # At rest after the refresh: sealed, with no token, key or "Bearer" in clear.
    ((access_sealed, refresh_sealed, generation),) = query_db(
        server,
        "SELECT access_token_sealed, refresh_token_sealed, token_generation "
        "FROM manufacturer_connections WHERE id = ?",
        connection_id,
    )
    assert generation > generation_before
    for sealed in (access_sealed, refresh_sealed):
        assert isinstance(sealed, bytes) and len(sealed) > 28
        assert b"Bearer" not in sealed and mine.scoped_key.encode() not in sealed
        assert re.search(rb"[A-Za-z0-9_-]{32,}", sealed) is None
    # Opened with the server's key (generated into its data dir), the tokens are real
    # sandbox tokens, and they appear nowhere in the database files.
    key = (Path(server.env["TEXTURE_DATA_DIR"]) / "encryption.key").read_text().strip()
    access = _open(key, connection_id, "access", access_sealed)
    refresh = _open(key, connection_id, "refresh", refresh_sealed)
    assert len(access) >= 32 and len(refresh) >= 32
    stored = _database_bytes(server)
    assert access.encode() not in stored and refresh.encode() not in stored


async def test_concurrent_reads_succeed_and_never_refresh_in_parallel(
    short_tokens: tuple[Server, OrgKeys], browser: httpx.AsyncClient
) -> None:
    """Ten concurrent reads of one connection whose token needs a refresh: every read
    succeeds and the connection stays active. The sandbox rotates refresh tokens, so two
    refreshes running at once would present the same refresh token twice: the second
    would be refused (invalid_grant, a token request without a grant) and the connection
    would need re-authorization. (That the ten share exactly one refresh is
    test_concurrent_reads_share_one_refresh, below.)"""
    server, org = short_tokens
    mine = await connect(browser, server, org, headless_body(), "user_good")
    async with api_of(server) as api:
        devices = await devices_of(api, mine.scoped_key)
        grants, requests = await sandbox_stats(browser, server)
        states = await asyncio.gather(
            *(state_of(api, mine.scoped_key, devices[i % 2].id) for i in range(10))
        )
        for state in states:
            _assert_plausible(state)
        new_grants, new_requests = await sandbox_stats(browser, server)
        assert new_grants > grants
        assert new_requests - requests == new_grants - grants, "a refresh was refused"
        connection = await connection_of(api, org, devices[0].manufacturer_connection_id)
        assert connection.status == ACTIVE


async def test_concurrent_reads_share_one_refresh(
    serve: Callable[..., Server], browser: httpx.AsyncClient
) -> None:
    """Ten concurrent reads of one connection with an expiring token: one refresh, whose
    result the others use. Without help this is a race the server loses about half the
    time (when some reads reach the token row after the first refresh was stored), so
    the gate pins that interleaving: the first read is held in flight at the device API,
    after its refresh was stored, while the nine others run."""
    async with gated_server(serve, TEXTURE_SANDBOX_TOKEN_TTL="30") as (server, gate):
        org = make_org(server.env)
        mine = await connect(browser, server, org, headless_body(), "user_good")
        async with api_of(server) as api:
            devices = await devices_of(api, mine.scoped_key)
            grants, requests = await sandbox_stats(browser, server)
            gate.hold_next_state_read()
            first = asyncio.ensure_future(state_of(api, mine.scoped_key, devices[0].id))
            await asyncio.wait_for(gate.state_held.wait(), TIMEOUT)
            assert await sandbox_stats(browser, server) == (grants + 1, requests + 1)
            try:
                others = await asyncio.gather(
                    *(state_of(api, mine.scoped_key, devices[i % 2].id) for i in range(1, 10))
                )
            finally:
                gate.release.set()
            for state in [await first, *others]:
                _assert_plausible(state)
            assert await sandbox_stats(browser, server) == (grants + 1, requests + 1)


async def test_refused_refresh_needs_reauthorization_and_a_new_session_repairs_it(
    short_tokens: tuple[Server, OrgKeys], browser: httpx.AsyncClient
) -> None:
    server, org = short_tokens
    revoked = await connect(browser, server, org, headless_body(), "user_refresh_revoked")
    customer_id = revoked.customer_id
    async with api_of(server) as api:
        old_devices = await devices_of(api, org.secret_key, customer_id=customer_id)
        connection_id = old_devices[0].manufacturer_connection_id
        grants, requests = await sandbox_stats(browser, server)
        for key in (revoked.scoped_key, org.secret_key):
            await assert_error(
                api.devices.GetDeviceState(
                    devices_pb2.GetDeviceStateRequest(device_id=old_devices[0].id),
                    metadata=auth(key),
                ),
                grpc.StatusCode.FAILED_PRECONDITION,
                "CONNECTION_NEEDS_REAUTHORIZATION",
            )
        # One refused refresh; after it, reads fail without asking the manufacturer again.
        assert await sandbox_stats(browser, server) == (grants, requests + 1)
        connection = await connection_of(api, org, connection_id)
        assert connection.status == NEEDS_REAUTHORIZATION
        assert connection.customer_id == customer_id and connection.manufacturer == "tesla"
        # The records stay readable.
        got = await api.devices.GetDevice(
            devices_pb2.GetDeviceRequest(device_id=old_devices[0].id),
            metadata=auth(revoked.scoped_key),
        )
        assert got.device.id == old_devices[0].id

        # The repair: a new session for the same customer and manufacturer, completed.
        repaired = await connect(
            browser, server, org, existing_customer_body(customer_id, "tesla"), "user_good"
        )
        assert repaired.customer_id == customer_id
        listed = await api.connections.ListManufacturerConnections(
            manufacturer_connections_pb2.ListManufacturerConnectionsRequest(
                customer_id=customer_id
            ),
            metadata=org.metadata,
        )
        assert ids(listed.manufacturer_connections) == [connection_id]
        connection = listed.manufacturer_connections[0]
        assert connection.status == ACTIVE
        new_devices = [
            d
            for d in await devices_of(api, repaired.scoped_key)
            if d.id not in set(ids(old_devices))
        ]
        assert {d.type for d in new_devices} == USER_DEVICES["user_good"]
        assert {d.manufacturer_connection_id for d in new_devices} == {connection_id}
        assert set(ids(new_devices)) <= set(connection.device_ids)
        for device in new_devices:
            for key in (repaired.scoped_key, org.secret_key):
                _assert_plausible(await state_of(api, key, device.id))


async def test_a_rejected_access_token_is_refreshed_once_and_the_read_retried(
    serve: Callable[..., Server], browser: httpx.AsyncClient
) -> None:
    """Hour-long tokens (no refresh for expiry); the manufacturer rejects an access token
    early (401 invalid_token): one refresh, one retry."""
    async with gated_server(serve) as (server, gate):
        org = make_org(server.env)
        mine = await connect(browser, server, org, headless_body(), "user_good")
        async with api_of(server) as api:
            battery = by_type(await devices_of(api, mine.scoped_key))["battery"]
            connection_id = battery.manufacturer_connection_id
            stats = await sandbox_stats(browser, server)
            _assert_plausible(await state_of(api, mine.scoped_key, battery.id))
            assert await sandbox_stats(browser, server) == stats, "no refresh needed yet"

            gate.reject_state_reads = 1
            _assert_plausible(await state_of(api, mine.scoped_key, battery.id))
            assert await sandbox_stats(browser, server) == (stats[0] + 1, stats[1] + 1)

            # Rejected again after the refresh: no loop, the manufacturer is unavailable.
            gate.reject_state_reads = 2
            await assert_error(
                api.devices.GetDeviceState(
                    devices_pb2.GetDeviceStateRequest(device_id=battery.id),
                    metadata=auth(mine.scoped_key),
                ),
                grpc.StatusCode.UNAVAILABLE,
                "MANUFACTURER_UNAVAILABLE",
            )
            assert await sandbox_stats(browser, server) == (stats[0] + 2, stats[1] + 2)
            assert (await connection_of(api, org, connection_id)).status == ACTIVE
            _assert_plausible(await state_of(api, mine.scoped_key, battery.id))
            assert await sandbox_stats(browser, server) == (stats[0] + 2, stats[1] + 2)


async def test_a_failing_token_endpoint_leaves_the_connection_active(
    serve: Callable[..., Server], browser: httpx.AsyncClient
) -> None:
    """A refresh that fails for a passing reason (HTTP 500 at the token endpoint) is not a
    refusal: the read is UNAVAILABLE, the connection stays active and the next read
    refreshes."""
    async with gated_server(serve, TEXTURE_SANDBOX_TOKEN_TTL="30") as (server, gate):
        org = make_org(server.env)
        mine = await connect(browser, server, org, headless_body(), "user_good")
        async with api_of(server) as api:
            battery = by_type(await devices_of(api, mine.scoped_key))["battery"]
            grants, requests = await sandbox_stats(browser, server)
            gate.fail_token_requests = 1
            await assert_error(
                api.devices.GetDeviceState(
                    devices_pb2.GetDeviceStateRequest(device_id=battery.id),
                    metadata=auth(mine.scoped_key),
                ),
                grpc.StatusCode.UNAVAILABLE,
                "MANUFACTURER_UNAVAILABLE",
            )
            assert await sandbox_stats(browser, server) == (grants, requests)  # never reached
            connection = await connection_of(api, org, battery.manufacturer_connection_id)
            assert connection.status == ACTIVE
            _assert_plausible(await state_of(api, mine.scoped_key, battery.id))
            assert await sandbox_stats(browser, server) == (grants + 1, requests + 1)


# ------------------------------------------------------------------- disconnect, revocation


async def test_disconnect_and_its_idempotence(shared: Shared, browser: httpx.AsyncClient) -> None:
    server, org = shared.server, shared.org
    tesla = await connect(browser, server, org, headless_body("tesla"), "user_good")
    enphase = await connect(
        browser,
        server,
        org,
        existing_customer_body(tesla.customer_id, "enphase"),
        "user_solar",
    )
    async with api_of(server) as api:
        devices = await devices_of(api, org.secret_key, customer_id=tesla.customer_id)
        tesla_devices = [d for d in devices if d.manufacturer == "tesla"]
        enphase_devices = [d for d in devices if d.manufacturer == "enphase"]
        assert len(tesla_devices) == len(enphase_devices) == 2
        connection_id = tesla_devices[0].manufacturer_connection_id
        listed = await api.connections.ListManufacturerConnections(
            manufacturer_connections_pb2.ListManufacturerConnectionsRequest(
                customer_id=tesla.customer_id
            ),
            metadata=org.metadata,
        )
        assert {c.manufacturer for c in listed.manufacturer_connections} == {"tesla", "enphase"}
        before = await connection_of(api, org, connection_id)
        assert before.status == ACTIVE and before.scope

        request = manufacturer_connections_pb2.DisconnectManufacturerConnectionRequest(
            manufacturer_connection_id=connection_id
        )
        first = await api.connections.DisconnectManufacturerConnection(
            request, metadata=org.metadata
        )
        disconnected = first.manufacturer_connection
        assert disconnected.id == connection_id and disconnected.status == DISCONNECTED
        assert set(disconnected.device_ids) == set(ids(tesla_devices))
        assert await connection_of(api, org, connection_id) == disconnected

        after = {
            d.id: d for d in await devices_of(api, org.secret_key, customer_id=tesla.customer_id)
        }
        for device in tesla_devices:
            assert after[device.id].status == devices_pb2.DEVICE_STATUS_DISCONNECTED
            await assert_error(
                api.devices.GetDeviceState(
                    devices_pb2.GetDeviceStateRequest(device_id=device.id), metadata=org.metadata
                ),
                grpc.StatusCode.FAILED_PRECONDITION,
                "CONNECTION_DISCONNECTED",
            )
        # The other manufacturer's connection, devices and key are untouched.
        for device in enphase_devices:
            assert after[device.id].status == devices_pb2.DEVICE_STATUS_CONNECTED
            _assert_plausible(await state_of(api, enphase.scoped_key, device.id))
        enphase_connection = await connection_of(
            api, org, enphase_devices[0].manufacturer_connection_id
        )
        assert enphase_connection.status == ACTIVE

        # The key minted for the disconnected connection is revoked.
        for call in (
            api.devices.ListDevices(
                devices_pb2.ListDevicesRequest(), metadata=auth(tesla.scoped_key)
            ),
            api.devices.GetDevice(
                devices_pb2.GetDeviceRequest(device_id=tesla_devices[0].id),
                metadata=auth(tesla.scoped_key),
            ),
            api.customers.GetCustomer(
                customers_pb2.GetCustomerRequest(customer_id=tesla.customer_id),
                metadata=auth(tesla.scoped_key),
            ),
        ):
            await assert_error(call, grpc.StatusCode.UNAUTHENTICATED, "API_KEY_INVALID")

        # The stored tokens are gone.
        ((access, refresh),) = query_db(
            server,
            "SELECT access_token_sealed, refresh_token_sealed FROM manufacturer_connections "
            "WHERE id = ?",
            connection_id,
        )
        assert (access, refresh) == (None, None)

        # Again: the same answer, nothing changes.
        second = await api.connections.DisconnectManufacturerConnection(
            request, metadata=org.metadata
        )
        assert second.manufacturer_connection == disconnected
        again = await devices_of(api, org.secret_key, customer_id=tesla.customer_id)
        assert {d.id: d for d in again} == after

        await assert_error(
            api.connections.DisconnectManufacturerConnection(
                manufacturer_connections_pb2.DisconnectManufacturerConnectionRequest(
                    manufacturer_connection_id=MISSING_ID
                ),
                metadata=org.metadata,
            ),
            grpc.StatusCode.NOT_FOUND,
            "MANUFACTURER_CONNECTION_NOT_FOUND",
        )
        await assert_error(
            api.connections.DisconnectManufacturerConnection(
                manufacturer_connections_pb2.DisconnectManufacturerConnectionRequest(),
                metadata=org.metadata,
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_REQUEST",
            "manufacturerConnectionId",
        )

        # Connecting again repairs the same connection.
        back = await connect(
            browser, server, org, existing_customer_body(tesla.customer_id, "tesla"), "user_good"
        )
        reconnected = await connection_of(api, org, connection_id)
        assert reconnected.status == ACTIVE
        for device in tesla_devices:
            got = await api.devices.GetDevice(
                devices_pb2.GetDeviceRequest(device_id=device.id), metadata=auth(back.scoped_key)
            )
            assert got.device.status == devices_pb2.DEVICE_STATUS_CONNECTED
            _assert_plausible(await state_of(api, back.scoped_key, device.id))


async def test_revoked_scoped_key_is_rejected(shared: Shared, browser: httpx.AsyncClient) -> None:
    server, org = shared.server, shared.org
    first = await connect(browser, server, org, headless_body(), "user_good")
    second = await connect(
        browser, server, org, existing_customer_body(first.customer_id, "tesla"), "user_good"
    )
    assert first.scoped_key != second.scoped_key
    async with api_of(server) as api:
        devices = await devices_of(api, first.scoped_key)
        assert len(devices) == 2
        revoke = manufacturer_connections_pb2.RevokeScopedKeyRequest(scoped_key=first.scoped_key)
        await api.connections.RevokeScopedKey(revoke, metadata=org.metadata)
        for call in (
            api.devices.ListDevices(
                devices_pb2.ListDevicesRequest(), metadata=auth(first.scoped_key)
            ),
            api.devices.GetDeviceState(
                devices_pb2.GetDeviceStateRequest(device_id=devices[0].id),
                metadata=auth(first.scoped_key),
            ),
            api.customers.GetSite(
                customers_pb2.GetSiteRequest(site_id=first.site_id),
                metadata=auth(first.scoped_key),
            ),
        ):
            await assert_error(call, grpc.StatusCode.UNAUTHENTICATED, "API_KEY_INVALID")
        # Idempotent; unknown scoped keys too. Anything but a scoped key is refused.
        await api.connections.RevokeScopedKey(revoke, metadata=org.metadata)
        await api.connections.RevokeScopedKey(
            manufacturer_connections_pb2.RevokeScopedKeyRequest(
                scoped_key="tx_scoped_" + secrets.token_urlsafe(32)
            ),
            metadata=org.metadata,
        )
        for not_scoped in (org.secret_key, org.connect_key, ""):
            await assert_error(
                api.connections.RevokeScopedKey(
                    manufacturer_connections_pb2.RevokeScopedKeyRequest(scoped_key=not_scoped),
                    metadata=org.metadata,
                ),
                grpc.StatusCode.INVALID_ARGUMENT,
                "INVALID_REQUEST",
                "scopedKey",
            )
        # Only that key: the customer's other key, the connection and the secret key work.
        assert ids(await devices_of(api, second.scoped_key)) == ids(devices)
        _assert_plausible(await state_of(api, second.scoped_key, devices[0].id))
        connection = await connection_of(api, org, devices[0].manufacturer_connection_id)
        assert connection.status == ACTIVE
        assert ids(await devices_of(api, org.secret_key, customer_id=first.customer_id)) == ids(
            devices
        )


# ------------------------------------------------------------ encryption at rest, rotation


async def test_tokens_stay_sealed_and_the_encryption_key_rotates(
    serve: Callable[..., Server], browser: httpx.AsyncClient, tmp_path: Path
) -> None:
    """The Texture server is restarted on the same database with a rotated
    TEXTURE_ENCRYPTION_KEY; one long-lived sandbox (the first server started, on a
    database of its own) stands in for the manufacturer, so its grants outlive the
    restarts."""
    manufacturer = serve(f"sqlite:///{tmp_path / 'manufacturer.db'}")
    sandbox = {"TEXTURE_SANDBOX_URL": f"{manufacturer.http_url}/sandbox"}
    old_key, new_key = new_encryption_key(), new_encryption_key()

    first = serve(TEXTURE_ENCRYPTION_KEY=old_key, **sandbox)
    org = make_org(first.env)
    before = await connect(browser, first, org, headless_body(), "user_good")
    async with api_of(first) as api:
        battery = by_type(await devices_of(api, before.scoped_key))["battery"]
        _assert_plausible(await state_of(api, before.scoped_key, battery.id))
    old_connection = battery.manufacturer_connection_id
    assert first.stop() == 0, first.logs()

    # Sealed with the key in use; the clear tokens are nowhere in the database files.
    access_sealed, refresh_sealed = _sealed_tokens(first, old_connection)
    access = _open(old_key, old_connection, "access", access_sealed)
    refresh = _open(old_key, old_connection, "refresh", refresh_sealed)
    assert len(access) >= 32 and len(refresh) >= 32
    stored = _database_bytes(first)
    for secret in (access, refresh, before.scoped_key, org.secret_key):
        assert secret.encode() not in stored
    assert b"Bearer" not in access_sealed + refresh_sealed
    with pytest.raises(DecryptionError):
        _open(new_key, old_connection, "access", access_sealed)
    # Bound to their row and role: the access token does not open as the refresh token.
    with pytest.raises(DecryptionError):
        _open(old_key, old_connection, "refresh", access_sealed)

    # Rotated: the new key first, the old one kept for decryption. Old values still open;
    # new values are sealed with the new key.
    rotated = serve(migrate=False, TEXTURE_ENCRYPTION_KEY=f"{new_key},{old_key}", **sandbox)
    assert rotated.env["TEXTURE_DATABASE_URL"] == first.env["TEXTURE_DATABASE_URL"]
    after = await connect(browser, rotated, org, headless_body(), "user_ev")
    async with api_of(rotated) as api:
        _assert_plausible(await state_of(api, before.scoped_key, battery.id))
        _assert_plausible(await state_of(api, org.secret_key, battery.id))
        vehicle = by_type(await devices_of(api, after.scoped_key))["vehicle"]
        _assert_plausible(await state_of(api, after.scoped_key, vehicle.id))
    new_connection = vehicle.manufacturer_connection_id
    assert rotated.stop() == 0, rotated.logs()
    for which, sealed in zip(
        ("access", "refresh"), _sealed_tokens(rotated, new_connection), strict=True
    ):
        assert len(_open(new_key, new_connection, which, sealed)) >= 32
        with pytest.raises(DecryptionError):
            _open(old_key, new_connection, which, sealed)

    # Once nothing needed is sealed with the old key, it can go.
    retired = serve(migrate=False, TEXTURE_ENCRYPTION_KEY=new_key, **sandbox)
    async with api_of(retired) as api:
        _assert_plausible(await state_of(api, after.scoped_key, vehicle.id))
