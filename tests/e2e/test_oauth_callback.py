"""The OAuth round trip end to end: the real ``texture-connect serve --sandbox`` process, the
sandbox manufacturer, the HTTP callback shim and CallbackService, over real HTTP and gRPC.

A test plays the customer's browser with an httpx client that does not follow redirects:
it opens ``authorization.url`` (signs in at the sandbox), takes the manufacturer's redirect
to our callback, and reads where the callback sends the browser (the app's redirectUrl).
Nothing here sleeps to synchronise; the one expiry test waits on a condition with a
deadline.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
import pytest
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

from texture.connect.v1 import connection_pb2 as pb
from texture.connect.v1 import connection_pb2_grpc

APP_URL = "https://yourapp.com/oauth/callback"
EXPIRY_DEADLINE = 15.0  # seconds; the expiry test's bounded condition wait


# --------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, OrgKeys]]:
    """One server and organization for the tests of this module that need no special
    configuration (each test uses customers of its own, so they do not interfere)."""
    tmp = tmp_path_factory.mktemp("oauth-callback")
    env, grpc_addr, http_url = server_env(tmp)
    cli(env, "migrate")
    server = Server(env, grpc_addr, http_url, tmp / "server.log").start()
    try:
        yield server, make_org(server.env)
    finally:
        assert server.stop() == 0, server.logs()


@pytest.fixture
async def browser() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(follow_redirects=False, timeout=30) as client:
        yield client


# ---------------------------------------------------------------------------------- helpers


def headless_body(manufacturer: str = "tesla", **changes: Any) -> dict[str, Any]:
    """The seed's headless body for a new customer of its own (a unique email, so that
    customers never collide across tests on the shared server)."""
    info = {**HEADLESS_BODY["customerInfo"], "email": f"jane+{secrets.token_hex(6)}@example.com"}
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


async def start(
    server: Server, org: OrgKeys, body: dict[str, Any] | None = None
) -> pb.CreateConnectionResponse:
    return await create_connection(server, org, body or headless_body())


async def sign_in(
    browser: httpx.AsyncClient,
    authorization_url: str,
    user: str = "user_good",
    decision: str = "allow",
) -> str:
    """Signs in at the sandbox manufacturer; returns our callback URL it redirects to."""
    callback_url = await authorize(browser, authorization_url, user, decision)
    assert callback_url.split("?")[0].endswith("/v1/oauth/callback")
    return callback_url


async def land(browser: httpx.AsyncClient, callback_url: str) -> str:
    """Follows the manufacturer's redirect to our callback; returns where we send the
    browser next (the app's redirectUrl with our parameters)."""
    response = await browser.get(callback_url)
    assert response.status_code == 302, response.text
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"
    return response.headers["location"]


async def connect(
    browser: httpx.AsyncClient,
    server: Server,
    org: OrgKeys,
    body: dict[str, Any] | None = None,
    user: str = "user_good",
) -> tuple[pb.CreateConnectionResponse, str, str]:
    """The whole flow: (CreateConnection response, callback URL, final Location)."""
    created = await start(server, org, body)
    callback_url = await sign_in(browser, created.authorization.url, user)
    return created, callback_url, await land(browser, callback_url)


def with_params(url: str, **params: str) -> str:
    """``url`` with some query parameters replaced."""
    parts = urlsplit(url)
    query = {**query_of(url), **params}
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def tampered(callback_url: str) -> str:
    """The same attempt (the part of state before '.') with another 256-bit secret."""
    attempt_id = query_of(callback_url)["state"].partition(".")[0]
    return with_params(callback_url, state=f"{attempt_id}.{secrets.token_urlsafe(32)}")


async def session_of(server: Server, org: OrgKeys, link_session_id: str) -> pb.ConnectSession:
    async with server.channel() as channel:
        reply = await connection_pb2_grpc.ConnectionServiceStub(channel).GetConnection(
            pb.GetConnectionRequest(link_session_id=link_session_id),
            metadata=org.metadata,
            timeout=10,
        )
    return reply.session


async def token_requests(browser: httpx.AsyncClient, server: Server, manufacturer: str) -> int:
    response = await browser.get(f"{server.http_url}/sandbox/_stats")
    assert response.status_code == 200
    return int(response.json()["token_requests"].get(manufacturer, 0))


def assert_failure(location: str, texture_error: str, redirect_url: str = APP_URL) -> None:
    """A failure lands on redirectUrl with texture_error and nothing else of ours (no key,
    no customer id); texture_error_raw only accompanies unknown_error."""
    assert location.startswith(redirect_url + "?"), location
    params = query_of(location)
    assert params["texture_error"] == texture_error, location
    assert "texture_scoped_key" not in params
    expected = {"texture_error"} | (
        {"texture_error_raw"} if texture_error == "unknown_error" else set()
    )
    assert {name for name in params if name.startswith("texture_")} == expected, location


def database_file(server: Server) -> Path:
    url = server.env["TEXTURE_DATABASE_URL"]
    assert url.startswith("sqlite:///")
    return Path(url.removeprefix("sqlite:///"))


def query_db(server: Server, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """A read-only look at the server's SQLite file."""
    uri = f"file:{database_file(server)}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True)) as db:
        return db.execute(sql, args).fetchall()


# ------------------------------------------------------------------------------ success path


async def test_success_lands_on_redirect_url_with_scoped_key_and_keeps_its_query(
    shared: tuple[Server, OrgKeys], browser: httpx.AsyncClient
) -> None:
    server, org = shared
    created, _, location = await connect(
        browser, server, org, headless_body(redirectUrl=APP_URL + "?x=1")
    )
    assert location.startswith(APP_URL + "?x=1&"), location
    params = query_of(location)
    assert params["x"] == "1"
    assert re.fullmatch(r"tx_scoped_[A-Za-z0-9_-]{43}", params["texture_scoped_key"])
    assert params["texture_customer_id"] == created.customer_id
    assert "texture_existing_devices" not in params
    assert "texture_error" not in params
    session = await session_of(server, org, created.link_session_id)
    assert session.status == pb.CONNECT_SESSION_STATUS_COMPLETED


async def test_deep_link_redirect_url(
    shared: tuple[Server, OrgKeys], browser: httpx.AsyncClient
) -> None:
    server, org = shared
    _, _, location = await connect(
        browser, server, org, headless_body(redirectUrl="myapp://device/connected")
    )
    assert location.startswith("myapp://device/connected?texture_scoped_key="), location
    assert query_of(location)["texture_scoped_key"].startswith("tx_scoped_")


# ----------------------------------------------------------------------- the seed's error table


# (sandbox user, decision, texture_error, session status afterwards). Retryable errors
# leave the session open for another attempt; the others end it.
AUTHORIZATION_OUTCOMES = [
    ("user_denied", "allow", "access_denied", pb.CONNECT_SESSION_STATUS_FAILED),
    ("user_good", "deny", "access_denied", pb.CONNECT_SESSION_STATUS_FAILED),
    ("user_vendor_denied", "allow", "access_denied", pb.CONNECT_SESSION_STATUS_FAILED),
    ("user_server_error", "allow", "server_error", pb.CONNECT_SESSION_STATUS_PENDING),
    ("user_unavailable", "allow", "temporarily_unavailable", pb.CONNECT_SESSION_STATUS_PENDING),
    ("user_weird", "allow", "unknown_error", pb.CONNECT_SESSION_STATUS_FAILED),
    ("user_token_fail", "allow", "connection_failed", pb.CONNECT_SESSION_STATUS_PENDING),
    ("user_incompatible", "allow", "device_incompatible", pb.CONNECT_SESSION_STATUS_FAILED),
    ("user_no_subscription", "allow", "subscription_required", pb.CONNECT_SESSION_STATUS_FAILED),
]


@pytest.mark.parametrize(
    ("user", "decision", "texture_error", "status"),
    AUTHORIZATION_OUTCOMES,
    ids=[f"{user}-{decision}" for user, decision, *_ in AUTHORIZATION_OUTCOMES],
)
async def test_manufacturer_outcome_reaches_redirect_url_as_texture_error(
    shared: tuple[Server, OrgKeys],
    browser: httpx.AsyncClient,
    user: str,
    decision: str,
    texture_error: str,
    status: int,
) -> None:
    server, org = shared
    created = await start(server, org)
    callback_url = await sign_in(browser, created.authorization.url, user, decision)
    location = await land(browser, callback_url)
    assert_failure(location, texture_error)
    if texture_error == "unknown_error":
        assert query_of(location)["texture_error_raw"] == "quantum_flux_detected"
    session = await session_of(server, org, created.link_session_id)
    assert session.status == status


async def test_tampered_state_secret_is_a_state_mismatch(
    shared: tuple[Server, OrgKeys], browser: httpx.AsyncClient
) -> None:
    server, org = shared
    created = await start(server, org)
    callback_url = await sign_in(browser, created.authorization.url)
    before = await token_requests(browser, server, "tesla")
    assert_failure(await land(browser, tampered(callback_url)), "oauth_state_mismatch")
    assert await token_requests(browser, server, "tesla") == before
    session = await session_of(server, org, created.link_session_id)
    assert session.status != pb.CONNECT_SESSION_STATUS_COMPLETED


async def test_issuer_mismatch_is_refused_without_a_token_request(
    shared: tuple[Server, OrgKeys], browser: httpx.AsyncClient
) -> None:
    """RFC 9207 mix-up defence: a response claiming another issuer never reaches the
    token endpoint."""
    server, org = shared
    created = await start(server, org)
    callback_url = await sign_in(browser, created.authorization.url)
    assert query_of(callback_url)["iss"] == f"{server.http_url}/sandbox/tesla"
    before = await token_requests(browser, server, "tesla")
    forged = with_params(callback_url, iss=f"{server.http_url}/sandbox/enphase")
    assert_failure(await land(browser, forged), "oauth_state_mismatch")
    assert await token_requests(browser, server, "tesla") == before
    session = await session_of(server, org, created.link_session_id)
    assert session.status != pb.CONNECT_SESSION_STATUS_COMPLETED


async def test_replay_after_success_is_already_completed(
    shared: tuple[Server, OrgKeys], browser: httpx.AsyncClient
) -> None:
    server, org = shared
    created, callback_url, location = await connect(browser, server, org)
    assert "texture_scoped_key" in query_of(location)
    before = await token_requests(browser, server, "tesla")
    assert_failure(await land(browser, callback_url), "connect_session_already_completed")
    assert await token_requests(browser, server, "tesla") == before
    session = await session_of(server, org, created.link_session_id)
    assert session.status == pb.CONNECT_SESSION_STATUS_COMPLETED


async def test_replay_after_failure_is_already_completed(
    shared: tuple[Server, OrgKeys], browser: httpx.AsyncClient
) -> None:
    server, org = shared
    created = await start(server, org)
    callback_url = await sign_in(browser, created.authorization.url, "user_denied")
    assert_failure(await land(browser, callback_url), "access_denied")
    assert_failure(await land(browser, callback_url), "connect_session_already_completed")
    session = await session_of(server, org, created.link_session_id)
    assert session.status == pb.CONNECT_SESSION_STATUS_FAILED


async def test_expired_session(serve: Any, browser: httpx.AsyncClient) -> None:
    """A one-second session TTL: wait (bounded) until the session reads EXPIRED, then the
    manufacturer's redirect arrives too late."""
    server = serve(TEXTURE_SESSION_TTL="1")
    org = make_org(server.env)
    created = await start(server, org)
    callback_url = await sign_in(browser, created.authorization.url)
    deadline = asyncio.get_running_loop().time() + EXPIRY_DEADLINE
    while (await session_of(server, org, created.link_session_id)).status != (
        pb.CONNECT_SESSION_STATUS_EXPIRED
    ):
        assert asyncio.get_running_loop().time() < deadline, "the session never expired"
        await asyncio.sleep(0.05)
    before = await token_requests(browser, server, "tesla")
    assert_failure(await land(browser, callback_url), "connect_session_expired")
    assert await token_requests(browser, server, "tesla") == before


# ------------------------------------------------------------------ no safe target: error page


async def test_missing_malformed_or_unknown_state_gets_an_error_page(
    shared: tuple[Server, OrgKeys], browser: httpx.AsyncClient
) -> None:
    server, org = shared
    created = await start(server, org)
    callback_url = await sign_in(browser, created.authorization.url)
    attempt_id = query_of(callback_url)["state"].partition(".")[0]
    unknown_attempt = "c" + "0" * 8 + secrets.token_hex(8)
    bad_states = {
        "missing": None,
        "empty": "",
        "garbage": "garbage",
        "no secret": attempt_id,
        "short secret": f"{attempt_id}.{secrets.token_urlsafe(16)}",
        "long secret": f"{attempt_id}.{secrets.token_urlsafe(48)}",
        "unknown attempt": f"{unknown_attempt}.{secrets.token_urlsafe(32)}",
    }
    for case, state in bad_states.items():
        params = query_of(callback_url)
        if state is None:
            del params["state"]
        else:
            params["state"] = state
        url = callback_url.split("?")[0] + "?" + urlencode(params)
        response = await browser.get(url)
        assert response.status_code == 400, case
        assert "location" not in response.headers, case
        assert response.headers["content-type"].startswith("text/html"), case
        assert response.headers["referrer-policy"] == "no-referrer", case
        assert response.headers["cache-control"] == "no-store", case
        assert "yourapp.com" not in response.text, case
    # None of that used up the real state.
    location = await land(browser, callback_url)
    assert query_of(location)["texture_scoped_key"].startswith("tx_scoped_")


# ------------------------------------------------------------------------ retry and replays


async def test_connection_failed_keeps_session_open_for_a_new_attempt(
    shared: tuple[Server, OrgKeys], browser: httpx.AsyncClient
) -> None:
    server, org = shared
    created = await start(server, org)
    failed_url = await sign_in(browser, created.authorization.url, "user_token_fail")
    assert_failure(await land(browser, failed_url), "connection_failed")
    session = await session_of(server, org, created.link_session_id)
    assert session.status == pb.CONNECT_SESSION_STATUS_PENDING

    # The used state stays refused while the session is still open.
    assert_failure(await land(browser, failed_url), "connect_session_already_completed")
    session = await session_of(server, org, created.link_session_id)
    assert session.status == pb.CONNECT_SESSION_STATUS_PENDING

    async with server.channel() as channel:
        retry = await connection_pb2_grpc.ConnectionServiceStub(channel).StartAuthorization(
            pb.StartAuthorizationRequest(link_session_id=created.link_session_id),
            metadata=org.metadata,
            timeout=10,
        )
    assert retry.authorization.type == pb.AUTHORIZATION_TYPE_OAUTH_REDIRECT
    new_state = query_of(retry.authorization.url)["state"]
    assert new_state != query_of(created.authorization.url)["state"]

    retried_url = await sign_in(browser, retry.authorization.url, "user_good")
    assert query_of(retried_url)["state"] == new_state
    params = query_of(await land(browser, retried_url))
    assert params["texture_scoped_key"].startswith("tx_scoped_")
    assert params["texture_customer_id"] == created.customer_id
    session = await session_of(server, org, created.link_session_id)
    assert session.status == pb.CONNECT_SESSION_STATUS_COMPLETED

    assert_failure(await land(browser, failed_url), "connect_session_already_completed")


async def test_concurrent_double_callback_reaches_token_endpoint_once(
    shared: tuple[Server, OrgKeys], browser: httpx.AsyncClient
) -> None:
    server, org = shared
    created = await start(server, org)
    callback_url = await sign_in(browser, created.authorization.url)
    before = await token_requests(browser, server, "tesla")
    first, second = await asyncio.gather(browser.get(callback_url), browser.get(callback_url))
    assert first.status_code == second.status_code == 302, (first.text, second.text)
    outcomes = sorted(
        "success" if "texture_scoped_key" in params else params["texture_error"]
        for params in (query_of(first.headers["location"]), query_of(second.headers["location"]))
    )
    assert outcomes == ["connect_session_already_completed", "success"]
    assert await token_requests(browser, server, "tesla") == before + 1
    session = await session_of(server, org, created.link_session_id)
    assert session.status == pb.CONNECT_SESSION_STATUS_COMPLETED


# --------------------------------------------------------------------- what a success stores


async def test_existing_devices_flag_on_second_manufacturer(
    shared: tuple[Server, OrgKeys], browser: httpx.AsyncClient
) -> None:
    server, org = shared
    first, _, location = await connect(browser, server, org, headless_body("tesla"))
    assert "texture_existing_devices" not in query_of(location)

    second, _, location = await connect(
        browser, server, org, existing_customer_body(first.customer_id, "enphase"), "user_solar"
    )
    params = query_of(location)
    assert second.customer_id == first.customer_id
    assert params["texture_scoped_key"].startswith("tx_scoped_")
    assert params["texture_customer_id"] == first.customer_id
    assert params["texture_existing_devices"] == "true"


async def test_reconnecting_the_same_account_updates_instead_of_duplicating(
    shared: tuple[Server, OrgKeys], browser: httpx.AsyncClient
) -> None:
    server, org = shared
    first, _, location = await connect(browser, server, org)
    first_key = query_of(location)["texture_scoped_key"]
    customer = first.customer_id

    def counts() -> tuple[int, int]:
        devices = query_db(server, "SELECT count(*) FROM devices WHERE customer_id = ?", customer)
        connections = query_db(
            server, "SELECT count(*) FROM manufacturer_connections WHERE customer_id = ?", customer
        )
        return devices[0][0], connections[0][0]

    assert counts() == (2, 1)  # user_good: a battery and a thermostat, one tesla connection

    _, _, location = await connect(browser, server, org, existing_customer_body(customer, "tesla"))
    params = query_of(location)
    second_key = params["texture_scoped_key"]
    assert second_key.startswith("tx_scoped_") and second_key != first_key
    assert params["texture_customer_id"] == customer
    assert params["texture_existing_devices"] == "true"
    assert counts() == (2, 1)

    # Tokens are sealed at rest: no bearer-token-like run of characters in the column.
    (sealed,) = query_db(
        server,
        "SELECT access_token_sealed FROM manufacturer_connections WHERE customer_id = ?",
        customer,
    )[0]
    assert sealed and b"Bearer" not in sealed
    assert re.search(rb"[A-Za-z0-9_-]{32,}", sealed) is None
    # Scoped keys are stored hashed: the key itself is nowhere in the api_keys table.
    for key in (first_key, second_key):
        rows = query_db(server, "SELECT * FROM api_keys WHERE customer_id = ?", customer)
        assert all(key not in map(str, row) for row in rows)
        hashed = query_db(
            server,
            "SELECT kind FROM api_keys WHERE key_hash = ?",
            hashlib.sha256(key.encode()).hexdigest(),
        )
        assert hashed == [("scoped",)]


async def test_device_types_filter_limits_stored_devices(
    shared: tuple[Server, OrgKeys], browser: httpx.AsyncClient
) -> None:
    server, org = shared
    body = headless_body(
        manufacturerFilters={"manufacturers": ["tesla"], "deviceTypes": ["battery"]}
    )
    created, _, location = await connect(browser, server, org, body)
    assert query_of(location)["texture_scoped_key"].startswith("tx_scoped_")
    stored = query_db(server, "SELECT type FROM devices WHERE customer_id = ?", created.customer_id)
    assert stored == [("battery",)]

    # An account with nothing of the wanted types has nothing compatible to connect.
    created = await start(server, org, body)
    callback_url = await sign_in(browser, created.authorization.url, "user_ev")
    assert_failure(await land(browser, callback_url), "device_incompatible")


# ---------------------------------------------------------------------------------- the logs


async def test_no_secret_reaches_the_logs(
    shared: tuple[Server, OrgKeys], browser: httpx.AsyncClient
) -> None:
    server, org = shared
    secrets_seen = [org.secret_key, org.connect_key]
    data_dir = Path(server.env["TEXTURE_DATA_DIR"])
    secrets_seen += [
        (data_dir / name).read_text().strip() for name in ("internal.key", "encryption.key")
    ]

    created, callback_url, location = await connect(browser, server, org)
    secrets_seen += [
        query_of(location)["texture_scoped_key"],
        query_of(callback_url)["code"],
        query_of(callback_url)["state"],
        created.link_token,
    ]
    for user in ("user_token_fail", "user_denied", "user_no_subscription"):
        created = await start(server, org)
        callback_url = await sign_in(browser, created.authorization.url, user)
        await land(browser, callback_url)
        params = query_of(callback_url)
        secrets_seen += [params["state"], created.link_token]
        if "code" in params:
            secrets_seen.append(params["code"])
    created = await start(server, org)
    callback_url = tampered(await sign_in(browser, created.authorization.url))
    await land(browser, callback_url)
    secrets_seen.append(query_of(callback_url)["state"])

    logs = server.logs() + "".join(server.output)
    assert "callback" in logs  # the log is not empty: the flows above were logged
    leaked = [value for value in secrets_seen if value in logs]
    assert leaked == []
