"""The sandbox manufacturer's direct-credentials API: POST /{M}/api/login and
POST /{M}/api/login/otp (over ASGI, with a clock the tests move)."""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from texture_connect.http.sandbox import (
    OTP_CHALLENGE_TTL_SECONDS,
    SANDBOX_ONE_TIME_CODE,
    SANDBOX_PASSWORD,
    SANDBOX_USERS,
    create_sandbox_app,
)

ORIGIN = "http://127.0.0.1:8080"
CLIENT = ("texture-dev", "dev-secret-for-credentials")
OTHER_CLIENT = ("other-client", "other-secret")
START = 1_750_000_000.0


class Env:
    """The sandbox over ASGI and the clock it reads."""

    def __init__(self) -> None:
        self.now = START
        app = create_sandbox_app(
            base_url=f"{ORIGIN}/sandbox",
            clients=dict([CLIENT, OTHER_CLIENT]),
            access_token_ttl=3600,
            clock=lambda: self.now,
        )
        self.app = Starlette(routes=[Mount("/sandbox", app=app)])


@pytest.fixture
def env() -> Env:
    return Env()


@pytest.fixture
async def http(env: Env) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=env.app)
    async with httpx.AsyncClient(transport=transport, base_url=f"{ORIGIN}/sandbox") as client:
        yield client


async def login(
    http: httpx.AsyncClient, username: str, password: str = SANDBOX_PASSWORD, **options: Any
) -> httpx.Response:
    return await post(http, "login", {"username": username, "password": password}, **options)


async def submit(
    http: httpx.AsyncClient, challenge_id: str, code: str = SANDBOX_ONE_TIME_CODE, **options: Any
) -> httpx.Response:
    return await post(http, "login/otp", {"challenge_id": challenge_id, "code": code}, **options)


async def post(
    http: httpx.AsyncClient,
    path: str,
    body: dict[str, str],
    *,
    manufacturer: str = "generac",
    client: tuple[str, str] = CLIENT,
) -> httpx.Response:
    return await http.post(f"/{manufacturer}/api/{path}", json=body, auth=client)


async def challenge(http: httpx.AsyncClient, manufacturer: str = "generac") -> str:
    response = await login(http, "user_otp", manufacturer=manufacturer)
    assert response.status_code == 200
    challenge_id = response.json()["challenge_id"]
    assert isinstance(challenge_id, str)
    return challenge_id


async def devices(http: httpx.AsyncClient, access_token: str, manufacturer: str = "generac") -> Any:
    return await http.get(
        f"/{manufacturer}/api/devices", headers={"Authorization": f"Bearer {access_token}"}
    )


def assert_tokens(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token", "scope"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == "devices:read"
    assert len(body["access_token"]) >= 43 and len(body["refresh_token"]) >= 43
    return body


def assert_error(response: httpx.Response, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    assert response.headers["cache-control"] == "no-store"


# --- sign-in with username and password ---------------------------------------------------


async def test_a_good_user_gets_tokens_that_work_at_the_device_api(
    http: httpx.AsyncClient,
) -> None:
    body = assert_tokens(await login(http, "user_good"))

    listed = await devices(http, body["access_token"])
    assert listed.status_code == 200
    assert [d["type"] for d in listed.json()["devices"]] == ["battery", "thermostat"]
    assert {d["manufacturer"] for d in listed.json()["devices"]} == {"generac"}


async def test_the_refresh_token_works_at_the_token_endpoint(http: httpx.AsyncClient) -> None:
    body = assert_tokens(await login(http, "user_solar", manufacturer="rheem"))

    refreshed = await http.post(
        "/rheem/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
        auth=CLIENT,
    )
    fresh = assert_tokens(refreshed)
    assert (await devices(http, fresh["access_token"], "rheem")).status_code == 200
    # Rotated: the first refresh token is dead now.
    again = await http.post(
        "/rheem/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
        auth=CLIENT,
    )
    assert_error(again, 400, "invalid_grant")


async def test_tokens_are_bound_to_the_manufacturer_and_expire(
    http: httpx.AsyncClient, env: Env
) -> None:
    body = assert_tokens(await login(http, "user_good"))

    assert (await devices(http, body["access_token"], "rheem")).status_code == 401
    env.now += 3600
    assert (await devices(http, body["access_token"])).status_code == 401


async def test_form_encoded_login_works_too(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/generac/api/login",
        data={"username": "user_ev", "password": SANDBOX_PASSWORD},
        auth=CLIENT,
    )
    body = assert_tokens(response)
    listed = await devices(http, body["access_token"])
    assert [d["type"] for d in listed.json()["devices"]] == ["vehicle", "charger"]


async def test_client_secret_post_in_the_json_body_is_accepted(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/generac/api/login",
        json={
            "username": "user_good",
            "password": SANDBOX_PASSWORD,
            "client_id": CLIENT[0],
            "client_secret": CLIENT[1],
        },
    )
    assert_tokens(response)


@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("user_good", "pass_bad"),
        ("user_good", "PASS_GOOD"),
        ("user_nobody", SANDBOX_PASSWORD),
        ("user_otp", "pass_bad"),
    ],
)
async def test_wrong_credentials_are_401_invalid_credentials(
    http: httpx.AsyncClient, username: str, password: str
) -> None:
    response = await login(http, username, password)
    assert_error(response, 401, "invalid_credentials")
    assert password not in response.text


@pytest.mark.parametrize(
    "client",
    [None, ("texture-dev", "wrong-secret"), ("nobody", CLIENT[1])],
    ids=["no-client-auth", "wrong-secret", "unknown-client"],
)
async def test_the_client_must_authenticate(
    http: httpx.AsyncClient, client: tuple[str, str] | None
) -> None:
    response = await http.post(
        "/generac/api/login",
        json={"username": "user_good", "password": SANDBOX_PASSWORD},
        auth=client,
    )
    assert_error(response, 401, "invalid_client")
    assert response.headers["www-authenticate"] == 'Basic realm="sandbox"'


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"{not json", "application/json"),
        (b'["user_good", "pass_good"]', "application/json"),
        (b'{"username": "user_good", "password": 1}', "application/json"),
        (b'{"username": "user_good"}', "application/json"),
        (b'{"username": "", "password": "pass_good"}', "application/json"),
        (b"username=user_good&password=pass_good", "text/plain"),
        (b"username=user_good&username=user_ev&password=pass_good", None),
    ],
)
async def test_malformed_login_requests_are_400(
    http: httpx.AsyncClient, content: bytes, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type or "application/x-www-form-urlencoded"}
    response = await http.post("/generac/api/login", content=content, headers=headers, auth=CLIENT)
    assert_error(response, 400, "invalid_request")


async def test_an_invalid_manufacturer_slug_is_404(http: httpx.AsyncClient) -> None:
    assert (await login(http, "user_good", manufacturer="Generac")).status_code == 404
    response = await http.post("/Generac/api/login/otp", json={}, auth=CLIENT)
    assert response.status_code == 404


# --- scenario users -------------------------------------------------------------------------


async def test_user_no_subscription_signs_in_but_the_device_api_answers_403(
    http: httpx.AsyncClient,
) -> None:
    body = assert_tokens(await login(http, "user_no_subscription"))
    listed = await devices(http, body["access_token"])
    assert listed.status_code == 403
    assert listed.json()["error"] == "subscription_required"


async def test_user_incompatible_owns_only_a_gadget(http: httpx.AsyncClient) -> None:
    body = assert_tokens(await login(http, "user_incompatible"))
    listed = await devices(http, body["access_token"])
    assert [d["type"] for d in listed.json()["devices"]] == ["unknown_gadget"]


async def test_user_refresh_revoked_cannot_refresh(http: httpx.AsyncClient) -> None:
    body = assert_tokens(await login(http, "user_refresh_revoked"))
    refreshed = await http.post(
        "/generac/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
        auth=CLIENT,
    )
    assert_error(refreshed, 400, "invalid_grant")


@pytest.mark.parametrize(
    ("username", "status", "error"),
    [
        ("user_server_error", 500, "server_error"),
        ("user_token_fail", 500, "server_error"),
        ("user_unavailable", 503, "temporarily_unavailable"),
    ],
)
async def test_failing_users_make_the_login_api_fail(
    http: httpx.AsyncClient, username: str, status: int, error: str
) -> None:
    assert_error(await login(http, username), status, error)


@pytest.mark.parametrize("username", ["user_denied", "user_vendor_denied", "user_weird"])
async def test_consent_page_scenarios_do_not_apply_to_a_credential_login(
    http: httpx.AsyncClient, username: str
) -> None:
    # They script the OAuth consent page's answer; on a credential sign-in the customer
    # cancels on our page instead, so the manufacturer simply signs them in.
    assert_tokens(await login(http, username))


# --- the one-time-code step ---------------------------------------------------------------


async def test_user_otp_is_asked_for_a_one_time_code(http: httpx.AsyncClient) -> None:
    response = await login(http, "user_otp")

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"otp_required", "challenge_id", "delivery"}
    assert body["otp_required"] is True
    assert body["delivery"] == "sms to \u2022\u2022\u2022\u2022 0100"
    assert len(body["challenge_id"]) >= 32
    assert SANDBOX_USERS["user_otp"].one_time_code_required


async def test_the_right_code_gives_tokens_for_user_otps_devices(
    http: httpx.AsyncClient,
) -> None:
    first, second = await challenge(http), await challenge(http)
    assert first != second

    body = assert_tokens(await submit(http, first))
    listed = await devices(http, body["access_token"])
    assert [d["type"] for d in listed.json()["devices"]] == ["battery", "inverter"]


async def test_form_encoded_code_works_too(http: httpx.AsyncClient) -> None:
    challenge_id = await challenge(http)
    response = await http.post(
        "/generac/api/login/otp",
        data={"challenge_id": challenge_id, "code": SANDBOX_ONE_TIME_CODE},
        auth=CLIENT,
    )
    assert_tokens(response)


async def test_a_challenge_is_single_use(http: httpx.AsyncClient) -> None:
    challenge_id = await challenge(http)
    assert_tokens(await submit(http, challenge_id))

    assert_error(await submit(http, challenge_id), 401, "challenge_expired")


async def test_a_wrong_code_may_be_retried(http: httpx.AsyncClient) -> None:
    challenge_id = await challenge(http)
    assert_error(await submit(http, challenge_id, "000000"), 401, "invalid_otp")
    assert_error(await submit(http, challenge_id, "654321"), 401, "invalid_otp")

    assert_tokens(await submit(http, challenge_id))


async def test_three_wrong_codes_end_the_challenge(http: httpx.AsyncClient) -> None:
    challenge_id = await challenge(http)
    for wrong in ("000000", "111111", "222222"):
        assert_error(await submit(http, challenge_id, wrong), 401, "invalid_otp")

    assert_error(await submit(http, challenge_id), 401, "challenge_expired")


async def test_a_challenge_expires_after_five_minutes(http: httpx.AsyncClient, env: Env) -> None:
    assert OTP_CHALLENGE_TTL_SECONDS == 300
    early, late = await challenge(http), await challenge(http)

    env.now += OTP_CHALLENGE_TTL_SECONDS - 1
    assert_tokens(await submit(http, early))
    env.now += 1
    assert_error(await submit(http, late), 401, "challenge_expired")


async def test_a_challenge_belongs_to_its_manufacturer_and_client(
    http: httpx.AsyncClient,
) -> None:
    challenge_id = await challenge(http, "generac")

    assert_error(await submit(http, challenge_id, manufacturer="rheem"), 401, "challenge_expired")
    other = await submit(http, challenge_id, client=OTHER_CLIENT)
    assert_error(other, 401, "challenge_expired")
    # Neither attempt used it up.
    assert_tokens(await submit(http, challenge_id))


async def test_an_unknown_challenge_is_expired(http: httpx.AsyncClient) -> None:
    assert_error(await submit(http, "no-such-challenge"), 401, "challenge_expired")


@pytest.mark.parametrize(
    "body", [{"challenge_id": "x"}, {"code": "123456"}, {"challenge_id": "", "code": "123456"}]
)
async def test_a_code_submission_needs_both_fields(
    http: httpx.AsyncClient, body: dict[str, str]
) -> None:
    response = await http.post("/generac/api/login/otp", json=body, auth=CLIENT)
    assert_error(response, 400, "invalid_request")


async def test_a_code_submission_needs_client_authentication(http: httpx.AsyncClient) -> None:
    challenge_id = await challenge(http)
    response = await http.post(
        "/generac/api/login/otp",
        json={"challenge_id": challenge_id, "code": SANDBOX_ONE_TIME_CODE},
    )
    assert_error(response, 401, "invalid_client")
    assert_tokens(await submit(http, challenge_id))


# --- stats and logs -------------------------------------------------------------------------


async def test_stats_count_credential_logins_per_manufacturer(http: httpx.AsyncClient) -> None:
    await login(http, "user_good")
    await login(http, "user_good", "wrong")
    challenge_id = await challenge(http)
    await submit(http, challenge_id)  # a code is not a login
    await login(http, "user_good", manufacturer="rheem")

    stats = (await http.get("/_stats")).json()
    assert stats["credential_logins"] == {"generac": 3, "rheem": 1}
    assert stats["token_requests"] == {}


async def test_passwords_codes_challenges_and_tokens_are_never_logged(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    password = "wrong-password-7781"
    caplog.set_level(logging.DEBUG)

    await login(http, "user_good", password)
    await login(http, password, SANDBOX_PASSWORD)  # a password typed as the username
    tokens = assert_tokens(await login(http, "user_good"))
    challenge_id = await challenge(http)
    await submit(http, challenge_id, "987654")
    more = assert_tokens(await submit(http, challenge_id))

    logged = caplog.text + "".join(repr(record.args) for record in caplog.records)
    assert "credential login" in logged  # the sandbox does log, just nothing secret
    secrets_ = [
        password,
        SANDBOX_PASSWORD,
        SANDBOX_ONE_TIME_CODE,
        "987654",
        challenge_id,
        tokens["access_token"],
        tokens["refresh_token"],
        more["access_token"],
        more["refresh_token"],
        CLIENT[1],
        base64.b64encode(f"{CLIENT[0]}:{CLIENT[1]}".encode()).decode(),
    ]
    for secret in secrets_:
        assert secret not in logged
