"""Tests for the sandbox manufacturer (OAuth 2.0 authorization server + device API)."""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from starlette.applications import Starlette
from starlette.routing import Mount

from texture_connect.http.sandbox import SANDBOX_USERS, create_sandbox_app

ORIGIN = "http://127.0.0.1:8080"
SANDBOX_URL = f"{ORIGIN}/sandbox"
CLIENT_ID = "texture-dev"
CLIENT_SECRET = "dev-secret"
# A redirect URI with its own query, which the sandbox must keep (RFC 6749 §3.1.2).
REDIRECT_URI = "https://connect.example.test/oauth/callback?flow=headless"
TTL = 3600


class FakeClock:
    def __init__(self, now: float = 1_750_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def mount(clock: FakeClock) -> Starlette:
    sandbox = create_sandbox_app(
        base_url=SANDBOX_URL,
        clients={CLIENT_ID: CLIENT_SECRET, "other-client": "other-secret"},
        access_token_ttl=TTL,
        clock=clock,
    )
    return Starlette(routes=[Mount("/sandbox", app=sandbox)])


@pytest.fixture
async def client(clock: FakeClock) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=mount(clock))
    async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as http:
        yield http


# ------------------------------------------------------------------------------------ helpers


def new_pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    return verifier, create_s256_code_challenge(verifier)


def authorize_params(challenge: str | None, **overrides: str | None) -> dict[str, str]:
    params: dict[str, str | None] = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "scope": "devices:read",
        "state": "st-123",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    params.update(overrides)
    return {key: value for key, value in params.items() if value is not None}


async def sign_in(
    client: httpx.AsyncClient,
    manufacturer: str,
    username: str,
    *,
    challenge: str | None = None,
    password: str = "pass_good",
    decision: str = "allow",
    params: Mapping[str, str] | None = None,
) -> httpx.Response:
    if params is None:
        params = authorize_params(challenge or new_pkce()[1])
    return await client.post(
        f"/sandbox/{manufacturer}/oauth/authorize",
        params=params,
        data={"username": username, "password": password, "decision": decision},
    )


def redirect_query(response: httpx.Response, manufacturer: str) -> dict[str, str]:
    """Assert a well-formed authorization response redirect and return its parameters."""
    assert response.status_code == 302, response.text
    assert response.headers["cache-control"] == "no-store"
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT_URI.split("?")[0]
    query = parse_qs(location.query, keep_blank_values=True)
    assert all(len(values) == 1 for values in query.values()), query
    flat = {key: values[0] for key, values in query.items()}
    assert flat.pop("flow") == "headless"  # the redirect URI's own query survives
    # RFC 9207: iss on every authorization response.
    assert flat["iss"] == f"{SANDBOX_URL}/{manufacturer}"
    return flat


async def get_code(
    client: httpx.AsyncClient, manufacturer: str, username: str = "user_good"
) -> tuple[str, str]:
    verifier, challenge = new_pkce()
    query = redirect_query(
        await sign_in(client, manufacturer, username, challenge=challenge), manufacturer
    )
    assert query["state"] == "st-123"
    return query["code"], verifier


def basic(client_id: str = CLIENT_ID, secret: str = CLIENT_SECRET) -> dict[str, str]:
    raw = f"{client_id}:{secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


async def exchange(
    client: httpx.AsyncClient,
    manufacturer: str,
    code: str,
    verifier: str,
    *,
    redirect_uri: str = REDIRECT_URI,
) -> httpx.Response:
    return await client.post(
        f"/sandbox/{manufacturer}/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        },
        headers=basic(),
    )


async def connect(
    client: httpx.AsyncClient, manufacturer: str, username: str = "user_good"
) -> dict[str, Any]:
    code, verifier = await get_code(client, manufacturer, username)
    response = await exchange(client, manufacturer, code, verifier)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def refresh(
    client: httpx.AsyncClient, manufacturer: str, refresh_token: str
) -> httpx.Response:
    return await client.post(
        f"/sandbox/{manufacturer}/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        },
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_oauth_error(response: httpx.Response, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store"
    assert response.json()["error"] == error
    assert response.json()["error_description"]


# ------------------------------------------------------------------------- metadata and form


async def test_metadata(client: httpx.AsyncClient) -> None:
    response = await client.get("/sandbox/tesla/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    body = response.json()
    issuer = f"{SANDBOX_URL}/tesla"
    assert body["issuer"] == issuer
    assert body["authorization_endpoint"] == f"{issuer}/oauth/authorize"
    assert body["token_endpoint"] == f"{issuer}/oauth/token"
    assert body["code_challenge_methods_supported"] == ["S256"]
    assert body["authorization_response_iss_parameter_supported"] is True
    assert set(body["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
    }


async def test_unknown_manufacturer_slug_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/sandbox/Tesla!/.well-known/oauth-authorization-server")
    assert response.status_code == 404


async def test_get_authorize_renders_escaped_sign_in_form(client: httpx.AsyncClient) -> None:
    _, challenge = new_pkce()
    params = authorize_params(challenge, state='<script>alert("x")</script>')
    response = await client.get("/sandbox/enphase/oauth/authorize", params=params)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    html = response.text
    assert '<label for="username">' in html
    assert '<label for="password">' in html
    assert 'name="username"' in html
    assert 'type="password" id="password" name="password"' in html
    assert 'name="decision" value="allow"' in html
    assert 'name="decision" value="deny"' in html
    assert f'<input type="hidden" name="code_challenge" value="{challenge}">' in html
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    action = re.search(r'<form method="post" action="([^"]+)"', html)
    assert action is not None
    assert action.group(1).startswith(f"{SANDBOX_URL}/enphase/oauth/authorize?")


async def test_form_post_with_hidden_fields_only(client: httpx.AsyncClient) -> None:
    # A browser form that lost the query string still carries the request as hidden inputs.
    verifier, challenge = new_pkce()
    data = {
        **authorize_params(challenge),
        "username": "user_good",
        "password": "pass_good",
        "decision": "allow",
    }
    response = await client.post("/sandbox/tesla/oauth/authorize", data=data)
    code = redirect_query(response, "tesla")["code"]
    assert (await exchange(client, "tesla", code, verifier)).status_code == 200


# ------------------------------------------------------------------------ authorization code


async def test_full_code_pkce_grant(client: httpx.AsyncClient) -> None:
    verifier, challenge = new_pkce()
    response = await sign_in(client, "tesla", "user_good", challenge=challenge)
    query = redirect_query(response, "tesla")
    assert set(query) == {"code", "state", "iss"}
    assert query["state"] == "st-123"

    token_response = await exchange(client, "tesla", query["code"], verifier)
    assert token_response.status_code == 200, token_response.text
    assert token_response.headers["cache-control"] == "no-store"
    body = token_response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token", "scope"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == TTL
    assert body["scope"] == "devices:read"
    assert len(body["access_token"]) >= 43
    assert body["access_token"] != body["refresh_token"]

    devices = await client.get("/sandbox/tesla/api/devices", headers=bearer(body["access_token"]))
    assert devices.status_code == 200
    assert [d["type"] for d in devices.json()["devices"]] == ["battery", "thermostat"]


async def test_client_secret_post_is_accepted(client: httpx.AsyncClient) -> None:
    code, verifier = await get_code(client, "daikin")
    response = await client.post(
        "/sandbox/daikin/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        },
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("headers", "extra"),
    [
        pytest.param(basic(secret="nope"), {}, id="basic-wrong-secret"),
        pytest.param(basic(client_id="stranger"), {}, id="basic-unknown-client"),
        pytest.param({}, {"client_id": CLIENT_ID, "client_secret": "nope"}, id="post-wrong"),
        pytest.param({}, {"client_id": CLIENT_ID}, id="post-no-secret"),
        pytest.param({}, {}, id="no-auth"),
        pytest.param({"Authorization": "Basic !!!"}, {}, id="basic-garbage"),
    ],
)
async def test_token_endpoint_rejects_bad_client_auth(
    client: httpx.AsyncClient, headers: dict[str, str], extra: dict[str, str]
) -> None:
    code, verifier = await get_code(client, "tesla")
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier,
        **extra,
    }
    response = await client.post("/sandbox/tesla/oauth/token", data=data, headers=headers)
    assert_oauth_error(response, 401, "invalid_client")
    assert response.headers["www-authenticate"].startswith("Basic")


async def test_code_issued_to_another_client_is_invalid_grant(
    client: httpx.AsyncClient,
) -> None:
    code, verifier = await get_code(client, "tesla")
    response = await client.post(
        "/sandbox/tesla/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        },
        headers=basic("other-client", "other-secret"),
    )
    assert_oauth_error(response, 400, "invalid_grant")


async def test_wrong_verifier_is_invalid_grant(client: httpx.AsyncClient) -> None:
    code, _ = await get_code(client, "tesla")
    wrong, _ = new_pkce()
    assert_oauth_error(await exchange(client, "tesla", code, wrong), 400, "invalid_grant")


async def test_missing_verifier_is_rejected(client: httpx.AsyncClient) -> None:
    code, _ = await get_code(client, "tesla")
    response = await client.post(
        "/sandbox/tesla/oauth/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI},
        headers=basic(),
    )
    assert_oauth_error(response, 400, "invalid_request")


async def test_reused_code_is_invalid_grant_and_revokes_tokens(
    client: httpx.AsyncClient,
) -> None:
    code, verifier = await get_code(client, "tesla")
    first = await exchange(client, "tesla", code, verifier)
    assert first.status_code == 200
    tokens = first.json()

    assert_oauth_error(await exchange(client, "tesla", code, verifier), 400, "invalid_grant")
    # RFC 6749 §4.1.2: tokens issued from a replayed code are revoked.
    devices = await client.get("/sandbox/tesla/api/devices", headers=bearer(tokens["access_token"]))
    assert devices.status_code == 401
    assert_oauth_error(
        await refresh(client, "tesla", tokens["refresh_token"]), 400, "invalid_grant"
    )


async def test_expired_code_is_invalid_grant(client: httpx.AsyncClient, clock: FakeClock) -> None:
    code, verifier = await get_code(client, "tesla")
    clock.advance(60)
    assert_oauth_error(await exchange(client, "tesla", code, verifier), 400, "invalid_grant")


async def test_code_still_valid_just_before_expiry(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    code, verifier = await get_code(client, "tesla")
    clock.advance(59)
    assert (await exchange(client, "tesla", code, verifier)).status_code == 200


async def test_code_for_another_manufacturer_is_invalid_grant(client: httpx.AsyncClient) -> None:
    code, verifier = await get_code(client, "tesla")
    assert_oauth_error(await exchange(client, "enphase", code, verifier), 400, "invalid_grant")
    # The code was not burned by the attempt at the wrong issuer.
    assert (await exchange(client, "tesla", code, verifier)).status_code == 200


async def test_redirect_uri_mismatch_is_invalid_grant(client: httpx.AsyncClient) -> None:
    code, verifier = await get_code(client, "tesla")
    response = await exchange(
        client, "tesla", code, verifier, redirect_uri="https://connect.example.test/oauth/callback"
    )
    assert_oauth_error(response, 400, "invalid_grant")


async def test_unknown_grant_type(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/sandbox/tesla/oauth/token", data={"grant_type": "password"}, headers=basic()
    )
    assert_oauth_error(response, 400, "unsupported_grant_type")


async def test_token_endpoint_requires_form_encoding(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/sandbox/tesla/oauth/token", json={"grant_type": "refresh_token"}, headers=basic()
    )
    assert_oauth_error(response, 400, "invalid_request")


# ------------------------------------------------------------------ authorization-time errors


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        pytest.param({"code_challenge": None}, "invalid_request", id="missing-challenge"),
        pytest.param({"code_challenge_method": "plain"}, "invalid_request", id="plain"),
        pytest.param({"code_challenge_method": None}, "invalid_request", id="missing-method"),
        pytest.param({"code_challenge": "too-short"}, "invalid_request", id="bad-challenge"),
        pytest.param({"response_type": "token"}, "unsupported_response_type", id="implicit"),
        pytest.param({"response_type": None}, "invalid_request", id="missing-response-type"),
        pytest.param({"scope": 'bad"scope'}, "invalid_scope", id="bad-scope"),
    ],
)
@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_invalid_authorization_request_redirects_with_error(
    client: httpx.AsyncClient, overrides: dict[str, str | None], error: str, method: str
) -> None:
    params = authorize_params(new_pkce()[1], **overrides)
    if method == "GET":
        response = await client.get("/sandbox/honeywell/oauth/authorize", params=params)
    else:
        response = await sign_in(client, "honeywell", "user_good", params=params)
    query = redirect_query(response, "honeywell")
    assert query["error"] == error
    assert query["state"] == "st-123"
    assert query["error_description"]
    assert "code" not in query


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"client_id": "stranger"}, id="unknown-client"),
        pytest.param({"client_id": None}, id="missing-client"),
        pytest.param({"redirect_uri": None}, id="missing-redirect"),
        pytest.param({"redirect_uri": "/oauth/callback"}, id="relative-redirect"),
        pytest.param({"redirect_uri": "javascript:alert(1)"}, id="javascript-redirect"),
        pytest.param({"redirect_uri": "ftp://example.test/cb"}, id="ftp-redirect"),
        pytest.param({"redirect_uri": "https://example.test/cb#frag"}, id="fragment-redirect"),
    ],
)
@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_invalid_client_or_redirect_uri_never_redirects(
    client: httpx.AsyncClient, overrides: dict[str, str | None], method: str
) -> None:
    # Even with a missing challenge, which would otherwise be an error redirect.
    params = authorize_params(None, **overrides)
    if method == "GET":
        response = await client.get("/sandbox/tesla/oauth/authorize", params=params)
    else:
        response = await sign_in(client, "tesla", "user_good", params=params)
    assert response.status_code == 400
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store"


async def test_repeated_client_id_never_redirects(client: httpx.AsyncClient) -> None:
    params = [*authorize_params(new_pkce()[1]).items(), ("client_id", "other-client")]
    response = await client.get(f"/sandbox/tesla/oauth/authorize?{urlencode(params)}")
    assert response.status_code == 400
    assert "location" not in response.headers


@pytest.mark.parametrize(
    ("username", "password"),
    [("user_good", "pass_bad"), ("nobody", "pass_good"), ("user_good", "")],
)
async def test_wrong_credentials_rerender_the_form(
    client: httpx.AsyncClient, username: str, password: str
) -> None:
    response = await sign_in(client, "tesla", username, password=password)
    assert response.status_code == 200
    assert "location" not in response.headers
    assert "Wrong username or password" in response.text
    assert 'name="password"' in response.text
    assert response.headers["cache-control"] == "no-store"


async def test_missing_decision_rerenders_the_form(client: httpx.AsyncClient) -> None:
    response = await sign_in(client, "tesla", "user_good", decision="")
    assert response.status_code == 400
    assert "location" not in response.headers


@pytest.mark.parametrize("username", ["user_good", "user_ev", "nobody"])
async def test_deny_answers_access_denied(client: httpx.AsyncClient, username: str) -> None:
    response = await sign_in(client, "tesla", username, decision="deny", password="")
    query = redirect_query(response, "tesla")
    assert query["error"] == "access_denied"
    assert query["state"] == "st-123"
    assert query["error_description"]
    assert "code" not in query


@pytest.mark.parametrize(
    ("username", "error"),
    [
        ("user_denied", "access_denied"),
        ("user_vendor_denied", "login_cancelled"),
        ("user_server_error", "server_error"),
        ("user_unavailable", "temporarily_unavailable"),
        ("user_weird", "quantum_flux_detected"),
    ],
)
async def test_scripted_authorization_errors(
    client: httpx.AsyncClient, username: str, error: str
) -> None:
    query = redirect_query(await sign_in(client, "enphase", username), "enphase")
    assert query == {
        "error": error,
        "error_description": query["error_description"],
        "state": "st-123",
        "iss": f"{SANDBOX_URL}/enphase",
    }
    assert query["error_description"]


async def test_error_redirect_without_state_omits_state(client: httpx.AsyncClient) -> None:
    params = authorize_params(new_pkce()[1], state=None)
    query = redirect_query(await sign_in(client, "tesla", "user_denied", params=params), "tesla")
    assert query["error"] == "access_denied"
    assert "state" not in query


async def test_token_fail_user_gets_500_at_token_endpoint(client: httpx.AsyncClient) -> None:
    code, verifier = await get_code(client, "tesla", "user_token_fail")
    response = await exchange(client, "tesla", code, verifier)
    assert response.status_code == 500
    assert response.json()["error"] == "server_error"


async def test_no_subscription_user_gets_403_from_device_api(client: httpx.AsyncClient) -> None:
    tokens = await connect(client, "tesla", "user_no_subscription")
    response = await client.get(
        "/sandbox/tesla/api/devices", headers=bearer(tokens["access_token"])
    )
    assert response.status_code == 403
    assert response.json()["error"] == "subscription_required"
    state = await client.get(
        "/sandbox/tesla/api/devices/dev_x/state", headers=bearer(tokens["access_token"])
    )
    assert state.status_code == 403
    assert state.json()["error"] == "subscription_required"


async def test_incompatible_user_has_only_an_unknown_gadget(client: httpx.AsyncClient) -> None:
    tokens = await connect(client, "tesla", "user_incompatible")
    response = await client.get(
        "/sandbox/tesla/api/devices", headers=bearer(tokens["access_token"])
    )
    assert [d["type"] for d in response.json()["devices"]] == ["unknown_gadget"]


# ---------------------------------------------------------------------------------- refresh


async def test_refresh_tokens_rotate(client: httpx.AsyncClient) -> None:
    first = await connect(client, "tesla")
    second_response = await refresh(client, "tesla", first["refresh_token"])
    assert second_response.status_code == 200, second_response.text
    assert second_response.headers["cache-control"] == "no-store"
    second = second_response.json()
    assert second["token_type"] == "Bearer"
    assert second["scope"] == "devices:read"
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]

    # The old refresh token died with the rotation.
    assert_oauth_error(await refresh(client, "tesla", first["refresh_token"]), 400, "invalid_grant")
    third = await refresh(client, "tesla", second["refresh_token"])
    assert third.status_code == 200

    devices = await client.get("/sandbox/tesla/api/devices", headers=bearer(second["access_token"]))
    assert devices.status_code == 200


async def test_refresh_token_is_bound_to_manufacturer_and_client(
    client: httpx.AsyncClient,
) -> None:
    tokens = await connect(client, "tesla")
    assert_oauth_error(
        await refresh(client, "enphase", tokens["refresh_token"]), 400, "invalid_grant"
    )
    response = await client.post(
        "/sandbox/tesla/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        headers=basic("other-client", "other-secret"),
    )
    assert_oauth_error(response, 400, "invalid_grant")
    assert (await refresh(client, "tesla", tokens["refresh_token"])).status_code == 200


async def test_refresh_cannot_widen_scope(client: httpx.AsyncClient) -> None:
    tokens = await connect(client, "tesla")
    response = await client.post(
        "/sandbox/tesla/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "scope": "devices:read devices:control",
        },
        headers=basic(),
    )
    assert_oauth_error(response, 400, "invalid_scope")


# ------------------------------------------------------------------------------- device API


async def test_device_api_requires_bearer(client: httpx.AsyncClient) -> None:
    response = await client.get("/sandbox/tesla/api/devices")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")

    response = await client.get("/sandbox/tesla/api/devices", headers=bearer("made-up"))
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_expired_access_token_is_401(client: httpx.AsyncClient, clock: FakeClock) -> None:
    tokens = await connect(client, "tesla")
    headers = bearer(tokens["access_token"])
    clock.advance(TTL - 1)
    assert (await client.get("/sandbox/tesla/api/devices", headers=headers)).status_code == 200
    clock.advance(1)
    response = await client.get("/sandbox/tesla/api/devices", headers=headers)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    # A refresh brings the connection back.
    renewed = await refresh(client, "tesla", tokens["refresh_token"])
    assert renewed.status_code == 200
    new_headers = bearer(renewed.json()["access_token"])
    assert (await client.get("/sandbox/tesla/api/devices", headers=new_headers)).status_code == 200


async def test_access_token_is_bound_to_its_manufacturer(client: httpx.AsyncClient) -> None:
    tokens = await connect(client, "tesla")
    response = await client.get(
        "/sandbox/enphase/api/devices", headers=bearer(tokens["access_token"])
    )
    assert response.status_code == 401


async def test_device_list_shape_and_stable_ids(client: httpx.AsyncClient) -> None:
    first = await connect(client, "enphase", "user_solar")
    again = await connect(client, "enphase", "user_solar")
    other = await connect(client, "tesla", "user_solar")

    async def devices(manufacturer: str, tokens: dict[str, Any]) -> list[dict[str, Any]]:
        response = await client.get(
            f"/sandbox/{manufacturer}/api/devices", headers=bearer(tokens["access_token"])
        )
        assert response.status_code == 200
        result: list[dict[str, Any]] = response.json()["devices"]
        return result

    listed = await devices("enphase", first)
    assert [d["type"] for d in listed] == ["inverter", "battery"]
    for device in listed:
        assert set(device) == {"id", "type", "manufacturer", "model", "serialNumber", "name"}
        assert device["manufacturer"] == "enphase"
        assert all(isinstance(value, str) and value for value in device.values())
    # Reconnecting the same account yields the same ids; another manufacturer, other ids.
    assert await devices("enphase", again) == listed
    assert {d["id"] for d in await devices("tesla", other)}.isdisjoint({d["id"] for d in listed})


def assert_read_at(state: dict[str, Any], clock: FakeClock) -> None:
    read_at = state["readAt"]
    assert read_at.endswith("Z")
    assert datetime.fromisoformat(read_at).timestamp() == int(clock.now)


@pytest.mark.parametrize(
    ("username", "expected"),
    [
        (
            "user_good",
            {
                "battery": {"chargePercentage", "backupReserve", "chargingState", "powerW"},
                "thermostat": {
                    "mode",
                    "heatSetpoint",
                    "coolSetpoint",
                    "ambientTemperature",
                    "temperatureUnit",
                },
            },
        ),
        (
            "user_ev",
            {
                "vehicle": {"chargePercentage", "rangeKm", "pluggedIn", "charging"},
                "charger": {"status", "powerW", "sessionEnergyKwh"},
            },
        ),
        (
            "user_solar",
            {
                "inverter": {"powerW", "energyTodayKwh"},
                "battery": {"chargePercentage", "backupReserve", "chargingState", "powerW"},
            },
        ),
    ],
)
async def test_device_state_per_type(
    client: httpx.AsyncClient,
    clock: FakeClock,
    username: str,
    expected: dict[str, set[str]],
) -> None:
    tokens = await connect(client, "tesla", username)
    headers = bearer(tokens["access_token"])
    listed = (await client.get("/sandbox/tesla/api/devices", headers=headers)).json()["devices"]
    assert {d["type"] for d in listed} == set(expected)
    for device in listed:
        response = await client.get(
            f"/sandbox/tesla/api/devices/{device['id']}/state", headers=headers
        )
        assert response.status_code == 200
        state = response.json()
        assert set(state) == expected[device["type"]] | {"readAt"}
        assert_read_at(state, clock)
        if device["type"] == "thermostat":
            assert state["temperatureUnit"] == "celsius"
        if "chargePercentage" in state:
            assert 0 <= state["chargePercentage"] <= 100
        if device["type"] == "battery":
            sign = (state["powerW"] > 0) - (state["powerW"] < 0)
            assert state["chargingState"] == {1: "charging", -1: "discharging", 0: "idle"}[sign]


async def test_device_state_is_deterministic_in_time(clock: FakeClock) -> None:
    async def read_states(at: float) -> list[dict[str, Any]]:
        local_clock = FakeClock(at)
        transport = httpx.ASGITransport(app=mount(local_clock))
        async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as http:
            tokens = await connect(http, "tesla", "user_good")
            headers = bearer(tokens["access_token"])
            listed = (await http.get("/sandbox/tesla/api/devices", headers=headers)).json()
            states = []
            for device in listed["devices"]:
                url = f"/sandbox/tesla/api/devices/{device['id']}/state"
                states.append((await http.get(url, headers=headers)).json())
            return states

    now = clock.now
    assert await read_states(now) == await read_states(now)
    later = await read_states(now + 2 * 3600)
    assert later != await read_states(now)


async def test_state_of_another_accounts_device_is_404(client: httpx.AsyncClient) -> None:
    good = await connect(client, "tesla", "user_good")
    ev = await connect(client, "tesla", "user_ev")
    good_devices = (
        await client.get("/sandbox/tesla/api/devices", headers=bearer(good["access_token"]))
    ).json()["devices"]
    response = await client.get(
        f"/sandbox/tesla/api/devices/{good_devices[0]['id']}/state",
        headers=bearer(ev["access_token"]),
    )
    assert response.status_code == 404
    missing = await client.get(
        "/sandbox/tesla/api/devices/dev_nope/state", headers=bearer(good["access_token"])
    )
    assert missing.status_code == 404


# ------------------------------------------------------------------------------------ stats


async def test_stats_counters(client: httpx.AsyncClient) -> None:
    empty = (await client.get("/sandbox/_stats")).json()
    assert empty == {
        "token_requests": {},
        "authorization_code_grants": {},
        "refresh_grants": {},
        "credential_logins": {},
    }

    tesla = await connect(client, "tesla")
    await refresh(client, "tesla", tesla["refresh_token"])
    await connect(client, "enphase")
    code, _ = await get_code(client, "enphase")
    await exchange(client, "enphase", code, new_pkce()[0])  # wrong verifier: a request, no grant

    stats = (await client.get("/sandbox/_stats")).json()
    assert stats == {
        "token_requests": {"tesla": 2, "enphase": 2},
        "authorization_code_grants": {"tesla": 1, "enphase": 1},
        "refresh_grants": {"tesla": 1},
        "credential_logins": {},
    }


def test_user_table_is_complete() -> None:
    assert set(SANDBOX_USERS) == {
        "user_good",
        "user_ev",
        "user_solar",
        "user_otp",
        "user_denied",
        "user_vendor_denied",
        "user_incompatible",
        "user_no_subscription",
        "user_server_error",
        "user_unavailable",
        "user_weird",
        "user_refresh_revoked",
        "user_token_fail",
    }
