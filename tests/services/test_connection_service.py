"""ConnectionService over real gRPC (TCP, port 0) on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import grpc
import pytest
import sqlalchemy as sa
from conftest import ManualClock, Org, OrgFactory
from google.protobuf import json_format
from support import rich_error

from texture.connect.v1 import connection_pb2 as pb
from texture.connect.v1 import connection_pb2_grpc
from texture_connect.domain.keys import hash_key
from texture_connect.storage import Store, Transaction
from texture_connect.storage import schema as tables

REDIRECT = "https://yourapp.com/oauth/callback"
JANE = {
    "firstName": "Jane",
    "lastName": "Smith",
    "email": "jane@example.com",
    "location": {
        "streetOne": "123 Main St",
        "city": "Austin",
        "state": "TX",
        "postalCode": "78701",
        "country": "US",
    },
}
Stub = connection_pb2_grpc.ConnectionServiceStub


def request(body: dict[str, Any]) -> pb.CreateConnectionRequest:
    """Parses a JSON body exactly as a client using the proto3 JSON mapping would send it."""
    return json_format.Parse(json.dumps(body), pb.CreateConnectionRequest())


async def create(stub: Stub, org: Org, body: dict[str, Any], key: str = "secret") -> Any:
    return await stub.CreateConnection(request(body), metadata=getattr(org, key))


async def rejected(stub: Stub, org: Org, body: dict[str, Any], key: str = "secret") -> Any:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create(stub, org, body, key)
    return rich_error(caught.value)


async def count_rows(store: Store) -> dict[str, int]:
    def count(tx: Transaction) -> dict[str, int]:
        return {
            table.name: tx._c.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            for table in (tables.customers, tables.sites, tables.connect_sessions)
        }

    return await store.read(count)


# The seed's own request bodies -------------------------------------------------------------


async def test_seed_headless_body_with_customer_info(connections: Stub, org: Org) -> None:
    body = {
        "mode": "CONNECT_MODE_HEADLESS",
        "manufacturerFilters": {"manufacturers": ["tesla"]},
        "customerInfo": JANE,
        "redirectUrl": REDIRECT,
    }
    response = await create(connections, org, body)
    as_json = json.loads(json_format.MessageToJson(response))
    assert set(as_json) == {
        "customerId",
        "linkUrl",
        "linkToken",
        "linkSessionId",
        "expiresAt",
        "siteId",
        "authorization",
    }
    assert as_json["authorization"]["type"] == "AUTHORIZATION_TYPE_OAUTH_REDIRECT"
    assert as_json["expiresAt"].endswith("Z")  # RFC 3339
    assert response.link_token.startswith("link_") and len(response.link_token) == 37
    int(response.link_token[5:], 16)
    assert response.link_url == f"https://connect.test/{response.link_token}"

    url = urlsplit(response.authorization.url)
    query = parse_qs(url.query)
    assert url.path.endswith("/tesla/oauth/authorize")
    assert query["response_type"] == ["code"]
    assert query["redirect_uri"] == ["https://connect.test/v1/oauth/callback"]
    assert query["code_challenge_method"] == ["S256"]
    assert "code_verifier" not in query
    assert len(base64.urlsafe_b64decode(query["code_challenge"][0] + "=")) == 32
    assert "energy_device_data" in query["scope"][0]
    _attempt_id, secret = query["state"][0].split(".")
    assert len(base64.urlsafe_b64decode(secret + "=")) * 8 >= 256


async def test_seed_standard_body_with_everything(connections: Stub, org: Org) -> None:
    body = {
        "referenceId": "user-42",
        "clientName": "Energy Coffee",
        "redirectUrl": "https://your-application.com/redirect",
        "tags": ["tag1", "tag2"],
        "manufacturerFilters": {"manufacturers": ["honeywell", "daikin"]},
        "customerInfo": {
            "email": "example@example.com",
            "phone": "555-555-0100",
            "firstName": "John",
            "lastName": "Doe",
        },
    }
    response = await create(connections, org, body, key="connect")
    assert response.customer_id and not response.site_id  # the hosted form collects it
    assert not response.HasField("authorization")
    got = await connections.GetConnection(
        pb.GetConnectionRequest(link_session_id=response.link_session_id), metadata=org.secret
    )
    session = got.session
    assert session.status == pb.CONNECT_SESSION_STATUS_PENDING
    assert session.mode == pb.CONNECT_MODE_STANDARD
    assert session.reference_id == "user-42"
    assert list(session.tags) == ["tag1", "tag2"]
    assert list(session.manufacturer_filters.manufacturers) == ["honeywell", "daikin"]
    assert session.customer_form_bypassed is False


async def test_defaults(connections: Stub, org: Org) -> None:
    response = await create(connections, org, {"redirectUrl": "myapp://device/connected"})
    session = (
        await connections.GetConnection(
            pb.GetConnectionRequest(link_session_id=response.link_session_id),
            metadata=org.secret,
        )
    ).session
    assert session.reference_id.startswith("texture-generated:")
    assert session.reference_id[len("texture-generated:") :][14] == "7"  # uuidv7
    assert session.client_name == org.organization.name
    assert (session.expires_at.seconds - session.create_time.seconds) == 1800


# Keys and permissions ----------------------------------------------------------------------


async def test_missing_and_unknown_keys_are_unauthenticated(connections: Stub) -> None:
    for metadata in ((), (("texture-api-key", "tx_sk_nope"),)):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await connections.CreateConnection(
                request({"redirectUrl": REDIRECT}), metadata=metadata
            )
        error = rich_error(caught.value)
        assert error.code == grpc.StatusCode.UNAUTHENTICATED
        assert error.reason in ("API_KEY_MISSING", "API_KEY_INVALID")
        assert error.domain == "connect.texturehq.com"


async def test_connect_key_limits(connections: Stub, org: Org) -> None:
    headless = {
        "mode": "CONNECT_MODE_HEADLESS",
        "manufacturerFilters": {"manufacturers": ["tesla"]},
        "customerInfo": JANE,
        "redirectUrl": REDIRECT,
    }
    error = await rejected(connections, org, headless, key="connect")
    assert (error.code, error.reason) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "CONNECT_KEY_NOT_ALLOWED",
    )
    created = await create(connections, org, {"redirectUrl": REDIRECT}, key="connect")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await connections.GetConnection(
            pb.GetConnectionRequest(link_session_id=created.link_session_id),
            metadata=org.connect,
        )
    assert rich_error(caught.value).reason == "CONNECT_KEY_NOT_ALLOWED"


async def test_revoked_key_is_unauthenticated(connections: Stub, org: Org, store: Store) -> None:
    await create(connections, org, {"redirectUrl": REDIRECT})

    def revoke(tx: Transaction) -> bool:
        key_id = tx.key_id_for_hash(hash_key(org.secret_key))
        assert key_id is not None
        return tx.revoke_api_key(key_id=key_id, now=datetime.now(UTC))

    assert await store.write(revoke)
    error = await rejected(connections, org, {"redirectUrl": REDIRECT})
    assert (error.code, error.reason) == (grpc.StatusCode.UNAUTHENTICATED, "API_KEY_INVALID")


async def test_headless_needs_the_enterprise_flag(connections: Stub, make_org: OrgFactory) -> None:
    basic = await make_org("Basic Co", headless=False)
    error = await rejected(
        connections,
        basic,
        {
            "mode": "CONNECT_MODE_HEADLESS",
            "manufacturerFilters": {"manufacturers": ["tesla"]},
            "customerInfo": JANE,
            "redirectUrl": REDIRECT,
        },
    )
    assert (error.code, error.reason) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "HEADLESS_NOT_ENABLED",
    )


async def test_internal_methods_refuse_organization_keys(
    channel: grpc.aio.Channel, org: Org
) -> None:
    from texture.connect.v1 import callback_pb2, callback_pb2_grpc

    stub = callback_pb2_grpc.CallbackServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.HandleOAuthCallback(
            callback_pb2.HandleOAuthCallbackRequest(state="x"), metadata=org.secret
        )
    error = rich_error(caught.value)
    assert (error.code, error.reason) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "INTERNAL_CREDENTIAL_REQUIRED",
    )


# Validation: each rejection names its JSON field path and leaves nothing behind ------------


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"redirectUrl"}),
        ({"redirectUrl": "javascript:alert(1)"}, {"redirectUrl"}),
        ({"redirectUrl": "data:text/html,hi"}, {"redirectUrl"}),
        ({"redirectUrl": "file:///etc/passwd"}, {"redirectUrl"}),
        ({"redirectUrl": "vbscript:msgbox"}, {"redirectUrl"}),
        ({"redirectUrl": "https://user:pw@evil.example/"}, {"redirectUrl"}),
        ({"redirectUrl": "http://example.com/cb"}, {"redirectUrl"}),
        ({"redirectUrl": "https://a.example/" + "x" * 2100}, {"redirectUrl"}),
        (
            {"redirectUrl": REDIRECT, "customerInfo": {"location": {"city": "Austin"}}},
            {
                "customerInfo.location.streetOne",
                "customerInfo.location.state",
                "customerInfo.location.postalCode",
                "customerInfo.location.country",
            },
        ),
        (
            {"redirectUrl": REDIRECT, "customerInfo": {**JANE, "email": "not-an-email"}},
            {"customerInfo.email"},
        ),
        (
            {
                "redirectUrl": REDIRECT,
                "customerInfo": {**JANE, "location": {**JANE["location"], "country": "USA"}},  # type: ignore[dict-item]
            },
            {"customerInfo.location.country"},
        ),
        (
            {"redirectUrl": REDIRECT, "manufacturerFilters": {"manufacturers": ["nope"]}},
            {"manufacturerFilters.manufacturers[0]"},
        ),
        (
            {"redirectUrl": REDIRECT, "manufacturerFilters": {"deviceTypes": ["toaster"]}},
            {"manufacturerFilters.deviceTypes[0]"},
        ),
        (
            {
                "redirectUrl": REDIRECT,
                "manufacturerFilters": {"manufacturers": ["honeywell"], "deviceTypes": ["vehicle"]},
            },
            {"manufacturerFilters"},
        ),
        ({"redirectUrl": REDIRECT, "tags": ["ok", ""]}, {"tags[1]"}),
        ({"redirectUrl": REDIRECT, "tags": [f"t{i}" for i in range(21)]}, {"tags"}),
        ({"redirectUrl": REDIRECT, "tags": ["x" * 65]}, {"tags[0]"}),
        (
            {
                "redirectUrl": REDIRECT,
                "mode": "CONNECT_MODE_HEADLESS",
                "manufacturerFilters": {"manufacturers": ["tesla", "enphase"]},
                "customerInfo": JANE,
            },
            {"manufacturerFilters.manufacturers"},
        ),
        (
            {
                "redirectUrl": REDIRECT,
                "mode": "CONNECT_MODE_HEADLESS",
                "manufacturerFilters": {"manufacturers": ["generac"]},
                "customerInfo": JANE,
            },
            {"manufacturerFilters.manufacturers[0]"},
        ),
        (
            {
                "redirectUrl": REDIRECT,
                "mode": "CONNECT_MODE_HEADLESS",
                "manufacturerFilters": {"manufacturers": ["tesla"]},
                "siteId": "cabc",
            },
            {"siteId", "customerId"},
        ),
        (
            {
                "redirectUrl": REDIRECT,
                "mode": "CONNECT_MODE_HEADLESS",
                "manufacturerFilters": {"manufacturers": ["tesla"]},
                "customerInfo": {"firstName": "Jane", "email": "jane@example.com"},
            },
            {"customerInfo.lastName", "customerInfo.location"},
        ),
    ],
)
async def test_invalid_requests_name_each_field_and_write_nothing(
    connections: Stub, org: Org, store: Store, body: dict[str, Any], fields: set[str]
) -> None:
    before = await count_rows(store)
    error = await rejected(connections, org, body)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "INVALID_REQUEST"
    assert set(error.fields) == fields
    assert await count_rows(store) == before


async def test_error_messages_do_not_echo_the_api_key(connections: Stub, org: Org) -> None:
    error = await rejected(connections, org, {"redirectUrl": "javascript:" + org.secret_key})
    assert org.secret_key not in error.message
    assert all(org.secret_key not in d for d in error.fields.values())


# Customers and sites -----------------------------------------------------------------------


async def test_complete_customer_info_bypasses_the_form_and_creates_a_site(
    connections: Stub, org: Org
) -> None:
    response = await create(connections, org, {"redirectUrl": REDIRECT, "customerInfo": JANE})
    assert response.site_id
    session = (
        await connections.GetConnection(
            pb.GetConnectionRequest(link_session_id=response.link_session_id),
            metadata=org.secret,
        )
    ).session
    assert session.customer_form_bypassed is True


async def test_customer_reused_by_email_case_insensitively_and_site_by_address(
    connections: Stub, org: Org, store: Store
) -> None:
    first = await create(connections, org, {"redirectUrl": REDIRECT, "customerInfo": JANE})
    respelled = {
        **JANE,
        "email": "JANE@Example.COM",
        "phone": "555-555-0100",
        "location": {**JANE["location"], "streetOne": "123 main street"},  # type: ignore[dict-item]
    }
    second = await create(connections, org, {"redirectUrl": REDIRECT, "customerInfo": respelled})
    assert second.customer_id == first.customer_id
    assert second.site_id == first.site_id
    customer = await store.read(lambda tx: tx.get_customer(org.id, first.customer_id))
    assert customer is not None and customer.phone == "555-555-0100"  # updated
    moved = {**JANE, "location": {**JANE["location"], "streetOne": "9 Elm St"}}  # type: ignore[dict-item]
    third = await create(connections, org, {"redirectUrl": REDIRECT, "customerInfo": moved})
    assert third.customer_id == first.customer_id and third.site_id != first.site_id


async def test_customer_reused_by_reference_id(connections: Stub, org: Org) -> None:
    first = await create(connections, org, {"redirectUrl": REDIRECT, "referenceId": "u-1"})
    second = await create(connections, org, {"redirectUrl": REDIRECT, "referenceId": "u-1"})
    other = await create(connections, org, {"redirectUrl": REDIRECT, "referenceId": "u-2"})
    assert first.customer_id == second.customer_id != other.customer_id


async def test_customer_id_takes_priority_and_first_site_is_used(
    connections: Stub, org: Org
) -> None:
    first = await create(connections, org, {"redirectUrl": REDIRECT, "customerInfo": JANE})
    other_place = {**JANE, "location": {**JANE["location"], "streetOne": "1 Oak Ave"}}  # type: ignore[dict-item]
    await create(connections, org, {"redirectUrl": REDIRECT, "customerInfo": other_place})
    again = await create(
        connections,
        org,
        {
            "redirectUrl": REDIRECT,
            "customerId": first.customer_id,
            "customerInfo": {"email": "someone.else@example.com"},
        },
    )
    assert again.customer_id == first.customer_id
    assert again.site_id == first.site_id  # the first associated site


async def test_site_id_wins_and_must_belong_to_the_customer(connections: Stub, org: Org) -> None:
    jane = await create(connections, org, {"redirectUrl": REDIRECT, "customerInfo": JANE})
    bob_info = {**JANE, "email": "bob@example.com"}
    bob_info["location"] = {**JANE["location"], "streetOne": "5 Pine Rd"}  # type: ignore[dict-item]
    bob = await create(connections, org, {"redirectUrl": REDIRECT, "customerInfo": bob_info})
    by_site = await create(connections, org, {"redirectUrl": REDIRECT, "siteId": bob.site_id})
    assert (by_site.customer_id, by_site.site_id) == (bob.customer_id, bob.site_id)
    error = await rejected(
        connections,
        org,
        {"redirectUrl": REDIRECT, "customerId": jane.customer_id, "siteId": bob.site_id},
    )
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and "siteId" in error.fields


async def test_headless_existing_customer_combinations(connections: Stub, org: Org) -> None:
    created = await create(connections, org, {"redirectUrl": REDIRECT, "customerInfo": JANE})
    base = {
        "mode": "CONNECT_MODE_HEADLESS",
        "manufacturerFilters": {"manufacturers": ["enphase"]},
        "redirectUrl": REDIRECT,
    }
    by_customer = await create(connections, org, {**base, "customerId": created.customer_id})
    assert by_customer.site_id == created.site_id and by_customer.authorization.url
    explicit = await create(
        connections,
        org,
        {**base, "customerId": created.customer_id, "siteId": created.site_id},
    )
    assert explicit.site_id == created.site_id
    siteless = await create(connections, org, {"redirectUrl": REDIRECT, "referenceId": "nosite"})
    error = await rejected(connections, org, {**base, "customerId": siteless.customer_id})
    assert (error.code, error.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "CUSTOMER_HAS_NO_SITE",
    )


async def test_organizations_never_see_each_other(
    connections: Stub, org: Org, make_org: OrgFactory, store: Store
) -> None:
    mine = await create(connections, org, {"redirectUrl": REDIRECT, "customerInfo": JANE})
    other = await make_org("Other Org")
    before = await count_rows(store)
    for field, value, reason in (
        ("customerId", mine.customer_id, "CUSTOMER_NOT_FOUND"),
        ("siteId", mine.site_id, "SITE_NOT_FOUND"),
    ):
        error = await rejected(connections, other, {"redirectUrl": REDIRECT, field: value})
        assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, reason)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await connections.GetConnection(
            pb.GetConnectionRequest(link_session_id=mine.link_session_id), metadata=other.secret
        )
    assert rich_error(caught.value).reason == "CONNECT_SESSION_NOT_FOUND"
    # The same email in another organization is another customer.
    theirs = await create(connections, other, {"redirectUrl": REDIRECT, "customerInfo": JANE})
    assert theirs.customer_id != mine.customer_id
    assert (await count_rows(store))["customers"] == before["customers"] + 1


# Idempotency (AIP-155) ---------------------------------------------------------------------


async def test_request_id_replays_the_first_response(
    connections: Stub, org: Org, store: Store, clock: ManualClock
) -> None:
    body = {"redirectUrl": REDIRECT, "customerInfo": JANE, "requestId": "req-1"}
    first = await create(connections, org, body)
    again = await create(connections, org, body)
    assert again == first
    assert (await count_rows(store))["connect_sessions"] == 1
    error = await rejected(connections, org, {**body, "tags": ["different"]})
    assert (error.code, error.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "IDEMPOTENCY_KEY_REUSED",
    )
    assert "requestId" in error.fields
    clock.advance(hours=24, seconds=1)
    later = await create(connections, org, body)
    assert later.link_session_id != first.link_session_id


async def test_idempotent_response_is_sealed_at_rest(
    connections: Stub, org: Org, store: Store
) -> None:
    body = {"redirectUrl": REDIRECT, "customerInfo": JANE, "requestId": "req-sealed"}
    response = await create(connections, org, body)
    raw, token_hash = await store.read(
        lambda tx: (
            tx._c.execute(sa.select(tables.idempotency_keys.c.response_sealed)).scalar_one(),
            tx._c.execute(sa.select(tables.connect_sessions.c.link_token_hash)).scalar_one(),
        )
    )
    assert response.link_token.encode() not in raw
    assert token_hash == hashlib.sha256(response.link_token.encode()).hexdigest()


# Sessions ----------------------------------------------------------------------------------


async def test_session_expires_after_the_ttl(
    connections: Stub, org: Org, clock: ManualClock
) -> None:
    created = await create(connections, org, {"redirectUrl": REDIRECT})
    clock.advance(seconds=1799)
    get = pb.GetConnectionRequest(link_session_id=created.link_session_id)
    status = (await connections.GetConnection(get, metadata=org.secret)).session.status
    assert status == pb.CONNECT_SESSION_STATUS_PENDING
    clock.advance(seconds=1)
    status = (await connections.GetConnection(get, metadata=org.secret)).session.status
    assert status == pb.CONNECT_SESSION_STATUS_EXPIRED


async def test_get_connection_requires_an_id(connections: Stub, org: Org) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await connections.GetConnection(pb.GetConnectionRequest(), metadata=org.secret)
    error = rich_error(caught.value)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and "linkSessionId" in error.fields


async def test_pkce_verifier_is_sealed_and_state_stored_hashed(
    connections: Stub, org: Org, store: Store
) -> None:
    response = await create(
        connections,
        org,
        {
            "mode": "CONNECT_MODE_HEADLESS",
            "manufacturerFilters": {"manufacturers": ["tesla"]},
            "customerInfo": JANE,
            "redirectUrl": REDIRECT,
        },
    )
    state = parse_qs(urlsplit(response.authorization.url).query)["state"][0]
    row = await store.read(lambda tx: tx._c.execute(sa.select(tables.authorization_attempts)).one())
    assert state.split(".")[1] not in row.state_hash
    assert row.state_hash == hashlib.sha256(state.split(".")[1].encode()).hexdigest()
    assert row.id == state.split(".")[0]
    assert len(row.code_verifier_sealed) > 43


async def test_connect_keys_never_reach_existing_customers(
    connections: Stub, org: Org, store: Store
) -> None:
    """A connect key is public: it cannot open a flow on an existing customer (and so can
    never end up holding a scoped key for someone else's devices)."""
    mine = await create(connections, org, {"redirectUrl": REDIRECT, "customerInfo": JANE})
    for field, value in (("customerId", mine.customer_id), ("siteId", mine.site_id)):
        error = await rejected(
            connections, org, {"redirectUrl": REDIRECT, field: value}, key="connect"
        )
        assert (error.code, error.reason) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "CONNECT_KEY_NOT_ALLOWED",
        )
        assert error.metadata["field"] == field
    impostor = {**JANE, "phone": "555-555-0199"}
    public = await create(
        connections, org, {"redirectUrl": REDIRECT, "customerInfo": impostor}, key="connect"
    )
    assert public.customer_id != mine.customer_id
    customer = await store.read(lambda tx: tx.get_customer(org.id, mine.customer_id))
    assert customer is not None and customer.phone == ""  # untouched
