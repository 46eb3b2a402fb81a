"""The storage contract: what callers of ``Store`` / ``Transaction`` rely on.

Every test takes the ``store`` fixture, so each runs on SQLite and on PostgreSQL; a
behaviour that holds on one engine only is a bug.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import ManualClock

from texture_connect.domain import ids
from texture_connect.domain.addresses import Address, normalized_address_key
from texture_connect.domain.keys import KeyKind, display_hint, hash_key, new_key
from texture_connect.domain.records import (
    AuthorizationAttempt,
    ConnectedDevice,
    ConnectSession,
    Customer,
    Organization,
    Principal,
    SessionStatus,
    Site,
)
from texture_connect.storage import IdempotencyConflict, NewSession, Store, Transaction, schema

CLAIM_TIMEOUT = timedelta(minutes=2)
WINDOW = timedelta(hours=24)
METHOD = "texture.connect.v1.ConnectionService/CreateConnection"


# Helpers: each writes one thing in its own unit of work, the way a service would. -------


async def add_org(
    store: Store, clock: ManualClock, name: str = "Energy Coffee", headless: bool = False
) -> Organization:
    org = Organization(ids.new_id(), name, headless)
    await store.write(lambda tx: tx.insert_organization(org, clock()))
    return org


async def add_key(
    store: Store, clock: ManualClock, org_id: str, kind: KeyKind = KeyKind.SECRET
) -> tuple[str, str]:
    """(key id, key hash)."""
    key = new_key(kind)
    key_id = "key_" + ids.new_id()
    await store.write(
        lambda tx: tx.insert_api_key(
            key_id=key_id,
            org_id=org_id,
            kind=kind,
            key_hash=hash_key(key),
            hint=display_hint(key),
            now=clock(),
        )
    )
    return key_id, hash_key(key)


async def add_customer(store: Store, clock: ManualClock, org_id: str, **fields: str) -> Customer:
    values = dict(
        reference_id="ref-" + ids.new_id(),
        first_name="Ada",
        last_name="Lovelace",
        email=f"ada.{ids.new_id()}@example.com",
        phone="+15555550100",
    )
    values.update(fields)
    customer = Customer(id=ids.new_id(), organization_id=org_id, **values)
    await store.write(lambda tx: tx.insert_customer(customer, clock()))
    return customer


ADDRESS = Address(
    street_one="1600 Pennsylvania Avenue N.W.",
    street_two="Suite 2",
    city="Washington",
    state="DC",
    postal_code="20500",
    country="US",
)


async def add_site(
    store: Store,
    clock: ManualClock,
    customer: Customer,
    address: Address = ADDRESS,
    site_id: str | None = None,
) -> Site:
    site_id = site_id or ids.new_id()
    return await store.write(
        lambda tx: tx.insert_site(
            site_id=site_id,
            org_id=customer.organization_id,
            customer_id=customer.id,
            address=address,
            now=clock(),
        )
    )


def new_session(customer: Customer, created_at: datetime, **overrides: Any) -> NewSession:
    values: dict[str, Any] = dict(
        id=ids.new_id(),
        organization_id=customer.organization_id,
        link_token_hash=hash_key(ids.new_link_token()),
        mode="standard",
        customer_id=customer.id,
        site_id=None,
        reference_id=customer.reference_id,
        tags=("pilot", "north-region"),
        client_name="Energy Coffee",
        redirect_url="https://app.example.com/done",
        manufacturers=("sandbox", "tesla"),
        device_types=("battery", "charger"),
        customer_info={"firstName": "Ada"},
        customer_form_bypassed=False,
        created_at=created_at,
        expires_at=created_at + timedelta(minutes=30),
    )
    values.update(overrides)
    return NewSession(**values)


async def add_session(
    store: Store, clock: ManualClock, customer: Customer, **overrides: Any
) -> NewSession:
    session = new_session(customer, clock(), **overrides)
    await store.write(lambda tx: tx.insert_session(session))
    return session


async def get_session(store: Store, org_id: str | None, session_id: str) -> ConnectSession | None:
    return await store.read(lambda tx: tx.get_session(org_id, session_id))


async def claim(store: Store, session_id: str, now: datetime) -> bool:
    return await store.write(
        lambda tx: tx.claim_session_callback(session_id, now, now - CLAIM_TIMEOUT)
    )


async def save_connection(
    store: Store,
    clock: ManualClock,
    customer: Customer,
    manufacturer: str = "sandbox",
    access_token: str = "access",
) -> str:
    """Creates or refreshes the customer's connection; returns its id."""

    def seal(connection_id: str) -> tuple[bytes, bytes | None]:
        # Stands in for sealing: binds each token to the connection id it is stored under.
        return f"{access_token}@{connection_id}".encode(), f"refresh@{connection_id}".encode()

    return await store.write(
        lambda tx: tx.save_connection(
            new_id=ids.new_id(),
            org_id=customer.organization_id,
            customer_id=customer.id,
            manufacturer=manufacturer,
            seal_tokens=seal,
            token_expires_at=clock() + timedelta(hours=1),
            scope="read",
            now=clock(),
        )
    )


async def save_devices(
    store: Store,
    clock: ManualClock,
    customer: Customer,
    connection_id: str,
    devices: list[ConnectedDevice],
) -> list[str]:
    return await store.write(
        lambda tx: tx.save_devices(
            org_id=customer.organization_id,
            customer_id=customer.id,
            site_id=None,
            connection_id=connection_id,
            manufacturer="sandbox",
            reference_id=customer.reference_id,
            tags=("pilot",),
            devices=devices,
            new_ids=[ids.new_id() for _ in devices],
            now=clock(),
        )
    )


async def select_all(store: Store, statement: sa.Select[Any]) -> list[Any]:
    return await store.database.run(lambda c: list(c.execute(statement)), write=False)


# Organizations -------------------------------------------------------------------------


async def test_inserted_organization_is_found_by_id_and_by_name(
    store: Store, clock: ManualClock
) -> None:
    org = await add_org(store, clock, "Solar Bakery", headless=True)

    assert await store.read(lambda tx: tx.get_organization(org.id)) == org
    assert await store.read(lambda tx: tx.find_organization_by_name("Solar Bakery")) == org


async def test_unknown_organization_is_not_found(store: Store, clock: ManualClock) -> None:
    await add_org(store, clock, "Solar Bakery")

    assert await store.read(lambda tx: tx.get_organization(ids.new_id())) is None
    assert await store.read(lambda tx: tx.find_organization_by_name("Lunar Bakery")) is None


async def test_find_organization_by_name_returns_the_first_created(
    store: Store, clock: ManualClock
) -> None:
    first = await add_org(store, clock, "Twins")
    clock.advance(seconds=1)
    await add_org(store, clock, "Twins")

    assert await store.read(lambda tx: tx.find_organization_by_name("Twins")) == first


async def test_set_headless_changes_only_that_organization(
    store: Store, clock: ManualClock
) -> None:
    org = await add_org(store, clock, headless=False)
    other = await add_org(store, clock, "Other", headless=False)

    assert await store.write(lambda tx: tx.set_headless(org.id, True)) is True
    assert (await store.read(lambda tx: tx.get_organization(org.id))).headless_enabled is True
    assert (await store.read(lambda tx: tx.get_organization(other.id))).headless_enabled is False

    assert await store.write(lambda tx: tx.set_headless(org.id, False)) is True
    assert (await store.read(lambda tx: tx.get_organization(org.id))).headless_enabled is False


async def test_set_headless_on_unknown_organization_reports_false(store: Store) -> None:
    assert await store.write(lambda tx: tx.set_headless(ids.new_id(), True)) is False


# API keys --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [KeyKind.SECRET, KeyKind.CONNECT])
async def test_principal_for_key_hash_names_the_organization_and_key_kind(
    store: Store, clock: ManualClock, kind: KeyKind
) -> None:
    org = await add_org(store, clock, headless=True)
    key_id, key_hash = await add_key(store, clock, org.id, kind)

    principal = await store.read(lambda tx: tx.principal_for_key_hash(key_hash))

    assert principal == Principal(kind, key_id, org)


async def test_unknown_key_hash_has_no_principal(store: Store) -> None:
    unknown = hash_key(new_key(KeyKind.SECRET))
    assert await store.read(lambda tx: tx.principal_for_key_hash(unknown)) is None
    assert await store.read(lambda tx: tx.key_id_for_hash(unknown)) is None


async def test_key_id_for_hash_finds_the_key(store: Store, clock: ManualClock) -> None:
    org = await add_org(store, clock)
    key_id, key_hash = await add_key(store, clock, org.id)
    await add_key(store, clock, org.id)

    assert await store.read(lambda tx: tx.key_id_for_hash(key_hash)) == key_id


async def test_revoked_key_has_no_principal(store: Store, clock: ManualClock) -> None:
    org = await add_org(store, clock)
    key_id, key_hash = await add_key(store, clock, org.id)
    kept_id, kept_hash = await add_key(store, clock, org.id)

    assert await store.write(lambda tx: tx.revoke_api_key(key_id=key_id, now=clock())) is True

    assert await store.read(lambda tx: tx.principal_for_key_hash(key_hash)) is None
    kept = await store.read(lambda tx: tx.principal_for_key_hash(kept_hash))
    assert kept is not None and kept.key_id == kept_id


async def test_revoking_a_key_twice_reports_false_the_second_time(
    store: Store, clock: ManualClock
) -> None:
    org = await add_org(store, clock)
    key_id, _ = await add_key(store, clock, org.id)

    assert await store.write(lambda tx: tx.revoke_api_key(key_id=key_id, now=clock())) is True
    clock.advance(seconds=5)
    assert await store.write(lambda tx: tx.revoke_api_key(key_id=key_id, now=clock())) is False


async def test_revoking_an_unknown_key_reports_false(store: Store, clock: ManualClock) -> None:
    unknown = "key_" + ids.new_id()
    assert await store.write(lambda tx: tx.revoke_api_key(key_id=unknown, now=clock())) is False


async def test_two_keys_cannot_share_a_hash(store: Store, clock: ManualClock) -> None:
    org = await add_org(store, clock)
    _, key_hash = await add_key(store, clock, org.id)

    def duplicate(tx: Transaction) -> None:
        tx.insert_api_key(
            key_id="key_" + ids.new_id(),
            org_id=org.id,
            kind=KeyKind.CONNECT,
            key_hash=key_hash,
            hint="tx_ck_…abcd",
            now=clock(),
        )

    with pytest.raises(sa.exc.IntegrityError):
        await store.write(duplicate)


# Customers -------------------------------------------------------------------------------


async def test_inserted_customer_is_found_by_id(store: Store, clock: ManualClock) -> None:
    org = await add_org(store, clock)
    customer = await add_customer(store, clock, org.id)

    assert await store.read(lambda tx: tx.get_customer(org.id, customer.id)) == customer
    assert await store.read(lambda tx: tx.get_customer(org.id, ids.new_id())) is None


async def test_find_customer_by_email_ignores_case(store: Store, clock: ManualClock) -> None:
    org = await add_org(store, clock)
    customer = await add_customer(store, clock, org.id, email="Ada.Lovelace@Example.COM")

    for spelling in (
        "Ada.Lovelace@Example.COM",
        "ada.lovelace@example.com",
        "ADA.LOVELACE@EXAMPLE.COM",
    ):
        found = await store.read(lambda tx, e=spelling: tx.find_customer_by_email(org.id, e))
        assert found == customer, spelling
    # The customer keeps the spelling it was given.
    assert found.email == "Ada.Lovelace@Example.COM"
    assert await store.read(lambda tx: tx.find_customer_by_email(org.id, "ada@example.com")) is None


async def test_find_customer_by_reference(store: Store, clock: ManualClock) -> None:
    org = await add_org(store, clock)
    customer = await add_customer(store, clock, org.id, reference_id="crm-42")
    await add_customer(store, clock, org.id, reference_id="crm-43")

    assert await store.read(lambda tx: tx.find_customer_by_reference(org.id, "crm-42")) == customer
    assert await store.read(lambda tx: tx.find_customer_by_reference(org.id, "CRM-42")) is None
    assert await store.read(lambda tx: tx.find_customer_by_reference(org.id, "crm-44")) is None


async def test_another_organizations_customer_is_never_found(
    store: Store, clock: ManualClock
) -> None:
    owner = await add_org(store, clock, "Owner")
    intruder = await add_org(store, clock, "Intruder")
    customer = await add_customer(
        store, clock, owner.id, email="shared@example.com", reference_id="shared-ref"
    )

    async def look_from(org_id: str) -> tuple[Customer | None, ...]:
        return await store.read(
            lambda tx: (
                tx.get_customer(org_id, customer.id),
                tx.find_customer_by_email(org_id, "shared@example.com"),
                tx.find_customer_by_reference(org_id, "shared-ref"),
            )
        )

    assert await look_from(intruder.id) == (None, None, None)
    assert await look_from(owner.id) == (customer, customer, customer)


async def test_each_organization_finds_its_own_customer_with_the_same_email(
    store: Store, clock: ManualClock
) -> None:
    first = await add_org(store, clock, "First")
    second = await add_org(store, clock, "Second")
    theirs = await add_customer(store, clock, first.id, email="same@example.com")
    ours = await add_customer(store, clock, second.id, email="same@example.com")

    assert await store.read(lambda tx: tx.find_customer_by_email(first.id, "same@example.com")) == (
        theirs
    )
    assert await store.read(
        lambda tx: tx.find_customer_by_email(second.id, "same@example.com")
    ) == (ours)


async def test_update_customer_contact_replaces_the_contact(
    store: Store, clock: ManualClock
) -> None:
    org = await add_org(store, clock)
    customer = await add_customer(store, clock, org.id, email="old@example.com")
    updated = Customer(
        id=customer.id,
        organization_id=org.id,
        reference_id=customer.reference_id,
        first_name="Augusta",
        last_name="King",
        email="New.Address@Example.com",
        phone="+15555550199",
    )

    clock.advance(minutes=1)
    await store.write(lambda tx: tx.update_customer_contact(updated, clock()))

    assert await store.read(lambda tx: tx.get_customer(org.id, customer.id)) == updated
    assert await store.read(lambda tx: tx.find_customer_by_email(org.id, "old@example.com")) is None
    assert (
        await store.read(lambda tx: tx.find_customer_by_email(org.id, "new.address@example.com"))
        == updated
    )


async def test_update_customer_contact_cannot_touch_another_organizations_customer(
    store: Store, clock: ManualClock
) -> None:
    owner = await add_org(store, clock, "Owner")
    intruder = await add_org(store, clock, "Intruder")
    customer = await add_customer(store, clock, owner.id)
    forged = Customer(customer.id, intruder.id, customer.reference_id, "Mallory", "", "", "")

    await store.write(lambda tx: tx.update_customer_contact(forged, clock()))

    assert await store.read(lambda tx: tx.get_customer(owner.id, customer.id)) == customer


# Sites -----------------------------------------------------------------------------------


async def test_inserted_site_round_trips_with_its_normalized_address_key(
    store: Store, clock: ManualClock
) -> None:
    org = await add_org(store, clock)
    customer = await add_customer(store, clock, org.id)

    site = await add_site(store, clock, customer)

    assert site.address == ADDRESS
    assert site.address_key == normalized_address_key(ADDRESS)
    assert await store.read(lambda tx: tx.get_site(org.id, site.id)) == site


async def test_another_organizations_site_is_not_found(store: Store, clock: ManualClock) -> None:
    owner = await add_org(store, clock, "Owner")
    intruder = await add_org(store, clock, "Intruder")
    site = await add_site(store, clock, await add_customer(store, clock, owner.id))

    assert await store.read(lambda tx: tx.get_site(intruder.id, site.id)) is None
    assert await store.read(lambda tx: tx.get_site(owner.id, ids.new_id())) is None


async def test_customer_sites_are_listed_first_created_first(
    store: Store, clock: ManualClock
) -> None:
    org = await add_org(store, clock)
    customer = await add_customer(store, clock, org.id)
    neighbour = await add_customer(store, clock, org.id)
    created = []
    # Ids in descending order, so ordering by id alone would list them backwards.
    for n, site_id in enumerate(["site-c", "site-b", "site-a"]):
        address = Address(f"{n + 1} Main Street", "Springfield", "IL", "62701", "US")
        created.append(await add_site(store, clock, customer, address, site_id=site_id))
        await add_site(store, clock, neighbour, address)
        clock.advance(seconds=1)

    listed = await store.read(lambda tx: tx.list_customer_sites(org.id, customer.id))

    assert [site.id for site in listed] == ["site-c", "site-b", "site-a"]
    assert listed == created


async def test_customer_sites_are_not_listed_for_another_organization(
    store: Store, clock: ManualClock
) -> None:
    owner = await add_org(store, clock, "Owner")
    intruder = await add_org(store, clock, "Intruder")
    customer = await add_customer(store, clock, owner.id)
    await add_site(store, clock, customer)

    assert await store.read(lambda tx: tx.list_customer_sites(intruder.id, customer.id)) == []
    assert len(await store.read(lambda tx: tx.list_customer_sites(owner.id, customer.id))) == 1


# Connect sessions --------------------------------------------------------------------------


async def test_session_round_trips(store: Store, clock: ManualClock) -> None:
    org = await add_org(store, clock)
    customer = await add_customer(store, clock, org.id)
    site = await add_site(store, clock, customer)
    written = await add_session(store, clock, customer, site_id=site.id, mode="headless")

    session = await get_session(store, org.id, written.id)

    assert session == ConnectSession(
        id=written.id,
        organization_id=org.id,
        mode="headless",
        status=SessionStatus.PENDING,
        customer_id=customer.id,
        site_id=site.id,
        reference_id=customer.reference_id,
        tags=("pilot", "north-region"),
        client_name="Energy Coffee",
        redirect_url="https://app.example.com/done",
        manufacturers=("sandbox", "tesla"),
        device_types=("battery", "charger"),
        customer_form_bypassed=False,
        created_at=written.created_at,
        expires_at=written.expires_at,
        ended_at=None,
        error="",
        customer_info=written.customer_info,
    )
    assert isinstance(session.tags, tuple)
    assert isinstance(session.manufacturers, tuple)
    assert isinstance(session.device_types, tuple)


async def test_session_without_site_or_tags_round_trips_empty(
    store: Store, clock: ManualClock
) -> None:
    org = await add_org(store, clock)
    customer = await add_customer(store, clock, org.id)
    written = await add_session(
        store, clock, customer, tags=(), device_types=(), customer_info=None
    )

    session = await get_session(store, org.id, written.id)

    assert session is not None
    assert session.site_id == ""
    assert session.tags == ()
    assert session.device_types == ()


async def test_session_times_round_trip_as_utc_to_the_microsecond(
    store: Store, clock: ManualClock
) -> None:
    # Both engines keep microseconds (PostgreSQL's timestamp does; SQLAlchemy's SQLite
    # DateTime stores them in its text format), so the round trip is exact. Written in
    # another zone, read back in UTC: the same instant.
    berlin = timezone(timedelta(hours=2))
    created_at = datetime(2026, 7, 1, 12, 30, 45, 123456, tzinfo=berlin)
    org = await add_org(store, clock)
    customer = await add_customer(store, clock, org.id)
    written = new_session(
        customer, created_at, expires_at=created_at + timedelta(minutes=30, microseconds=7)
    )
    await store.write(lambda tx: tx.insert_session(written))

    session = await get_session(store, org.id, written.id)

    assert session is not None
    assert session.created_at == created_at
    assert session.created_at.tzinfo == UTC
    assert session.created_at == datetime(2026, 7, 1, 10, 30, 45, 123456, tzinfo=UTC)
    assert session.expires_at == created_at + timedelta(minutes=30, microseconds=7)
    assert session.expires_at.tzinfo == UTC


async def test_another_organizations_session_is_not_found(store: Store, clock: ManualClock) -> None:
    owner = await add_org(store, clock, "Owner")
    intruder = await add_org(store, clock, "Intruder")
    written = await add_session(store, clock, await add_customer(store, clock, owner.id))

    assert await get_session(store, intruder.id, written.id) is None
    assert await get_session(store, owner.id, ids.new_id()) is None
    # Texture's internal callers look a session up without an organization.
    internal = await get_session(store, None, written.id)
    assert internal is not None and internal.organization_id == owner.id


async def test_pending_session_reads_as_expired_from_its_expiry(
    store: Store, clock: ManualClock
) -> None:
    org = await add_org(store, clock)
    written = await add_session(store, clock, await add_customer(store, clock, org.id))

    session = await get_session(store, org.id, written.id)

    assert session is not None
    assert session.status_at(clock()) is SessionStatus.PENDING
    assert session.status_at(written.expires_at - timedelta(seconds=1)) is SessionStatus.PENDING
    assert session.status_at(written.expires_at) is SessionStatus.EXPIRED
    assert session.status_at(written.expires_at + timedelta(days=1)) is SessionStatus.EXPIRED


async def test_end_session_records_status_time_and_error(store: Store, clock: ManualClock) -> None:
    org = await add_org(store, clock)
    written = await add_session(store, clock, await add_customer(store, clock, org.id))
    clock.advance(minutes=3)
    ended_at = clock()

    await store.write(
        lambda tx: tx.end_session(
            written.id, status=SessionStatus.FAILED, now=ended_at, error="access_denied"
        )
    )

    session = await get_session(store, org.id, written.id)
    assert session is not None
    assert session.status is SessionStatus.FAILED
    assert session.ended_at == ended_at
    assert session.error == "access_denied"
    # An ended session keeps its own status, even after its expiry.
    assert session.status_at(written.expires_at + timedelta(hours=1)) is SessionStatus.FAILED


# Authorization attempts ----------------------------------------------------------------------


async def add_attempt(store: Store, clock: ManualClock, session_id: str) -> str:
    attempt_id = ids.new_id()
    await store.write(
        lambda tx: tx.insert_authorization_attempt(
            attempt_id=attempt_id,
            session_id=session_id,
            manufacturer="sandbox",
            state_hash=hash_key("state-" + attempt_id),
            code_verifier_sealed=b"\x00sealed\xffverifier",
            now=clock(),
        )
    )
    return attempt_id


async def test_authorization_attempt_round_trips(store: Store, clock: ManualClock) -> None:
    org = await add_org(store, clock)
    session = await add_session(store, clock, await add_customer(store, clock, org.id))
    attempt_id = await add_attempt(store, clock, session.id)

    attempt = await store.read(lambda tx: tx.get_authorization_attempt(attempt_id))

    assert attempt == AuthorizationAttempt(
        id=attempt_id,
        session_id=session.id,
        manufacturer="sandbox",
        state_hash=hash_key("state-" + attempt_id),
        code_verifier_sealed=b"\x00sealed\xffverifier",
        used_at=None,
    )
    assert await store.read(lambda tx: tx.get_authorization_attempt(ids.new_id())) is None


async def test_authorization_attempt_can_be_used_only_once(
    store: Store, clock: ManualClock
) -> None:
    org = await add_org(store, clock)
    session = await add_session(store, clock, await add_customer(store, clock, org.id))
    attempt_id = await add_attempt(store, clock, session.id)
    used_at = clock()

    assert await store.write(lambda tx: tx.use_authorization_attempt(attempt_id, used_at)) is True
    clock.advance(seconds=1)
    assert await store.write(lambda tx: tx.use_authorization_attempt(attempt_id, clock())) is False

    attempt = await store.read(lambda tx: tx.get_authorization_attempt(attempt_id))
    assert attempt is not None and attempt.used_at == used_at


async def test_using_an_unknown_authorization_attempt_reports_false(
    store: Store, clock: ManualClock
) -> None:
    unknown = ids.new_id()
    assert await store.write(lambda tx: tx.use_authorization_attempt(unknown, clock())) is False


# The callback claim --------------------------------------------------------------------------


async def pending_session(store: Store, clock: ManualClock) -> NewSession:
    org = await add_org(store, clock)
    return await add_session(store, clock, await add_customer(store, clock, org.id))


async def test_callback_claim_is_granted_once(store: Store, clock: ManualClock) -> None:
    session = await pending_session(store, clock)

    assert await claim(store, session.id, clock()) is True
    clock.advance(seconds=1)
    assert await claim(store, session.id, clock()) is False


async def test_released_claim_can_be_claimed_again(store: Store, clock: ManualClock) -> None:
    session = await pending_session(store, clock)
    assert await claim(store, session.id, clock()) is True

    await store.write(lambda tx: tx.release_session_callback(session.id))

    assert await claim(store, session.id, clock()) is True
    assert await claim(store, session.id, clock()) is False


async def test_stale_claim_can_be_taken_over(store: Store, clock: ManualClock) -> None:
    session = await pending_session(store, clock)
    assert await claim(store, session.id, clock()) is True

    clock.advance(seconds=CLAIM_TIMEOUT.total_seconds() - 1)
    assert await claim(store, session.id, clock()) is False  # still fresh

    clock.advance(seconds=2)
    assert await claim(store, session.id, clock()) is True  # older than stale_before
    assert await claim(store, session.id, clock()) is False  # the new claim is fresh


async def test_expired_session_cannot_be_claimed(store: Store, clock: ManualClock) -> None:
    session = await pending_session(store, clock)

    assert await claim(store, session.id, session.expires_at) is False
    assert await claim(store, session.id, session.expires_at + timedelta(seconds=1)) is False
    # One microsecond before its expiry it still can.
    assert await claim(store, session.id, session.expires_at - timedelta(microseconds=1)) is True


@pytest.mark.parametrize("status", [SessionStatus.COMPLETED, SessionStatus.FAILED])
async def test_ended_session_cannot_be_claimed(
    store: Store, clock: ManualClock, status: SessionStatus
) -> None:
    session = await pending_session(store, clock)
    await store.write(lambda tx: tx.end_session(session.id, status=status, now=clock()))

    assert await claim(store, session.id, clock()) is False


async def test_unknown_session_cannot_be_claimed(store: Store, clock: ManualClock) -> None:
    assert await claim(store, ids.new_id(), clock()) is False


async def test_concurrent_claims_grant_exactly_one(store: Store, clock: ManualClock) -> None:
    session = await pending_session(store, clock)
    now = clock()

    results = await asyncio.gather(*(claim(store, session.id, now) for _ in range(10)))

    assert sorted(results) == [False] * 9 + [True]


async def test_completed_session_stays_unclaimable_after_its_claim_is_cleared(
    store: Store, clock: ManualClock
) -> None:
    # end_session clears the claim marker, but a completed session stays unclaimable.
    session = await pending_session(store, clock)
    assert await claim(store, session.id, clock()) is True
    await store.write(
        lambda tx: tx.end_session(
            session.id, status=SessionStatus.COMPLETED, now=clock(), connection_id=ids.new_id()
        )
    )

    assert await claim(store, session.id, clock()) is False
    ended = await get_session(store, None, session.id)
    assert ended is not None and ended.status is SessionStatus.COMPLETED


# Manufacturer connections and devices -----------------------------------------------------------


async def connection_rows(store: Store, customer: Customer) -> list[Any]:
    m = schema.manufacturer_connections
    return await select_all(store, sa.select(m).where(m.c.customer_id == customer.id))


async def test_save_connection_inserts_then_updates_the_same_row(
    store: Store, clock: ManualClock
) -> None:
    org = await add_org(store, clock)
    customer = await add_customer(store, clock, org.id)
    assert (
        await store.read(lambda tx: tx.find_connection_id(org.id, customer.id, "sandbox")) is None
    )

    first = await save_connection(store, clock, customer, access_token="first")
    clock.advance(minutes=5)
    second = await save_connection(store, clock, customer, access_token="second")

    assert second == first
    found = await store.read(lambda tx: tx.find_connection_id(org.id, customer.id, "sandbox"))
    assert found == first
    (row,) = await connection_rows(store, customer)
    assert row.id == first
    # The refreshed tokens are sealed for the row's existing id, not the unused new one.
    assert row.access_token_sealed == f"second@{first}".encode()
    assert row.refresh_token_sealed == f"refresh@{first}".encode()
    assert row.status == "active"
    assert row.updated_at > row.created_at


async def test_each_manufacturer_gets_its_own_connection(store: Store, clock: ManualClock) -> None:
    org = await add_org(store, clock)
    customer = await add_customer(store, clock, org.id)

    sandbox = await save_connection(store, clock, customer, "sandbox")
    tesla = await save_connection(store, clock, customer, "tesla")

    assert sandbox != tesla
    assert await store.read(lambda tx: tx.find_connection_id(org.id, customer.id, "tesla")) == tesla
    assert len(await connection_rows(store, customer)) == 2


async def test_database_refuses_a_second_connection_for_one_customer_and_manufacturer(
    store: Store, clock: ManualClock
) -> None:
    org = await add_org(store, clock)
    customer = await add_customer(store, clock, org.id)
    await save_connection(store, clock, customer)
    duplicate = schema.manufacturer_connections.insert().values(
        id=ids.new_id(),
        organization_id=org.id,
        customer_id=customer.id,
        manufacturer="sandbox",
        status="active",
        scope="",
        created_at=clock().replace(tzinfo=None),
        updated_at=clock().replace(tzinfo=None),
    )

    with pytest.raises(sa.exc.IntegrityError):
        await store.database.run(lambda c: c.execute(duplicate), write=True)


async def test_concurrent_saves_of_one_connection_meet_on_one_row(
    store: Store, clock: ManualClock
) -> None:
    org = await add_org(store, clock)
    customer = await add_customer(store, clock, org.id)

    results = await asyncio.gather(*(save_connection(store, clock, customer) for _ in range(5)))

    assert len(set(results)) == 1
    (row,) = await connection_rows(store, customer)
    assert row.id == results[0]
    assert row.access_token_sealed == f"access@{row.id}".encode()


async def test_another_organizations_connection_is_not_found(
    store: Store, clock: ManualClock
) -> None:
    owner = await add_org(store, clock, "Owner")
    intruder = await add_org(store, clock, "Intruder")
    customer = await add_customer(store, clock, owner.id)
    await save_connection(store, clock, customer)

    assert (
        await store.read(lambda tx: tx.find_connection_id(intruder.id, customer.id, "sandbox"))
        is None
    )


DEVICES = [
    ConnectedDevice("ext-battery-1", "battery", "Powerwall 3", "SN-1", "Garage battery"),
    ConnectedDevice("ext-charger-1", "charger", "Wall Connector", "SN-2", "Driveway charger"),
]


async def test_saving_the_same_devices_again_keeps_their_ids_and_adds_no_duplicates(
    store: Store, clock: ManualClock
) -> None:
    org = await add_org(store, clock)
    customer = await add_customer(store, clock, org.id)
    connection_id = await save_connection(store, clock, customer)

    first_ids = await save_devices(store, clock, customer, connection_id, DEVICES)
    renamed = [
        DEVICES[0],
        ConnectedDevice("ext-charger-1", "charger", "Wall Connector", "SN-2", "Renamed charger"),
    ]
    clock.advance(minutes=1)
    second_ids = await save_devices(store, clock, customer, connection_id, renamed)

    assert len(set(first_ids)) == 2
    assert second_ids == first_ids
    d = schema.devices
    rows = await select_all(store, sa.select(d).where(d.c.connection_id == connection_id))
    assert sorted(row.id for row in rows) == sorted(first_ids)
    assert {row.external_id: row.name for row in rows}["ext-charger-1"] == "Renamed charger"
    assert await store.read(lambda tx: tx.count_connected_devices(org.id, customer.id)) == 2


async def test_new_device_on_a_known_connection_is_added(store: Store, clock: ManualClock) -> None:
    org = await add_org(store, clock)
    customer = await add_customer(store, clock, org.id)
    connection_id = await save_connection(store, clock, customer)
    first_ids = await save_devices(store, clock, customer, connection_id, DEVICES[:1])

    ids_now = await save_devices(store, clock, customer, connection_id, DEVICES)

    assert ids_now[0] == first_ids[0]
    assert ids_now[1] not in first_ids
    assert await store.read(lambda tx: tx.count_connected_devices(org.id, customer.id)) == 2


async def test_a_device_reported_twice_in_one_save_is_stored_once(
    store: Store, clock: ManualClock
) -> None:
    org = await add_org(store, clock)
    customer = await add_customer(store, clock, org.id)
    connection_id = await save_connection(store, clock, customer)

    saved = await save_devices(store, clock, customer, connection_id, [DEVICES[0], DEVICES[0]])

    assert saved[0] == saved[1]
    assert await store.read(lambda tx: tx.count_connected_devices(org.id, customer.id)) == 1


async def test_concurrent_saves_of_the_same_devices_add_no_duplicates(
    store: Store, clock: ManualClock
) -> None:
    org = await add_org(store, clock)
    customer = await add_customer(store, clock, org.id)
    connection_id = await save_connection(store, clock, customer)

    results = await asyncio.gather(
        *(save_devices(store, clock, customer, connection_id, DEVICES) for _ in range(5))
    )

    assert all(result == results[0] for result in results)
    assert await store.read(lambda tx: tx.count_connected_devices(org.id, customer.id)) == 2


async def test_count_connected_devices_counts_only_that_customers_devices(
    store: Store, clock: ManualClock
) -> None:
    org = await add_org(store, clock)
    other_org = await add_org(store, clock, "Other")
    customer = await add_customer(store, clock, org.id)
    neighbour = await add_customer(store, clock, org.id)
    assert await store.read(lambda tx: tx.count_connected_devices(org.id, customer.id)) == 0

    await save_devices(
        store, clock, customer, await save_connection(store, clock, customer, "sandbox"), DEVICES
    )
    await save_devices(
        store,
        clock,
        customer,
        await save_connection(store, clock, customer, "tesla"),
        DEVICES[:1],
    )
    await save_devices(
        store, clock, neighbour, await save_connection(store, clock, neighbour), DEVICES[:1]
    )

    assert await store.read(lambda tx: tx.count_connected_devices(org.id, customer.id)) == 3
    assert await store.read(lambda tx: tx.count_connected_devices(org.id, neighbour.id)) == 1
    assert await store.read(lambda tx: tx.count_connected_devices(other_org.id, customer.id)) == 0


async def test_scoped_key_resolves_to_a_scoped_principal(store: Store, clock: ManualClock) -> None:
    org = await add_org(store, clock)
    customer = await add_customer(store, clock, org.id)
    connection_id = await save_connection(store, clock, customer)
    key = new_key(KeyKind.SCOPED)
    key_id = "key_" + ids.new_id()

    await store.write(
        lambda tx: tx.insert_scoped_key(
            key_id=key_id,
            org_id=org.id,
            key_hash=hash_key(key),
            hint=display_hint(key),
            customer_id=customer.id,
            connection_id=connection_id,
            now=clock(),
        )
    )

    principal = await store.read(lambda tx: tx.principal_for_key_hash(hash_key(key)))
    assert principal == Principal(KeyKind.SCOPED, key_id, org, customer.id, connection_id)
    k = schema.api_keys
    (row,) = await select_all(store, sa.select(k).where(k.c.id == key_id))
    assert (row.customer_id, row.connection_id) == (customer.id, connection_id)


# Idempotency ------------------------------------------------------------------------------------


def put(
    org_id: str,
    request_id: str,
    fingerprint: str,
    now: datetime,
    response: bytes = b"sealed-response",
) -> Any:
    return lambda tx: tx.put_idempotent_response(
        org_id=org_id,
        method=METHOD,
        request_id=request_id,
        fingerprint=fingerprint,
        response_sealed=response,
        now=now,
        expired_before=now - WINDOW,
    )


def get(org_id: str, request_id: str, now: datetime, method: str = METHOD) -> Any:
    return lambda tx: tx.get_idempotent_response(
        org_id=org_id, method=method, request_id=request_id, since=now - WINDOW
    )


async def test_idempotent_response_is_replayed_within_the_window(
    store: Store, clock: ManualClock
) -> None:
    org = await add_org(store, clock)
    stored_at = clock()
    await store.write(put(org.id, "req-1", "fp-1", stored_at, b"\x01response"))

    clock.advance(hours=23, minutes=59)
    stored = await store.read(get(org.id, "req-1", clock()))

    assert stored is not None
    assert (stored.fingerprint, stored.response_sealed) == ("fp-1", b"\x01response")
    assert stored.created_at == stored_at
    assert stored.created_at.tzinfo == UTC


async def test_idempotent_response_is_not_replayed_after_the_window(
    store: Store, clock: ManualClock
) -> None:
    org = await add_org(store, clock)
    await store.write(put(org.id, "req-1", "fp-1", clock()))

    clock.advance(hours=24, seconds=1)

    assert await store.read(get(org.id, "req-1", clock())) is None


async def test_idempotent_response_is_kept_per_organization_and_method(
    store: Store, clock: ManualClock
) -> None:
    org = await add_org(store, clock)
    other = await add_org(store, clock, "Other")
    await store.write(put(org.id, "req-1", "fp-org", clock()))

    assert await store.read(get(other.id, "req-1", clock())) is None
    assert await store.read(get(org.id, "req-1", clock(), method="Other/Method")) is None
    await store.write(put(other.id, "req-1", "fp-other", clock()))  # no conflict
    assert (await store.read(get(org.id, "req-1", clock()))).fingerprint == "fp-org"
    assert (await store.read(get(other.id, "req-1", clock()))).fingerprint == "fp-other"


async def test_second_put_of_a_live_request_id_conflicts_and_keeps_the_first(
    store: Store, clock: ManualClock
) -> None:
    org = await add_org(store, clock)
    await store.write(put(org.id, "req-1", "fp-first", clock()))
    clock.advance(hours=1)

    with pytest.raises(IdempotencyConflict):
        await store.write(put(org.id, "req-1", "fp-second", clock()))

    stored = await store.read(get(org.id, "req-1", clock()))
    assert stored is not None and stored.fingerprint == "fp-first"


async def test_stale_idempotent_response_is_replaced(store: Store, clock: ManualClock) -> None:
    org = await add_org(store, clock)
    await store.write(put(org.id, "req-1", "fp-old", clock()))
    clock.advance(hours=24, seconds=1)

    await store.write(put(org.id, "req-1", "fp-new", clock(), b"new"))

    stored = await store.read(get(org.id, "req-1", clock()))
    assert stored is not None
    assert (stored.fingerprint, stored.response_sealed, stored.created_at) == (
        "fp-new",
        b"new",
        clock(),
    )


async def test_at_the_window_edge_a_response_is_still_live_for_replay_and_conflict(
    store: Store, clock: ManualClock
) -> None:
    org = await add_org(store, clock)
    await store.write(put(org.id, "req-1", "fp-first", clock()))
    clock.advance(hours=24)

    stored = await store.read(get(org.id, "req-1", clock()))
    assert stored is not None and stored.fingerprint == "fp-first"
    with pytest.raises(IdempotencyConflict):
        await store.write(put(org.id, "req-1", "fp-second", clock()))


async def test_concurrent_puts_of_one_request_id_store_exactly_one(
    store: Store, clock: ManualClock
) -> None:
    org = await add_org(store, clock)

    async def attempt(n: int) -> str:
        try:
            await store.write(put(org.id, "req-1", f"fp-{n}", clock()))
        except IdempotencyConflict:
            return "conflict"
        return f"fp-{n}"

    results = await asyncio.gather(*(attempt(n) for n in range(5)))

    winners = [result for result in results if result != "conflict"]
    assert len(winners) == 1
    stored = await store.read(get(org.id, "req-1", clock()))
    assert stored is not None and stored.fingerprint == winners[0]


async def test_idempotency_conflict_rolls_back_the_whole_unit_of_work(
    store: Store, clock: ManualClock
) -> None:
    org = await add_org(store, clock)
    await store.write(put(org.id, "req-1", "fp-first", clock()))
    customer = Customer(ids.new_id(), org.id, "ref-conflict", email="conflict@example.com")

    def create(tx: Transaction) -> None:
        tx.insert_customer(customer, clock())
        put(org.id, "req-1", "fp-second", clock())(tx)

    with pytest.raises(IdempotencyConflict):
        await store.write(create)

    assert await store.read(lambda tx: tx.get_customer(org.id, customer.id)) is None


# Units of work ------------------------------------------------------------------------------------


class Boom(Exception):
    pass


async def test_unit_of_work_that_raises_leaves_nothing_behind(
    store: Store, clock: ManualClock
) -> None:
    org = await add_org(store, clock)
    customer = Customer(ids.new_id(), org.id, "ref-boom", email="boom@example.com")

    def insert_then_fail(tx: Transaction) -> None:
        tx.insert_customer(customer, clock())
        assert tx.get_customer(org.id, customer.id) == customer  # visible inside the unit
        raise Boom

    with pytest.raises(Boom):
        await store.write(insert_then_fail)

    assert await store.read(lambda tx: tx.get_customer(org.id, customer.id)) is None
    assert (
        await store.read(lambda tx: tx.find_customer_by_email(org.id, "boom@example.com")) is None
    )
    # The store stays usable after the rollback.
    await store.write(lambda tx: tx.insert_customer(customer, clock()))
    assert await store.read(lambda tx: tx.get_customer(org.id, customer.id)) == customer


async def test_unit_of_work_returns_the_work_result(store: Store, clock: ManualClock) -> None:
    org = await add_org(store, clock)

    result = await store.write(lambda tx: (tx.set_headless(org.id, True), "done"))

    assert result == (True, "done")


async def test_read_sees_committed_writes(store: Store, clock: ManualClock) -> None:
    org = await add_org(store, clock)
    customers = [await add_customer(store, clock, org.id) for _ in range(3)]

    found = await store.read(lambda tx: [tx.get_customer(org.id, c.id) for c in customers])

    assert found == customers


async def test_concurrent_writes_all_commit(store: Store, clock: ManualClock) -> None:
    org = await add_org(store, clock)

    customers = await asyncio.gather(*(add_customer(store, clock, org.id) for _ in range(10)))

    found = await store.read(lambda tx: [tx.get_customer(org.id, c.id) for c in customers])
    assert found == list(customers)
