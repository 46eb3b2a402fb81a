"""The OAuth client side (tokens.py) against the real sandbox manufacturer, served by uvicorn
on 127.0.0.1, and against small hand-written token endpoints for the odd answers."""

from __future__ import annotations

import base64
import dataclasses
import secrets
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, unquote_plus, urlsplit

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
from texture_connect.manufacturers.oauth import authorization_url
from texture_connect.manufacturers.tokens import (
    ClientSecretMissing,
    InvalidGrant,
    TokenExchangeError,
    TokenSet,
    client_secret_for,
    exchange_code,
    refresh_tokens,
)

SECRET = "sandbox-client-secret-" + secrets.token_hex(8)
# RFC 6749 §2.3.1: characters that HTTP Basic client credentials must form-urlencode.
AWKWARD_CLIENT = "awkward client:1"
AWKWARD_SECRET = "p+a/s%s=w:o rd&" + secrets.token_hex(4)
REDIRECT_URI = "https://connect.example.test/oauth/callback"


@dataclass
class Sandbox:
    url: str  # where the sandbox app is mounted, e.g. http://127.0.0.1:PORT/sandbox

    def manufacturer(self, slug: str = "tesla") -> Manufacturer:
        m = load_catalog(DEVELOPMENT_CATALOG, sandbox_url=self.url).get(slug)
        assert m is not None
        return m

    async def stats(self) -> dict[str, Any]:
        async with httpx.AsyncClient() as http:
            response = await http.get(f"{self.url}/_stats")
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    def make(origin: str) -> ASGIApp:
        app = create_sandbox_app(
            base_url=f"{origin}/sandbox",
            clients={"texture-dev": SECRET, AWKWARD_CLIENT: AWKWARD_SECRET},
        )
        return Starlette(routes=[Mount("/sandbox", app=app)])

    async with serving(make) as origin:
        yield Sandbox(f"{origin}/sandbox")


async def authorize(manufacturer: Manufacturer, username: str) -> tuple[str, str]:
    """Signs in at the sandbox with a real PKCE pair; returns (code, verifier)."""
    verifier = secrets.token_urlsafe(48)
    state = secrets.token_urlsafe(16)
    url = authorization_url(
        manufacturer, state=state, code_verifier=verifier, redirect_uri=REDIRECT_URI
    )
    async with httpx.AsyncClient() as http:
        response = await http.post(
            url, data={"username": username, "password": SANDBOX_PASSWORD, "decision": "allow"}
        )
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI + "?")
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == [state]
    assert manufacturer.oauth is not None
    assert query["iss"] == [manufacturer.oauth.issuer]  # RFC 9207
    return query["code"][0], verifier


def assert_secret_free(error: BaseException, *values: str) -> None:
    text = f"{error} {error!r} {getattr(error, 'oauth_error', '')}"
    for value in (*values, SECRET):
        assert value not in text


# ------------------------------------------------------------------------------ the sandbox


async def test_exchange_code_returns_the_tokens(sandbox: Sandbox) -> None:
    tesla = sandbox.manufacturer()
    code, verifier = await authorize(tesla, "user_good")
    before = datetime.now(UTC)

    tokens = await exchange_code(
        tesla, code=code, code_verifier=verifier, redirect_uri=REDIRECT_URI, client_secret=SECRET
    )

    assert tokens.access_token
    assert tokens.refresh_token
    assert tokens.access_token != tokens.refresh_token
    assert tokens.token_type == "Bearer"
    assert tokens.scope == "openid offline_access energy_device_data vehicle_device_data"
    assert tokens.expires_at is not None
    assert tokens.expires_at.tzinfo is UTC
    expected = before + timedelta(seconds=3600)
    assert expected - timedelta(seconds=5) <= tokens.expires_at <= expected + timedelta(seconds=5)
    assert (await sandbox.stats())["authorization_code_grants"] == {"tesla": 1}


async def test_a_wrong_verifier_is_invalid_grant_and_leaks_nothing(sandbox: Sandbox) -> None:
    tesla = sandbox.manufacturer()
    code, verifier = await authorize(tesla, "user_good")
    wrong = secrets.token_urlsafe(48)

    with pytest.raises(InvalidGrant) as caught:
        await exchange_code(
            tesla, code=code, code_verifier=wrong, redirect_uri=REDIRECT_URI, client_secret=SECRET
        )

    assert caught.value.oauth_error == "invalid_grant"
    assert caught.value.status == 400
    assert "tesla" in str(caught.value)
    assert_secret_free(caught.value, code, wrong, verifier)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__
    # RFC 7636 §4.6: the failed attempt did not use the code up.
    tokens = await exchange_code(
        tesla, code=code, code_verifier=verifier, redirect_uri=REDIRECT_URI, client_secret=SECRET
    )
    assert tokens.access_token


async def test_a_reused_code_is_invalid_grant(sandbox: Sandbox) -> None:
    tesla = sandbox.manufacturer()
    code, verifier = await authorize(tesla, "user_good")
    await exchange_code(
        tesla, code=code, code_verifier=verifier, redirect_uri=REDIRECT_URI, client_secret=SECRET
    )

    with pytest.raises(InvalidGrant) as caught:
        await exchange_code(
            tesla,
            code=code,
            code_verifier=verifier,
            redirect_uri=REDIRECT_URI,
            client_secret=SECRET,
        )

    assert caught.value.status == 400
    assert_secret_free(caught.value, code, verifier)


async def test_a_different_redirect_uri_is_invalid_grant(sandbox: Sandbox) -> None:
    tesla = sandbox.manufacturer()
    code, verifier = await authorize(tesla, "user_good")

    with pytest.raises(InvalidGrant):
        await exchange_code(
            tesla,
            code=code,
            code_verifier=verifier,
            redirect_uri=REDIRECT_URI + "/elsewhere",
            client_secret=SECRET,
        )


async def test_a_token_endpoint_failure_is_a_token_exchange_error(sandbox: Sandbox) -> None:
    tesla = sandbox.manufacturer()
    code, verifier = await authorize(tesla, "user_token_fail")

    with pytest.raises(TokenExchangeError) as caught:
        await exchange_code(
            tesla,
            code=code,
            code_verifier=verifier,
            redirect_uri=REDIRECT_URI,
            client_secret=SECRET,
        )

    assert not isinstance(caught.value, InvalidGrant)
    assert caught.value.status == 500
    assert caught.value.oauth_error == "server_error"
    assert_secret_free(caught.value, code, verifier)


async def test_a_wrong_client_secret_is_invalid_client(sandbox: Sandbox) -> None:
    tesla = sandbox.manufacturer()
    code, verifier = await authorize(tesla, "user_good")
    wrong_secret = "not-the-secret-" + secrets.token_hex(8)

    with pytest.raises(TokenExchangeError) as caught:
        await exchange_code(
            tesla,
            code=code,
            code_verifier=verifier,
            redirect_uri=REDIRECT_URI,
            client_secret=wrong_secret,
        )

    assert not isinstance(caught.value, InvalidGrant)
    assert caught.value.oauth_error == "invalid_client"
    assert caught.value.status == 401
    assert_secret_free(caught.value, code, verifier, wrong_secret)


async def test_client_credentials_are_form_urlencoded_for_basic(sandbox: Sandbox) -> None:
    # RFC 6749 §2.3.1; the sandbox decodes them as the RFC says.
    tesla = sandbox.manufacturer()
    assert tesla.oauth is not None
    awkward = dataclasses.replace(
        tesla, oauth=dataclasses.replace(tesla.oauth, client_id=AWKWARD_CLIENT)
    )
    code, verifier = await authorize(awkward, "user_good")

    tokens = await exchange_code(
        awkward,
        code=code,
        code_verifier=verifier,
        redirect_uri=REDIRECT_URI,
        client_secret=AWKWARD_SECRET,
    )

    assert tokens.access_token


async def test_refresh_rotates_and_the_old_refresh_token_dies(sandbox: Sandbox) -> None:
    enphase = sandbox.manufacturer("enphase")
    code, verifier = await authorize(enphase, "user_good")
    first = await exchange_code(
        enphase, code=code, code_verifier=verifier, redirect_uri=REDIRECT_URI, client_secret=SECRET
    )
    assert first.refresh_token is not None

    second = await refresh_tokens(enphase, refresh_token=first.refresh_token, client_secret=SECRET)

    assert second.refresh_token is not None
    assert second.refresh_token != first.refresh_token
    assert second.access_token != first.access_token
    assert second.scope == "read control"  # RFC 6749 §6: the original scope
    assert second.expires_at is not None
    assert (await sandbox.stats())["refresh_grants"] == {"enphase": 1}

    # RFC 9700 §4.14.2: the rotated-out refresh token is dead → re-authorize.
    with pytest.raises(InvalidGrant) as caught:
        await refresh_tokens(enphase, refresh_token=first.refresh_token, client_secret=SECRET)
    assert caught.value.status == 400
    assert_secret_free(caught.value, first.refresh_token, first.access_token)

    third = await refresh_tokens(enphase, refresh_token=second.refresh_token, client_secret=SECRET)
    assert third.refresh_token not in (first.refresh_token, second.refresh_token)


async def test_a_refresh_token_only_works_at_its_manufacturer(sandbox: Sandbox) -> None:
    tesla = sandbox.manufacturer("tesla")
    code, verifier = await authorize(tesla, "user_good")
    tokens = await exchange_code(
        tesla, code=code, code_verifier=verifier, redirect_uri=REDIRECT_URI, client_secret=SECRET
    )
    assert tokens.refresh_token is not None

    with pytest.raises(InvalidGrant):
        await refresh_tokens(
            sandbox.manufacturer("daikin"), refresh_token=tokens.refresh_token, client_secret=SECRET
        )


# ------------------------------------------------------------- hand-written token endpoints


@dataclass
class FakeTokenEndpoint:
    """A token endpoint whose answer a test chooses; it records what it was sent."""

    answer: Callable[[dict[str, str]], Response]
    forms: list[dict[str, str]] = dataclasses.field(default_factory=list)
    authorizations: list[str | None] = dataclasses.field(default_factory=list)

    def app(self, origin: str) -> ASGIApp:
        async def token(request: Request) -> Response:
            form = {key: str(value) for key, value in (await request.form()).items()}
            self.forms.append(form)
            self.authorizations.append(request.headers.get("authorization"))
            return self.answer(form)

        return Starlette(routes=[Route("/oauth/token", token, methods=["POST"])])


def fake_manufacturer(origin: str, *, pkce: bool = True) -> Manufacturer:
    sandbox = Sandbox(f"{origin}/unused")
    m = sandbox.manufacturer("honeywell")
    assert m.oauth is not None
    oauth = dataclasses.replace(m.oauth, token_endpoint=f"{origin}/oauth/token", pkce=pkce)
    return dataclasses.replace(m, oauth=oauth)


@asynccontextmanager
async def fake_endpoint(
    answer: Callable[[dict[str, str]], Response],
) -> AsyncIterator[tuple[FakeTokenEndpoint, str]]:
    endpoint = FakeTokenEndpoint(answer)
    async with serving(endpoint.app) as origin:
        yield endpoint, origin


async def test_the_code_exchange_request_is_an_authorization_code_grant() -> None:
    def answer(form: dict[str, str]) -> Response:
        # No refresh_token, scope or expires_in: all optional in RFC 6749 §5.1.
        return JSONResponse({"access_token": "at-1", "token_type": "bearer"})

    async with fake_endpoint(answer) as (endpoint, origin):
        m = fake_manufacturer(origin)
        tokens = await exchange_code(
            m, code="the-code", code_verifier="v" * 43, redirect_uri=REDIRECT_URI, client_secret="s"
        )

    assert endpoint.forms == [
        {
            "grant_type": "authorization_code",
            "code": "the-code",
            "redirect_uri": REDIRECT_URI,
            "code_verifier": "v" * 43,
        }
    ]
    # client_secret_basic (RFC 6749 §2.3.1), never the secret in the body.
    authorization = endpoint.authorizations[0]
    assert authorization is not None
    scheme, _, encoded = authorization.partition(" ")
    assert scheme == "Basic"
    client_id, _, secret = base64.b64decode(encoded).decode().partition(":")
    assert (unquote_plus(client_id), unquote_plus(secret)) == ("texture-dev", "s")
    assert tokens == TokenSet(
        access_token="at-1",
        refresh_token=None,
        expires_at=None,
        scope="thermostat.read thermostat.write",  # what was requested
        token_type="bearer",
    )


async def test_without_pkce_no_verifier_is_sent() -> None:
    def answer(form: dict[str, str]) -> Response:
        return JSONResponse({"access_token": "at-1", "token_type": "Bearer", "expires_in": 60})

    async with fake_endpoint(answer) as (endpoint, origin):
        m = fake_manufacturer(origin, pkce=False)
        await exchange_code(
            m, code="c", code_verifier="v" * 43, redirect_uri=REDIRECT_URI, client_secret="s"
        )

    assert "code_verifier" not in endpoint.forms[0]


async def test_a_refresh_without_a_new_refresh_token_keeps_the_old_one() -> None:
    def answer(form: dict[str, str]) -> Response:
        return JSONResponse(
            {"access_token": "at-2", "token_type": "Bearer", "expires_in": 60, "scope": "a b"}
        )

    async with fake_endpoint(answer) as (endpoint, origin):
        tokens = await refresh_tokens(
            fake_manufacturer(origin), refresh_token="rt-1", client_secret="s"
        )

    assert endpoint.forms == [{"grant_type": "refresh_token", "refresh_token": "rt-1"}]
    assert tokens.refresh_token == "rt-1"
    assert tokens.scope == "a b"


@pytest.mark.parametrize(
    ("response", "oauth_error", "status"),
    [
        (PlainTextResponse("<html>rate limited</html>", status_code=429), "http_error", 429),
        (PlainTextResponse("Bad gateway", status_code=502), "http_error", 502),
        (PlainTextResponse("not json", status_code=200), "invalid_response", 200),
        (JSONResponse(["a", "list"]), "invalid_response", 200),
        (
            JSONResponse({"error": "unauthorized_client"}, status_code=400),
            "unauthorized_client",
            400,
        ),
        (JSONResponse({"error": "server_error"}, status_code=503), "server_error", 503),
        (JSONResponse({"token_type": "Bearer"}), "invalid_response", 200),
        (JSONResponse({"access_token": "x", "token_type": "mac"}), "invalid_response", 200),
        (JSONResponse({"access_token": "x", "expires_in": "soon"}), "invalid_response", 200),
    ],
)
async def test_odd_token_responses_are_token_exchange_errors(
    response: Response, oauth_error: str, status: int
) -> None:
    async with fake_endpoint(lambda form: response) as (_, origin):
        with pytest.raises(TokenExchangeError) as caught:
            await exchange_code(
                fake_manufacturer(origin),
                code="the-code-123",
                code_verifier="v" * 43,
                redirect_uri=REDIRECT_URI,
                client_secret="the-secret-456",
            )

    assert type(caught.value) is TokenExchangeError
    assert caught.value.oauth_error == oauth_error
    assert caught.value.status == status
    assert_secret_free(caught.value, "the-code-123", "v" * 43, "the-secret-456")


async def test_an_error_description_echoing_secrets_is_redacted() -> None:
    def answer(form: dict[str, str]) -> Response:
        echo = f"bad code {form['code']} verifier {form['code_verifier']}\n\x1b[31m"
        return JSONResponse({"error": "invalid_grant", "error_description": echo}, 400)

    async with fake_endpoint(answer) as (_, origin):
        with pytest.raises(InvalidGrant) as caught:
            await exchange_code(
                fake_manufacturer(origin),
                code="the-code-123",
                code_verifier="w" * 43,
                redirect_uri=REDIRECT_URI,
                client_secret="the-secret-456",
            )

    assert_secret_free(caught.value, "the-code-123", "w" * 43, "the-secret-456")
    assert "<redacted>" in str(caught.value)
    assert "\n" not in str(caught.value)
    assert "\x1b" not in str(caught.value)


async def test_an_unreachable_token_endpoint_is_a_network_error() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        origin = f"http://127.0.0.1:{sock.getsockname()[1]}"
        with pytest.raises(TokenExchangeError) as caught:
            await refresh_tokens(
                fake_manufacturer(origin), refresh_token="rt-secret", client_secret="s3cr3t"
            )

    assert caught.value.oauth_error == "network_error"
    assert caught.value.status is None
    assert_secret_free(caught.value, "rt-secret", "s3cr3t")


# ----------------------------------------------------------------------- the small pieces


def test_token_set_repr_hides_the_tokens() -> None:
    tokens = TokenSet(
        access_token="access-abc-123",
        refresh_token="refresh-def-456",
        expires_at=datetime(2030, 1, 1, tzinfo=UTC),
        scope="devices:read",
        token_type="Bearer",
    )

    for text in (repr(tokens), str(tokens), f"{tokens}", repr([tokens])):
        assert "access-abc-123" not in text
        assert "refresh-def-456" not in text
        assert "devices:read" in text
        assert "2030-01-01" in text


def test_client_secret_for_reads_the_named_variable() -> None:
    m = Sandbox("http://sandbox.test").manufacturer()

    assert client_secret_for(m, {"TEXTURE_SANDBOX_CLIENT_SECRET": "xyz-secret"}) == "xyz-secret"


@pytest.mark.parametrize("env", [{}, {"TEXTURE_SANDBOX_CLIENT_SECRET": ""}])
def test_a_missing_client_secret_names_the_variable(env: dict[str, str]) -> None:
    m = Sandbox("http://sandbox.test").manufacturer()

    with pytest.raises(ClientSecretMissing, match="TEXTURE_SANDBOX_CLIENT_SECRET"):
        client_secret_for(m, {**env, "OTHER_SECRET": "other-value-789"})


async def test_a_credentials_manufacturer_has_no_token_endpoint() -> None:
    generac = Sandbox("http://sandbox.test").manufacturer("generac")
    assert generac.auth_kind is AuthKind.CREDENTIALS

    with pytest.raises(ValueError, match="generac"):
        await refresh_tokens(generac, refresh_token="r", client_secret="s")
    with pytest.raises(ValueError, match="generac"):
        client_secret_for(generac, {})
