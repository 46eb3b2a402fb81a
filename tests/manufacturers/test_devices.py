"""Device adapters (devices.py): the sandbox adapter after a real authorization and code
exchange against the sandbox manufacturer served by uvicorn, and the generic JSON adapter
against a small device API written here."""

from __future__ import annotations

import dataclasses
import secrets
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from asgi_server import serving
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp

from texture_connect.domain.catalog import AuthKind, Manufacturer
from texture_connect.http.sandbox import SANDBOX_PASSWORD, create_sandbox_app
from texture_connect.manufacturers.catalog_file import DEVELOPMENT_CATALOG, load_catalog
from texture_connect.manufacturers.devices import (
    AccessTokenRejected,
    DeviceAdapter,
    DeviceApiError,
    DeviceInfo,
    DeviceNotFound,
    GenericJsonAdapter,
    SandboxAdapter,
    SubscriptionRequired,
    adapter_for,
)
from texture_connect.manufacturers.oauth import authorization_url
from texture_connect.manufacturers.tokens import TokenSet, exchange_code, refresh_tokens

SECRET = "sandbox-client-secret-" + secrets.token_hex(8)
REDIRECT_URI = "https://connect.example.test/oauth/callback"


def catalog_manufacturer(sandbox_url: str, slug: str) -> Manufacturer:
    m = load_catalog(DEVELOPMENT_CATALOG, sandbox_url=sandbox_url).get(slug)
    assert m is not None
    return m


@dataclass
class Sandbox:
    url: str  # where the sandbox app is mounted, e.g. http://127.0.0.1:PORT/sandbox

    def manufacturer(self, slug: str = "tesla") -> Manufacturer:
        return catalog_manufacturer(self.url, slug)

    async def connect(self, username: str, slug: str = "tesla") -> TokenSet:
        """A real authorization (sign-in form, PKCE) followed by the code exchange."""
        m = self.manufacturer(slug)
        verifier = secrets.token_urlsafe(48)
        state = secrets.token_urlsafe(16)
        url = authorization_url(m, state=state, code_verifier=verifier, redirect_uri=REDIRECT_URI)
        async with httpx.AsyncClient() as http:
            response = await http.post(
                url,
                data={"username": username, "password": SANDBOX_PASSWORD, "decision": "allow"},
            )
        assert response.status_code == 302, response.text
        query = parse_qs(urlsplit(response.headers["location"]).query)
        assert query["state"] == [state]
        return await exchange_code(
            m,
            code=query["code"][0],
            code_verifier=verifier,
            redirect_uri=REDIRECT_URI,
            client_secret=SECRET,
        )

    def adapter(self, slug: str = "tesla") -> DeviceAdapter:
        return adapter_for(self.manufacturer(slug), sandbox_url=self.url)


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    def make(origin: str) -> ASGIApp:
        app = create_sandbox_app(base_url=f"{origin}/sandbox", clients={"texture-dev": SECRET})
        return Starlette(routes=[Mount("/sandbox", app=app)])

    async with serving(make) as origin:
        yield Sandbox(f"{origin}/sandbox")


# ---------------------------------------------------------------------------- the sandbox


async def test_user_good_has_a_battery_and_a_thermostat(sandbox: Sandbox) -> None:
    tokens = await sandbox.connect("user_good")
    adapter = sandbox.adapter()
    assert isinstance(adapter, SandboxAdapter)
    assert adapter.api_base == f"{sandbox.url}/tesla/api"

    devices = await adapter.list_devices(tokens.access_token)

    assert [(d.type, d.model, d.name) for d in devices] == [
        ("battery", "SBX-BAT-13", "Home Battery"),
        ("thermostat", "SBX-TSTAT-2", "Hallway Thermostat"),
    ]
    for device in devices:
        assert device.id.startswith("dev_")
        assert device.serial_number.startswith("SBX")
        assert device.manufacturer == "tesla"
    assert len({d.id for d in devices}) == 2

    battery = await adapter.read_state(tokens.access_token, devices[0].id)
    assert battery.device_id == devices[0].id
    assert battery.type == "battery"
    assert 0 <= battery.values["chargePercentage"] <= 100
    assert battery.values["chargingState"] in ("charging", "discharging", "idle")
    assert "readAt" not in battery.values
    assert battery.read_at.tzinfo is not None
    assert abs((datetime.now(UTC) - battery.read_at).total_seconds()) < 60

    thermostat = await adapter.read_state(tokens.access_token, devices[1].id)
    assert thermostat.type == "thermostat"
    assert thermostat.values["temperatureUnit"] == "celsius"
    assert {"mode", "heatSetpoint", "coolSetpoint", "ambientTemperature"} <= set(thermostat.values)


async def test_reconnecting_gives_the_same_devices(sandbox: Sandbox) -> None:
    adapter = sandbox.adapter("enphase")
    first = await adapter.list_devices((await sandbox.connect("user_ev", "enphase")).access_token)
    again = await adapter.list_devices((await sandbox.connect("user_ev", "enphase")).access_token)

    assert first == again
    assert [d.type for d in first] == ["vehicle", "charger"]
    assert {d.manufacturer for d in first} == {"enphase"}


async def test_user_no_subscription_needs_a_subscription(sandbox: Sandbox) -> None:
    tokens = await sandbox.connect("user_no_subscription")
    adapter = sandbox.adapter()

    with pytest.raises(SubscriptionRequired) as caught:
        await adapter.list_devices(tokens.access_token)
    assert caught.value.status == 403
    assert tokens.access_token not in str(caught.value)

    with pytest.raises(SubscriptionRequired):
        await adapter.read_state(tokens.access_token, "dev_anything")


async def test_user_incompatible_has_one_unknown_gadget(sandbox: Sandbox) -> None:
    tokens = await sandbox.connect("user_incompatible")
    adapter = sandbox.adapter()

    devices = await adapter.list_devices(tokens.access_token)

    assert len(devices) == 1
    assert devices[0].type == "unknown_gadget"
    state = await adapter.read_state(tokens.access_token, devices[0].id)
    assert state.type == "unknown_gadget"
    assert state.values == {"status": "unknown"}


async def test_someone_elses_device_is_not_found(sandbox: Sandbox) -> None:
    good = await sandbox.connect("user_good")
    solar = await sandbox.connect("user_solar")
    adapter = sandbox.adapter()
    theirs = (await adapter.list_devices(solar.access_token))[0]

    with pytest.raises(DeviceNotFound):
        await adapter.read_state(good.access_token, theirs.id)


async def test_a_bad_access_token_is_rejected(sandbox: Sandbox) -> None:
    bogus = "bogus-token-" + secrets.token_hex(8)

    with pytest.raises(AccessTokenRejected) as caught:
        await sandbox.adapter().list_devices(bogus)

    assert caught.value.status == 401
    assert isinstance(caught.value, DeviceApiError)
    assert bogus not in str(caught.value)


async def test_a_token_only_works_at_its_manufacturer(sandbox: Sandbox) -> None:
    tokens = await sandbox.connect("user_good", "tesla")

    with pytest.raises(AccessTokenRejected):
        await sandbox.adapter("daikin").list_devices(tokens.access_token)


async def test_refreshed_tokens_read_devices(sandbox: Sandbox) -> None:
    first = await sandbox.connect("user_good", "honeywell")
    assert first.refresh_token is not None
    second = await refresh_tokens(
        sandbox.manufacturer("honeywell"), refresh_token=first.refresh_token, client_secret=SECRET
    )
    adapter = sandbox.adapter("honeywell")

    assert await adapter.list_devices(second.access_token) == await adapter.list_devices(
        first.access_token  # still valid until it expires
    )


async def test_an_unreachable_device_api_is_a_device_api_error() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/sandbox"
        with pytest.raises(DeviceApiError) as caught:
            await adapter_for(catalog_manufacturer(url, "tesla"), sandbox_url=url).list_devices(
                "token-xyz"
            )

    assert type(caught.value) is DeviceApiError
    assert caught.value.status is None


# ---------------------------------------------------------------------- generic_json adapter

TOKEN = "generic-access-token-" + secrets.token_hex(8)


@dataclass
class FakeDeviceApi:
    """A generic_json manufacturer; ``devices`` is what GET /v1/devices answers."""

    devices: Any = dataclasses.field(default_factory=list)
    list_status: int = 200
    state: Callable[[str], Response] | None = None
    requests: list[str] = dataclasses.field(default_factory=list)

    def app(self, origin: str) -> ASGIApp:
        def authorized(request: Request) -> bool:
            self.requests.append(request.url.path)
            return request.headers.get("authorization") == f"Bearer {TOKEN}"

        async def list_devices(request: Request) -> Response:
            if not authorized(request):
                return JSONResponse({"error": "invalid_token"}, status_code=401)
            if isinstance(self.devices, Response):
                return self.devices
            return JSONResponse(self.devices, status_code=self.list_status)

        async def device_state(request: Request) -> Response:
            if not authorized(request):
                return JSONResponse({"error": "invalid_token"}, status_code=401)
            device_id = request.path_params["device_id"]
            if self.state is not None:
                return self.state(device_id)
            return JSONResponse({"error": "not_found"}, status_code=404)

        return Starlette(
            routes=[
                Route("/v1/devices", list_devices),
                Route("/v1/devices/{device_id}/state", device_state),
            ]
        )


def generic_manufacturer(origin: str) -> Manufacturer:
    return Manufacturer(
        slug="acme",
        display_name="Acme Energy",
        device_types=("battery", "charger"),
        auth_kind=AuthKind.OAUTH2,
        adapter="generic_json",
        device_api_url=f"{origin}/v1/devices",
    )


@asynccontextmanager
async def generic(api: FakeDeviceApi) -> AsyncIterator[DeviceAdapter]:
    async with serving(api.app) as origin:
        yield adapter_for(generic_manufacturer(origin), sandbox_url="http://unused.test")


ACME_BATTERY = {
    "id": "b-1",
    "type": "battery",
    "model": "PW-3",
    "serialNumber": "SN-1",
    "name": "Home Battery",
}
ACME_CHARGER = {"id": 42, "type": "charger", "model": "W-1", "serial_number": "SN-2", "name": "EV"}
EXPECTED = [
    DeviceInfo("b-1", "battery", "acme", "PW-3", "SN-1", "Home Battery"),
    DeviceInfo("42", "charger", "acme", "W-1", "SN-2", "EV"),
]


@pytest.mark.parametrize(
    "body",
    [[ACME_BATTERY, ACME_CHARGER], {"devices": [ACME_BATTERY, ACME_CHARGER]}],
    ids=["top-level-list", "devices-object"],
)
async def test_generic_json_reads_both_list_forms(body: Any) -> None:
    api = FakeDeviceApi(devices=body)
    async with generic(api) as adapter:
        assert isinstance(adapter, GenericJsonAdapter)
        assert await adapter.list_devices(TOKEN) == EXPECTED


async def test_generic_json_optional_fields_and_an_empty_list() -> None:
    api = FakeDeviceApi(devices=[{"id": "x", "type": "meter", "manufacturer": "acme-sub"}])
    async with generic(api) as adapter:
        assert await adapter.list_devices(TOKEN) == [
            DeviceInfo("x", "meter", "acme-sub", "", "", "")
        ]
        api.devices = {"devices": []}
        assert await adapter.list_devices(TOKEN) == []


@pytest.mark.parametrize("status", [402, 403])
async def test_generic_json_subscription_required(status: int) -> None:
    api = FakeDeviceApi(devices={"error": "subscription_required"}, list_status=status)
    async with generic(api) as adapter:
        with pytest.raises(SubscriptionRequired) as caught:
            await adapter.list_devices(TOKEN)

    assert caught.value.status == status


async def test_generic_json_reads_a_state() -> None:
    def state(device_id: str) -> Response:
        if device_id != "b-1":
            return JSONResponse({"error": "not_found"}, status_code=404)
        return JSONResponse({"chargePercentage": 81, "readAt": "2025-06-15T17:06:40+02:00"})

    api = FakeDeviceApi(devices=[ACME_BATTERY], state=state)
    async with generic(api) as adapter:
        reading = await adapter.read_state(TOKEN, "b-1")

    assert reading.device_id == "b-1"
    assert reading.type == "battery"
    assert reading.values == {"chargePercentage": 81}
    assert reading.read_at == datetime(2025, 6, 15, 15, 6, 40, tzinfo=UTC)
    assert reading.read_at.tzinfo is UTC
    assert api.requests == ["/v1/devices", "/v1/devices/b-1/state"]


async def test_generic_json_state_without_a_timestamp_is_read_now() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    api = FakeDeviceApi(devices=[ACME_BATTERY], state=lambda _: JSONResponse({"powerW": -500}))
    async with serving(api.app) as origin:
        adapter = GenericJsonAdapter(generic_manufacturer(origin), clock=lambda: now)
        reading = await adapter.read_state(TOKEN, "b-1")

    assert reading.values == {"powerW": -500}
    assert reading.read_at == now


async def test_generic_json_unknown_devices_and_bad_tokens() -> None:
    api = FakeDeviceApi(devices=[ACME_BATTERY])
    async with generic(api) as adapter:
        with pytest.raises(DeviceNotFound):
            await adapter.read_state(TOKEN, "not-mine")
        with pytest.raises(DeviceNotFound):  # listed, but the state endpoint says 404
            await adapter.read_state(TOKEN, "b-1")
        with pytest.raises(AccessTokenRejected):
            await adapter.list_devices("wrong-token")


@pytest.mark.parametrize(
    "answer",
    [
        JSONResponse({"error": "server_error"}, status_code=500),
        JSONResponse({"error": "forbidden"}, status_code=403),
        PlainTextResponse("<html>maintenance</html>", status_code=200),
        JSONResponse({"items": []}),
        JSONResponse("devices"),
        JSONResponse([{"type": "battery"}]),
        JSONResponse([{"id": "1"}]),
        JSONResponse([{"id": True, "type": "battery"}]),
        JSONResponse([{"id": "1", "type": "battery", "name": 7}]),
        JSONResponse(["b-1"]),
    ],
    ids=[
        "http-500",
        "http-403-other",
        "not-json",
        "no-devices-member",
        "json-string",
        "no-id",
        "no-type",
        "boolean-id",
        "non-string-name",
        "not-an-object",
    ],
)
async def test_generic_json_odd_device_lists_are_device_api_errors(answer: Response) -> None:
    api = FakeDeviceApi(devices=answer)
    async with generic(api) as adapter:
        with pytest.raises(DeviceApiError) as caught:
            await adapter.list_devices(TOKEN)

    assert type(caught.value) is DeviceApiError
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize(
    "answer",
    [
        JSONResponse(["not", "an", "object"]),
        JSONResponse({"readAt": "yesterday"}),
        JSONResponse({"readAt": 1750000000}),
        JSONResponse({"error": "server_error"}, status_code=502),
    ],
)
async def test_generic_json_odd_states_are_device_api_errors(answer: Response) -> None:
    api = FakeDeviceApi(devices=[ACME_BATTERY], state=lambda _: answer)
    async with generic(api) as adapter:
        with pytest.raises(DeviceApiError) as caught:
            await adapter.read_state(TOKEN, "b-1")

    assert type(caught.value) is DeviceApiError


async def test_an_injected_client_is_used() -> None:
    api = FakeDeviceApi(devices=[ACME_BATTERY])
    origin = "http://acme.test"
    transport = httpx.ASGITransport(app=api.app(origin))
    async with httpx.AsyncClient(transport=transport) as client:
        adapter = GenericJsonAdapter(generic_manufacturer(origin), client=client)
        assert await adapter.list_devices(TOKEN) == EXPECTED[:1]
        assert not client.is_closed  # the adapter does not close a client it was given


def test_adapter_for_follows_the_catalog() -> None:
    tesla = catalog_manufacturer("http://sandbox.test/sandbox", "tesla")
    adapter = adapter_for(tesla, sandbox_url="http://sandbox.test/sandbox/")
    assert isinstance(adapter, SandboxAdapter)
    assert adapter.api_base == "http://sandbox.test/sandbox/tesla/api"

    assert isinstance(
        adapter_for(generic_manufacturer("http://acme.test"), sandbox_url=""), GenericJsonAdapter
    )
    with pytest.raises(ValueError, match="carrier_pigeon"):
        adapter_for(dataclasses.replace(tesla, adapter="carrier_pigeon"), sandbox_url="")
    with pytest.raises(ValueError, match="device_api_url"):
        GenericJsonAdapter(dataclasses.replace(tesla, adapter="generic_json"))
