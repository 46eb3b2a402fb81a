"""Scale-out: two ``texture-connect serve`` processes on one PostgreSQL database.

All flow state lives in the database, so a session created through one replica can be
completed through the other, and the callback claim is atomic across replicas.

The replicas stand behind one public URL, as they would behind a load balancer: both use the
first server's URL as ``TEXTURE_PUBLIC_URL``, so the redirect_uri they send to the
manufacturer is the same (RFC 6749 §4.1.3: the token request must repeat the redirect_uri
of the authorization request). The test plays the load balancer by sending the browser's
callback to whichever replica it chooses. Both share the encryption key (PKCE verifiers are
sealed by one replica and opened by the other) and use the first server's sandbox.

Each test gets a database of its own, dropped afterwards. With CI=true an unreachable
PostgreSQL fails the test; otherwise it is skipped.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
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

from texture.connect.v1 import connection_pb2 as pb
from texture.connect.v1 import connection_pb2_grpc
from texture_connect.crypto import new_encryption_key

ADMIN_URL = os.environ.get("TEXTURE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"


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
    def sandbox_url(self) -> str:
        return f"{self.first.http_url}/sandbox"


@pytest.fixture
def cluster(postgres_database: str, serve: Callable[..., Server]) -> Cluster:
    """Two replicas on one database. Requesting ``postgres_database`` before ``serve``
    makes the servers stop before the database is dropped."""
    shared = {
        "TEXTURE_ENCRYPTION_KEY": new_encryption_key(),
        "TEXTURE_INTERNAL_KEY": "tx_ik_" + secrets.token_urlsafe(32),
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
    async with httpx.AsyncClient(follow_redirects=False, timeout=30) as client:
        yield client


def to_replica(callback_url: str, server: Server) -> str:
    """The callback as the load balancer would forward it to ``server``."""
    parts = urlsplit(callback_url)
    return urlunsplit(parts._replace(netloc=urlsplit(server.http_url).netloc))


async def token_requests(browser: httpx.AsyncClient, cluster: Cluster) -> int:
    response = await browser.get(f"{cluster.sandbox_url}/_stats")
    assert response.status_code == 200
    return int(response.json()["token_requests"].get("tesla", 0))


async def status_on(server: Server, org: OrgKeys, link_session_id: str) -> int:
    async with server.channel() as channel:
        reply = await connection_pb2_grpc.ConnectionServiceStub(channel).GetConnection(
            pb.GetConnectionRequest(link_session_id=link_session_id),
            metadata=org.metadata,
            timeout=10,
        )
    return int(reply.session.status)


async def start_and_sign_in(
    browser: httpx.AsyncClient, cluster: Cluster
) -> tuple[pb.CreateConnectionResponse, str]:
    """Creates the session through the first replica and signs in at the manufacturer;
    returns the response and the callback URL the manufacturer redirects to."""
    body: dict[str, Any] = {
        **HEADLESS_BODY,
        "customerInfo": {
            **HEADLESS_BODY["customerInfo"],
            "email": f"jane+{secrets.token_hex(6)}@example.com",
        },
    }
    created = await create_connection(cluster.first, cluster.org, body)
    callback_url = await authorize(browser, created.authorization.url, "user_good")
    return created, callback_url


async def test_session_created_on_one_replica_completes_on_the_other(
    cluster: Cluster, browser: httpx.AsyncClient
) -> None:
    created, callback_url = await start_and_sign_in(browser, cluster)
    before = await token_requests(browser, cluster)

    landed = await browser.get(to_replica(callback_url, cluster.second))

    assert landed.status_code == 302, landed.text
    location = landed.headers["location"]
    assert location.startswith(HEADLESS_BODY["redirectUrl"] + "?"), location
    params = query_of(location)
    assert "texture_error" not in params, location
    assert params["texture_scoped_key"].startswith("tx_scoped_")
    assert params["texture_customer_id"] == created.customer_id
    assert await token_requests(browser, cluster) == before + 1
    for server in (cluster.first, cluster.second):
        status = await status_on(server, cluster.org, created.link_session_id)
        assert status == pb.CONNECT_SESSION_STATUS_COMPLETED


async def test_double_callback_split_across_replicas_completes_once(
    cluster: Cluster, browser: httpx.AsyncClient
) -> None:
    created, callback_url = await start_and_sign_in(browser, cluster)
    before = await token_requests(browser, cluster)

    responses = await asyncio.gather(
        browser.get(to_replica(callback_url, cluster.first)),
        browser.get(to_replica(callback_url, cluster.second)),
    )

    assert [r.status_code for r in responses] == [302, 302], [r.text for r in responses]
    outcomes = sorted(
        "success" if "texture_scoped_key" in params else params["texture_error"]
        for params in (query_of(r.headers["location"]) for r in responses)
    )
    assert outcomes == ["connect_session_already_completed", "success"]
    assert await token_requests(browser, cluster) == before + 1
    status = await status_on(cluster.second, cluster.org, created.link_session_id)
    assert status == pb.CONNECT_SESSION_STATUS_COMPLETED


async def test_concurrent_sessions_of_one_customer_on_two_replicas_both_complete(
    cluster: Cluster, browser: httpx.AsyncClient
) -> None:
    """The same customer connecting the same manufacturer from two sessions at once (two
    tabs, two devices) must not turn into an error page: one connection is stored and both
    flows land on redirectUrl with a scoped key. The race is timing-dependent, so it is
    run a number of times (on a fixed server every round succeeds)."""
    for _ in range(12):
        first, first_callback = await start_and_sign_in(browser, cluster)
        second = await create_connection(
            cluster.first,
            cluster.org,
            {
                "mode": "CONNECT_MODE_HEADLESS",
                "manufacturerFilters": {"manufacturers": ["tesla"]},
                "customerId": first.customer_id,
                "redirectUrl": HEADLESS_BODY["redirectUrl"],
            },
        )
        second_callback = await authorize(browser, second.authorization.url, "user_good")

        responses = await asyncio.gather(
            browser.get(to_replica(first_callback, cluster.first)),
            browser.get(to_replica(second_callback, cluster.second)),
        )

        assert [r.status_code for r in responses] == [302, 302], [r.text for r in responses]
        for response in responses:
            params = query_of(response.headers["location"])
            assert params["texture_scoped_key"].startswith("tx_scoped_"), params
            assert params["texture_customer_id"] == first.customer_id
