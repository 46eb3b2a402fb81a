"""The direct-credentials sign-in, client side (credentials.py), against the real sandbox
manufacturer served by uvicorn on 127.0.0.1 and against small hand-written login APIs for the
odd answers; and the catalog's [manufacturers.<slug>.credentials] table."""

from __future__ import annotations

import base64
import dataclasses
import secrets
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import httpx
import pytest
from manufacturers import test_tokens
from manufacturers.test_catalog_file import (
    CREDENTIALS_ENTRY,
    OAUTH_ENTRY,
    SANDBOX,
    load,
    load_error,
    without,
)
from manufacturers.test_tokens import AWKWARD_CLIENT, AWKWARD_SECRET, SECRET, Sandbox, serving
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from texture_connect.domain.catalog import AuthKind, CredentialSettings, Manufacturer
from texture_connect.http.sandbox import (
    OTP_DELIVERY,
    SANDBOX_ONE_TIME_CODE,
    SANDBOX_PASSWORD,
)
from texture_connect.manufacturers.catalog_file import (
    DEVELOPMENT_CATALOG,
    load_catalog,
)
from texture_connect.manufacturers.credentials import (
    CredentialSignInError,
    OtpChallenge,
    credential_client_secret,
    refresh_credential_tokens,
    sign_in,
    submit_one_time_code,
)
from texture_connect.manufacturers.tokens import ClientSecretMissing, InvalidGrant, TokenSet


async def list_devices(sandbox: Sandbox, slug: str, access_token: str) -> list[str]:
    async with httpx.AsyncClient() as http:
        response = await http.get(
            f"{sandbox.url}/{slug}/api/devices",
            headers={"Authorization": f"Bearer {access_token}"},
        )
    assert response.status_code == 200, response.text
    return [device["type"] for device in response.json()["devices"]]


def assert_secret_free(error: BaseException, *values: str) -> None:
    text = f"{error} {error!r} {getattr(error, 'manufacturer_error', '')}"
    for value in (*values, SECRET):
        assert value not in text


async def failure(call: Any) -> CredentialSignInError:
    with pytest.raises(CredentialSignInError) as caught:
        await call
    return caught.value


async def sign_in_error(
    manufacturer: Manufacturer,
    username: str,
    password: str = SANDBOX_PASSWORD,
    *,
    client_secret: str = SECRET,
) -> CredentialSignInError:
    return await failure(
        sign_in(manufacturer, username=username, password=password, client_secret=client_secret)
    )


# The sandbox served by uvicorn on 127.0.0.1, its client "texture-dev" with SECRET.
sandbox = test_tokens.sandbox

# ------------------------------------------------------------------------------ the sandbox


async def test_sign_in_returns_tokens_that_work_at_the_device_api(sandbox: Sandbox) -> None:
    generac = sandbox.manufacturer("generac")
    before = datetime.now(UTC)

    tokens = await sign_in(
        generac, username="user_good", password=SANDBOX_PASSWORD, client_secret=SECRET
    )

    assert isinstance(tokens, TokenSet)
    assert tokens.access_token and tokens.refresh_token
    assert tokens.token_type == "Bearer"
    assert tokens.scope == "devices:read"
    assert tokens.expires_at is not None and tokens.expires_at.tzinfo is UTC
    expected = before + timedelta(seconds=3600)
    assert expected - timedelta(seconds=5) <= tokens.expires_at <= expected + timedelta(seconds=5)
    assert await list_devices(sandbox, "generac", tokens.access_token) == [
        "battery",
        "thermostat",
    ]
    assert (await sandbox.stats())["credential_logins"] == {"generac": 1}


async def test_a_wrong_password_is_invalid_credentials(sandbox: Sandbox) -> None:
    password = "not-the-password-" + secrets.token_hex(4)

    error = await sign_in_error(sandbox.manufacturer("rheem"), "user_good", password)

    assert error.reason == "invalid_credentials"
    assert error.status == 401
    assert error.manufacturer_error == "invalid_credentials"
    assert "rheem" in str(error)
    assert_secret_free(error, password)


async def test_an_unknown_user_is_invalid_credentials(sandbox: Sandbox) -> None:
    error = await sign_in_error(sandbox.manufacturer("generac"), "user_nobody")
    assert error.reason == "invalid_credentials"
    assert_secret_free(error, SANDBOX_PASSWORD)


async def test_the_one_time_code_step(sandbox: Sandbox) -> None:
    generac = sandbox.manufacturer("generac")

    challenge = await sign_in(
        generac, username="user_otp", password=SANDBOX_PASSWORD, client_secret=SECRET
    )

    assert isinstance(challenge, OtpChallenge)
    assert challenge.delivery == OTP_DELIVERY
    assert challenge.challenge_id not in repr(challenge)
    assert OTP_DELIVERY in repr(challenge)

    wrong = await failure(
        submit_one_time_code(
            generac, challenge_id=challenge.challenge_id, code="000000", client_secret=SECRET
        )
    )
    assert wrong.reason == "invalid_otp"
    assert wrong.status == 401
    assert_secret_free(wrong, "000000", challenge.challenge_id)

    tokens = await submit_one_time_code(
        generac,
        challenge_id=challenge.challenge_id,
        code=SANDBOX_ONE_TIME_CODE,
        client_secret=SECRET,
    )
    assert isinstance(tokens, TokenSet)
    assert await list_devices(sandbox, "generac", tokens.access_token) == ["battery", "inverter"]

    used = await failure(
        submit_one_time_code(
            generac,
            challenge_id=challenge.challenge_id,
            code=SANDBOX_ONE_TIME_CODE,
            client_secret=SECRET,
        )
    )
    assert used.reason == "challenge_expired"
    assert_secret_free(used, SANDBOX_ONE_TIME_CODE, challenge.challenge_id)


async def test_three_wrong_codes_expire_the_challenge(sandbox: Sandbox) -> None:
    rheem = sandbox.manufacturer("rheem")
    challenge = await sign_in(
        rheem, username="user_otp", password=SANDBOX_PASSWORD, client_secret=SECRET
    )
    assert isinstance(challenge, OtpChallenge)

    reasons = []
    for code in ("111111", "222222", "333333", SANDBOX_ONE_TIME_CODE):
        error = await failure(
            submit_one_time_code(
                rheem, challenge_id=challenge.challenge_id, code=code, client_secret=SECRET
            )
        )
        reasons.append(error.reason)

    assert reasons == ["invalid_otp", "invalid_otp", "invalid_otp", "challenge_expired"]


@pytest.mark.parametrize(
    ("username", "status"), [("user_server_error", 500), ("user_unavailable", 503)]
)
async def test_a_failing_login_api_is_unavailable(
    sandbox: Sandbox, username: str, status: int
) -> None:
    error = await sign_in_error(sandbox.manufacturer("generac"), username)
    assert error.reason == "unavailable"
    assert error.status == status
    assert_secret_free(error, SANDBOX_PASSWORD)


async def test_a_wrong_client_secret_is_unavailable_not_the_customers_fault(
    sandbox: Sandbox,
) -> None:
    wrong_secret = "wrong-client-secret-" + secrets.token_hex(4)

    error = await sign_in_error(
        sandbox.manufacturer("generac"), "user_good", SANDBOX_PASSWORD, client_secret=wrong_secret
    )

    assert error.reason == "unavailable"
    assert error.status == 401
    assert error.manufacturer_error == "invalid_client"
    assert_secret_free(error, wrong_secret, SANDBOX_PASSWORD)


async def test_client_credentials_are_form_urlencoded_for_basic(sandbox: Sandbox) -> None:
    generac = sandbox.manufacturer("generac")
    assert generac.credentials is not None
    awkward = dataclasses.replace(
        generac, credentials=dataclasses.replace(generac.credentials, client_id=AWKWARD_CLIENT)
    )

    tokens = await sign_in(
        awkward, username="user_good", password=SANDBOX_PASSWORD, client_secret=AWKWARD_SECRET
    )
    assert isinstance(tokens, TokenSet)


async def test_refresh_at_the_credentials_token_endpoint(sandbox: Sandbox) -> None:
    generac = sandbox.manufacturer("generac")
    tokens = await sign_in(
        generac, username="user_good", password=SANDBOX_PASSWORD, client_secret=SECRET
    )
    assert isinstance(tokens, TokenSet) and tokens.refresh_token

    fresh = await refresh_credential_tokens(
        generac, refresh_token=tokens.refresh_token, client_secret=SECRET
    )

    assert fresh.refresh_token and fresh.refresh_token != tokens.refresh_token
    assert await list_devices(sandbox, "generac", fresh.access_token) == ["battery", "thermostat"]
    assert (await sandbox.stats())["refresh_grants"] == {"generac": 1}
    with pytest.raises(InvalidGrant):  # rotated
        await refresh_credential_tokens(
            generac, refresh_token=tokens.refresh_token, client_secret=SECRET
        )
    assert generac.oauth is None  # the catalog entry itself stays credentials-only


async def test_a_revoked_refresh_is_invalid_grant(sandbox: Sandbox) -> None:
    rheem = sandbox.manufacturer("rheem")
    tokens = await sign_in(
        rheem, username="user_refresh_revoked", password=SANDBOX_PASSWORD, client_secret=SECRET
    )
    assert isinstance(tokens, TokenSet) and tokens.refresh_token

    with pytest.raises(InvalidGrant):
        await refresh_credential_tokens(
            rheem, refresh_token=tokens.refresh_token, client_secret=SECRET
        )


# ------------------------------------------------------------------ misuse and configuration


async def test_without_a_token_endpoint_there_is_no_refresh() -> None:
    generac = Sandbox("http://sandbox.test").manufacturer("generac")
    assert generac.credentials is not None
    no_refresh = dataclasses.replace(
        generac, credentials=dataclasses.replace(generac.credentials, token_endpoint="")
    )

    with pytest.raises(ValueError, match="generac has no token endpoint"):
        await refresh_credential_tokens(no_refresh, refresh_token="r", client_secret="s")


async def test_an_oauth_manufacturer_cannot_sign_in_with_credentials() -> None:
    tesla = Sandbox("http://sandbox.test").manufacturer("tesla")

    with pytest.raises(ValueError, match="tesla"):
        await sign_in(tesla, username="u", password="p", client_secret="s")
    with pytest.raises(ValueError, match="tesla"):
        await submit_one_time_code(tesla, challenge_id="c", code="1", client_secret="s")
    with pytest.raises(ValueError, match="tesla"):
        await refresh_credential_tokens(tesla, refresh_token="r", client_secret="s")
    with pytest.raises(ValueError, match="tesla"):
        credential_client_secret(tesla, {})


def test_the_client_secret_comes_from_the_named_variable() -> None:
    generac = Sandbox("http://sandbox.test").manufacturer("generac")

    env = {"TEXTURE_SANDBOX_CLIENT_SECRET": "xyz-secret"}
    assert credential_client_secret(generac, env) == "xyz-secret"
    with pytest.raises(ClientSecretMissing, match="TEXTURE_SANDBOX_CLIENT_SECRET") as caught:
        credential_client_secret(generac, {"TEXTURE_SANDBOX_CLIENT_SECRET": "", "X": "other"})
    assert "other" not in str(caught.value)


async def test_a_refused_connection_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before the request: nothing listens
    manufacturer = credentials_manufacturer(f"http://127.0.0.1:{port}")

    error = await sign_in_error(manufacturer, "u", "p-secret-1")

    assert error.reason == "unavailable"
    assert error.status is None
    assert "network_error" in str(error)
    assert_secret_free(error, "p-secret-1")


# ------------------------------------------------------------- hand-written login APIs


def credentials_manufacturer(origin: str) -> Manufacturer:
    return Manufacturer(
        slug="acme",
        display_name="Acme",
        device_types=("battery",),
        auth_kind=AuthKind.CREDENTIALS,
        adapter="sandbox",
        credentials=CredentialSettings(
            login_url=f"{origin}/login",
            otp_url=f"{origin}/otp",
            client_id="texture-dev",
            client_secret_env="ACME_SECRET",
        ),
    )


Answer = Callable[[dict[str, Any]], Response]


def fake_login_api(answer: Answer, seen: list[tuple[str, dict[str, Any], str | None]]) -> Any:
    def app(origin: str) -> ASGIApp:
        async def endpoint(request: Request) -> Response:
            body = await request.json()
            seen.append((request.url.path, body, request.headers.get("authorization")))
            return answer(body)

        return Starlette(
            routes=[
                Route("/login", endpoint, methods=["POST"]),
                Route("/otp", endpoint, methods=["POST"]),
            ]
        )

    return serving(app)


async def test_the_requests_are_json_with_basic_client_authentication() -> None:
    seen: list[tuple[str, dict[str, Any], str | None]] = []

    def answer(body: dict[str, Any]) -> Response:
        if "password" in body:
            return JSONResponse({"otp_required": True, "challenge_id": "ch-1"})
        return JSONResponse({"access_token": "at-1"})  # token_type, expiry: optional

    async with fake_login_api(answer, seen) as origin:
        m = credentials_manufacturer(origin)
        challenge = await sign_in(m, username="ann", password="pw", client_secret="s&:+")
        assert challenge == OtpChallenge(challenge_id="ch-1", delivery="")
        tokens = await submit_one_time_code(m, challenge_id="ch-1", code="42", client_secret="s")

    assert [(path, body) for path, body, _ in seen] == [
        ("/login", {"username": "ann", "password": "pw"}),
        ("/otp", {"challenge_id": "ch-1", "code": "42"}),
    ]
    authorization = seen[0][2]
    assert authorization is not None
    scheme, _, encoded = authorization.partition(" ")
    assert scheme == "Basic"
    client_id, _, secret = base64.b64decode(encoded).decode().partition(":")
    assert (unquote_plus(client_id), unquote_plus(secret)) == ("texture-dev", "s&:+")
    assert tokens == TokenSet(
        access_token="at-1", refresh_token=None, expires_at=None, scope="", token_type="Bearer"
    )


@pytest.mark.parametrize(
    "answer",
    [
        PlainTextResponse("welcome!"),
        JSONResponse(["at-1"]),
        JSONResponse({"token_type": "Bearer"}),
        JSONResponse({"access_token": "at-1", "token_type": "mac"}),
        JSONResponse({"access_token": "at-1", "expires_in": "soon"}),
        JSONResponse({"access_token": "at-1", "expires_in": [3600]}),
        JSONResponse({"otp_required": True}),
        JSONResponse({"otp_required": True, "challenge_id": 7}),
        JSONResponse({"otp_required": True, "challenge_id": "c", "delivery": 3}),
    ],
    ids=[
        "not-json",
        "json-list",
        "no-access-token",
        "not-bearer",
        "expires-in-text",
        "expires-in-list",
        "otp-without-challenge",
        "challenge-not-a-string",
        "delivery-not-a-string",
    ],
)
async def test_a_malformed_success_is_unavailable(answer: Response) -> None:
    async with fake_login_api(lambda body: answer, []) as origin:
        error = await sign_in_error(credentials_manufacturer(origin), "u", "pw-secret-9")
    assert error.reason == "unavailable"
    assert error.status == 200
    assert "malformed" in str(error)
    assert_secret_free(error, "pw-secret-9")


@pytest.mark.parametrize(
    ("status", "body", "manufacturer_error"),
    [
        (401, {"error": "invalid_otp"}, "invalid_otp"),  # not an answer a login can give
        (403, {"error": "account_locked"}, "account_locked"),
        (400, {"error": "x" * 65}, None),
        (500, {"oops": True}, None),
        (302, None, None),
    ],
)
async def test_other_login_failures_are_unavailable(
    status: int, body: dict[str, Any] | None, manufacturer_error: str | None
) -> None:
    def answer(_: dict[str, Any]) -> Response:
        if body is None:
            return Response(status_code=status, headers={"Location": "https://elsewhere.test/"})
        return JSONResponse(body, status_code=status)

    async with fake_login_api(answer, []) as origin:
        error = await sign_in_error(credentials_manufacturer(origin), "u", "pw-secret-8")
    assert error.reason == "unavailable"
    assert error.status == status
    assert error.manufacturer_error == manufacturer_error


async def test_an_error_code_echoing_the_password_or_code_is_dropped() -> None:
    password = "hunter2-" + secrets.token_hex(4)

    def answer(body: dict[str, Any]) -> Response:
        echoed = body.get("password") or body.get("code")
        return JSONResponse({"error": f"bad_{echoed}"}, status_code=401)

    async with fake_login_api(answer, []) as origin:
        m = credentials_manufacturer(origin)
        login_error = await sign_in_error(m, "u", password)
        code_error = await failure(
            submit_one_time_code(m, challenge_id="ch", code="918273", client_secret=SECRET)
        )

    assert login_error.manufacturer_error is None
    assert_secret_free(login_error, password)
    assert code_error.manufacturer_error is None
    assert_secret_free(code_error, "918273")


# ------------------------------------------------------------------------------ the catalog


def test_the_development_catalog_gives_generac_and_rheem_sandbox_credentials() -> None:
    catalog = load_catalog(DEVELOPMENT_CATALOG, sandbox_url=SANDBOX + "/")

    for slug in ("generac", "rheem"):
        m = catalog.get(slug)
        assert m is not None
        assert m.auth_kind is AuthKind.CREDENTIALS
        assert m.oauth is None
        assert m.credentials == CredentialSettings(
            login_url=f"{SANDBOX}/{slug}/api/login",
            otp_url=f"{SANDBOX}/{slug}/api/login/otp",
            client_id="texture-dev",
            client_secret_env="TEXTURE_SANDBOX_CLIENT_SECRET",
            token_endpoint=f"{SANDBOX}/{slug}/oauth/token",
        )
    tesla = catalog.get("tesla")
    assert tesla is not None and tesla.credentials is None


def test_a_credentials_table_loads_with_sandbox_substitution(tmp_path: Path) -> None:
    text = CREDENTIALS_ENTRY.replace("{sandbox}/acme/api/login/otp", "https://acme.test/otp")
    acme = load(tmp_path, text).get("acme")
    assert acme is not None
    assert acme.credentials == CredentialSettings(
        login_url=f"{SANDBOX}/acme/api/login",
        otp_url="https://acme.test/otp",
        client_id="texture-dev",
        client_secret_env="ACME_SECRET",
        token_endpoint="",
    )


def test_the_token_endpoint_is_optional_and_substituted(tmp_path: Path) -> None:
    text = CREDENTIALS_ENTRY + 'credentials.token_endpoint = "{sandbox}/acme/oauth/token"\n'
    acme = load(tmp_path, text).get("acme")
    assert acme is not None and acme.credentials is not None
    assert acme.credentials.token_endpoint == f"{SANDBOX}/acme/oauth/token"


@pytest.mark.parametrize("replacement", ["", 'credentials = "yes"\n'])
def test_a_credentials_manufacturer_without_the_table_is_refused(
    tmp_path: Path, replacement: str
) -> None:
    text = without(CREDENTIALS_ENTRY, "credentials.") + replacement
    message = load_error(tmp_path, text)
    assert message == "manufacturers.acme.credentials is required for a credentials manufacturer"


@pytest.mark.parametrize("field", ["login_url", "otp_url", "client_id", "client_secret_env"])
def test_a_missing_or_empty_credentials_field_is_named(tmp_path: Path, field: str) -> None:
    expected = f"manufacturers.acme.credentials.{field} is required"
    assert expected in load_error(tmp_path, without(CREDENTIALS_ENTRY, f"credentials.{field}"))
    empty = without(CREDENTIALS_ENTRY, f"credentials.{field}") + f'credentials.{field} = ""\n'
    assert expected in load_error(tmp_path, empty)


def test_an_oauth_manufacturer_has_no_credentials(tmp_path: Path) -> None:
    acme = load(tmp_path, OAUTH_ENTRY).get("acme")
    assert acme is not None and acme.oauth is not None
    assert acme.credentials is None
