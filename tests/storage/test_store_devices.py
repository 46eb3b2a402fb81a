"""Storage for what a connection opens: devices and their tags, customers and sites as
lists, manufacturer connections, the token-refresh claim, disconnect and scoped keys; and
migration 0003, which moved device tags into their own table.

Every test takes the ``store`` fixture (or ``database_url``), so each runs on SQLite and
on PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from conftest import ManualClock

from texture_connect.domain import ids
from texture_connect.domain.addresses import Address
from texture_connect.domain.keys import KeyKind, display_hint, hash_key, new_key
from texture_connect.domain.records import (
    ConnectedDevice,
    ConnectionStatus,
    Customer,
    Device,
    DeviceFilter,
    ManufacturerConnection,
    Organization,
    Principal,
    Site,
    StoredTokens,
)
from texture_connect.storage import Store, Transaction, open_store, schema

T = TypeVar("T")
CLAIM_TIMEOUT = timedelta(minutes=2)


# Helpers ------------------------------------------------------------------------------


async def add_org(store: Store, clock: ManualClock, name: str = "Energy Coffee") -> Organization:
    org = Organization(ids.new_id(), name, True)
    await store.write(lambda tx: tx.insert_organization(org, clock()))
    return org


async def add_customer(
    store: Store, clock: ManualClock, org_id: str, *, reference_id: str = "", email: str = ""
) -> Customer:
    customer = Customer(
        id=ids.new_id(),
        organization_id=org_id,
        reference_id=reference_id or "ref-" + ids.new_id(),
        first_name="Ada",
        last_name="Lovelace",
        email=email or f"ada.{ids.new_id()}@example.com",
        phone="+15555550100",
    )
    await store.write(lambda tx: tx.insert_customer(customer, clock()))
    return customer


async def add_site(
    store: Store, clock: ManualClock, customer: Customer, city: str = "Austin"
) -> Site:
    address = Address("1 Main St", city, "TX", "78701", "US")
    site_id = ids.new_id()
    return await store.write(
        lambda tx: tx.insert_site(
            site_id=site_id,
            org_id=customer.organization_id,
            customer_id=customer.id,
            address=address,
            now=clock(),
        )
    )


def sealed(token: str, connection_id: str) -> bytes:
    """Stands in for sealing: binds a token to the connection it is stored under."""
    return f"{token}@{connection_id}".encode()


async def connect(
    store: Store,
    clock: ManualClock,
    customer: Customer,
    manufacturer: str = "sandbox",
    access_token: str = "access",
) -> str:
    """save_connection, the way a completed authorization stores the grant."""
    return await store.write(
        lambda tx: tx.save_connection(
            new_id=ids.new_id(),
            org_id=customer.organization_id,
            customer_id=customer.id,
            manufacturer=manufacturer,
            seal_tokens=lambda cid: (sealed(access_token, cid), sealed("refresh", cid)),
            token_expires_at=clock() + timedelta(hours=1),
            scope="read",
            now=clock(),
        )
    )


def device_info(external_id: str, device_type: str = "battery") -> ConnectedDevice:
    return ConnectedDevice(external_id, device_type, "Model", "SN-" + external_id, external_id)


async def add_devices(
    store: Store,
    clock: ManualClock,
    customer: Customer,
    connection_id: str,
    devices: list[ConnectedDevice],
    *,
    tags: tuple[str, ...] = (),
    site_id: str | None = None,
    reference_id: str = "",
    manufacturer: str = "sandbox",
    new_ids: list[str] | None = None,
) -> list[str]:
    return await store.write(
        lambda tx: tx.save_devices(
            org_id=customer.organization_id,
            customer_id=customer.id,
            site_id=site_id,
            connection_id=connection_id,
            manufacturer=manufacturer,
            reference_id=reference_id or customer.reference_id,
            tags=tags,
            devices=devices,
            new_ids=new_ids or [ids.new_id() for _ in devices],
            now=clock(),
        )
    )


async def add_scoped_key(
    store: Store, clock: ManualClock, customer: Customer, connection_id: str
) -> tuple[str, str]:
    """(key id, key hash)."""
    key = new_key(KeyKind.SCOPED)
    key_id = "key_" + ids.new_id()
    await store.write(
        lambda tx: tx.insert_scoped_key(
            key_id=key_id,
            org_id=customer.organization_id,
            key_hash=hash_key(key),
            hint=display_hint(key),
            customer_id=customer.id,
            connection_id=connection_id,
            now=clock(),
        )
    )
    return key_id, hash_key(key)


async def add_secret_key(store: Store, clock: ManualClock, org_id: str) -> tuple[str, str]:
    key = new_key(KeyKind.SECRET)
    key_id = "key_" + ids.new_id()
    await store.write(
        lambda tx: tx.insert_api_key(
            key_id=key_id,
            org_id=org_id,
            kind=KeyKind.SECRET,
            key_hash=hash_key(key),
            hint=display_hint(key),
            now=clock(),
        )
    )
    return key_id, hash_key(key)


async def read(store: Store, work: Callable[[Transaction], T]) -> T:
    return await store.read(work)


async def get_device(store: Store, org_id: str, device_id: str) -> Device | None:
    return await store.read(lambda tx: tx.get_device(org_id, device_id))


async def tokens(store: Store, connection_id: str) -> StoredTokens:
    stored = await store.read(lambda tx: tx.get_connection_tokens(connection_id))
    assert stored is not None
    return stored


async def claim(store: Store, connection_id: str, generation: int, now: datetime) -> bool:
    return await store.write(
        lambda tx: tx.claim_token_refresh(connection_id, generation, now, now - CLAIM_TIMEOUT)
    )


async def principal(store: Store, key_hash: str) -> Principal | None:
    return await store.read(lambda tx: tx.principal_for_key_hash(key_hash))


async def select_all(store: Store, statement: sa.Select[Any]) -> list[Any]:
    return await store.database.run(lambda c: list(c.execute(statement)), write=False)


def newest_first(items: list[Any]) -> list[Any]:
    return sorted(items, key=lambda item: (item.created_at, item.id), reverse=True)


def oldest_first(items: list[Any]) -> list[Any]:
    return sorted(items, key=lambda item: (item.created_at, item.id))


async def all_pages(fetch: Callable[[tuple[datetime, str] | None], Any]) -> list[list[Any]]:
    """Pages until one comes back short, each asked for after the previous page's last."""
    pages: list[list[Any]] = []
    after: tuple[datetime, str] | None = None
    while True:
        page = await fetch(after)
        pages.append(page)
        if not page:
            return pages
        after = (page[-1].created_at, page[-1].id)


@dataclass
class Fleet:
    """One organization with devices spread over customers, sites, manufacturers, types,
    reference ids and tags, several of them created at the same instant."""

    org: Organization
    ada: Customer
    bob: Customer
    site: Site
    devices: list[Device]


async def fleet(store: Store, clock: ManualClock) -> Fleet:
    org = await add_org(store, clock)
    ada = await add_customer(store, clock, org.id, reference_id="crm-ada")
    bob = await add_customer(store, clock, org.id, reference_id="crm-bob")
    site = await add_site(store, clock, ada)
    ada_sandbox = await connect(store, clock, ada)
    ada_tesla = await connect(store, clock, ada, "tesla")
    bob_sandbox = await connect(store, clock, bob)
    # Three devices at one instant: only their ids order them.
    await add_devices(
        store,
        clock,
        ada,
        ada_sandbox,
        [device_info("a1"), device_info("a2", "charger"), device_info("a3", "thermostat")],
        tags=("pilot", "north"),
        site_id=site.id,
    )
    clock.advance(seconds=1)
    await add_devices(
        store,
        clock,
        ada,
        ada_tesla,
        [device_info("t1", "vehicle"), device_info("t2", "charger")],
        tags=("pilot",),
        manufacturer="tesla",
        reference_id="crm-ada-tesla",
    )
    clock.advance(seconds=1)
    await add_devices(
        store,
        clock,
        bob,
        bob_sandbox,
        [device_info("b1"), device_info("b2", "inverter")],
        tags=("south",),
    )
    everything = await store.read(
        lambda tx: tx.list_devices(org.id, DeviceFilter(), limit=100, after=None)
    )
    return Fleet(org, ada, bob, site, everything)


def list_all(tx: Transaction, *, org_id: str, wanted: DeviceFilter) -> list[Device]:
    return tx.list_devices(org_id, wanted, limit=100, after=None)


def externals(devices: list[Device]) -> set[str]:
    return {device.external_id for device in devices}


# Devices: get and list ----------------------------------------------------------------


async def test_get_device_returns_the_device_with_sorted_tags(
    store: Store, clock: ManualClock
) -> None:
    org = await add_org(store, clock)
    customer = await add_customer(store, clock, org.id)
    site = await add_site(store, clock, customer)
    connection_id = await connect(store, clock, customer)
    (device_id,) = await add_devices(
        store,
        clock,
        customer,
        connection_id,
        [ConnectedDevice("ext-1", "battery", "Powerwall 3", "SN-1", "Garage battery")],
        tags=("zeta", "alpha", "Mid"),
        site_id=site.id,
        reference_id="crm-9",
    )

    assert await get_device(store, org.id, device_id) == Device(
        id=device_id,
        organization_id=org.id,
        customer_id=customer.id,
        site_id=site.id,
        connection_id=connection_id,
        manufacturer="sandbox",
        external_id="ext-1",
        type="battery",
        model="Powerwall 3",
        serial_number="SN-1",
        name="Garage battery",
        reference_id="crm-9",
        tags=("Mid", "alpha", "zeta"),
        status="connected",
        created_at=clock(),
        updated_at=clock(),
    )


async def test_device_without_site_or_tags_reads_back_empty(
    store: Store, clock: ManualClock
) -> None:
    org = await add_org(store, clock)
    customer = await add_customer(store, clock, org.id)
    (device_id,) = await add_devices(
        store, clock, customer, await connect(store, clock, customer), [device_info("x")]
    )

    device = await get_device(store, org.id, device_id)
    assert device is not None and (device.site_id, device.tags) == ("", ())


async def test_another_organizations_device_is_not_found(store: Store, clock: ManualClock) -> None:
    owner = await add_org(store, clock, "Owner")
    intruder = await add_org(store, clock, "Intruder")
    customer = await add_customer(store, clock, owner.id)
    (device_id,) = await add_devices(
        store, clock, customer, await connect(store, clock, customer), [device_info("x")]
    )

    assert await get_device(store, intruder.id, device_id) is None
    assert await get_device(store, owner.id, ids.new_id()) is None
    assert await get_device(store, owner.id, device_id) is not None


async def test_list_devices_is_newest_first_with_ids_breaking_ties(
    store: Store, clock: ManualClock
) -> None:
    f = await fleet(store, clock)

    assert len(f.devices) == 7
    assert f.devices == newest_first(f.devices)
    # The first three saved share one instant; they come last, by id descending.
    tied = f.devices[-3:]
    assert len({device.created_at for device in tied}) == 1
    assert [device.id for device in tied] == sorted((device.id for device in tied), reverse=True)


@pytest.mark.parametrize("limit", [1, 2, 3, 7])
async def test_list_devices_pages_cover_everything_once_across_equal_times(
    store: Store, clock: ManualClock, limit: int
) -> None:
    f = await fleet(store, clock)

    pages = await all_pages(
        lambda after: store.read(
            lambda tx: tx.list_devices(f.org.id, DeviceFilter(), limit=limit, after=after)
        )
    )

    assert all(len(page) <= limit for page in pages)
    assert [device for page in pages for device in page] == f.devices
    assert pages[-1] == []


async def test_list_devices_page_after_the_last_device_is_empty(
    store: Store, clock: ManualClock
) -> None:
    f = await fleet(store, clock)
    last = f.devices[-1]

    page = await store.read(
        lambda tx: tx.list_devices(
            f.org.id, DeviceFilter(), limit=10, after=(last.created_at, last.id)
        )
    )

    assert page == []


async def test_list_devices_page_boundary_inside_a_tie(store: Store, clock: ManualClock) -> None:
    # Five devices at one instant, ids chosen so the order is known; pages of two.
    org = await add_org(store, clock)
    customer = await add_customer(store, clock, org.id)
    connection_id = await connect(store, clock, customer)
    chosen = [f"c{n:024d}" for n in (3, 1, 5, 2, 4)]
    await add_devices(
        store,
        clock,
        customer,
        connection_id,
        [device_info(f"e{n}") for n in range(5)],
        new_ids=chosen,
    )

    pages = await all_pages(
        lambda after: store.read(
            lambda tx: tx.list_devices(org.id, DeviceFilter(), limit=2, after=after)
        )
    )

    assert [[device.id for device in page] for page in pages] == [
        [chosen[2], chosen[4]],
        [chosen[0], chosen[3]],
        [chosen[1]],
        [],
    ]


@pytest.mark.parametrize(
    ("device_filter", "expected"),
    [
        (lambda f: DeviceFilter(customer_id=f.ada.id), {"a1", "a2", "a3", "t1", "t2"}),
        (lambda f: DeviceFilter(customer_id=f.bob.id), {"b1", "b2"}),
        (lambda f: DeviceFilter(site_id=f.site.id), {"a1", "a2", "a3"}),
        (lambda f: DeviceFilter(reference_id="crm-ada-tesla"), {"t1", "t2"}),
        (lambda f: DeviceFilter(reference_id="crm-ada"), {"a1", "a2", "a3"}),
        (lambda f: DeviceFilter(manufacturer="tesla"), {"t1", "t2"}),
        (lambda f: DeviceFilter(device_type="charger"), {"a2", "t2"}),
        (lambda f: DeviceFilter(tag="pilot"), {"a1", "a2", "a3", "t1", "t2"}),
        (lambda f: DeviceFilter(tag="north"), {"a1", "a2", "a3"}),
        (lambda f: DeviceFilter(tag="south"), {"b1", "b2"}),
        (lambda f: DeviceFilter(tag="PILOT"), set()),
        (lambda f: DeviceFilter(tag="nowhere"), set()),
        (lambda f: DeviceFilter(customer_id=f.ada.id, device_type="charger"), {"a2", "t2"}),
        (lambda f: DeviceFilter(tag="pilot", manufacturer="sandbox"), {"a1", "a2", "a3"}),
        (lambda f: DeviceFilter(tag="north", device_type="vehicle"), set()),
        (lambda f: DeviceFilter(customer_id=f.bob.id, tag="pilot"), set()),
        (lambda f: DeviceFilter(customer_id=ids.new_id()), set()),
    ],
)
async def test_list_devices_filters(
    store: Store,
    clock: ManualClock,
    device_filter: Callable[[Fleet], DeviceFilter],
    expected: set[str],
) -> None:
    f = await fleet(store, clock)
    wanted = device_filter(f)

    listed = await store.read(lambda tx: tx.list_devices(f.org.id, wanted, limit=100, after=None))

    assert externals(listed) == expected
    assert listed == newest_first(listed)


async def test_list_devices_filtered_by_tag_pages_across_boundaries(
    store: Store, clock: ManualClock
) -> None:
    f = await fleet(store, clock)
    tagged = [device for device in f.devices if "pilot" in device.tags]

    pages = await all_pages(
        lambda after: store.read(
            lambda tx: tx.list_devices(f.org.id, DeviceFilter(tag="pilot"), limit=2, after=after)
        )
    )

    assert [len(page) for page in pages] == [2, 2, 1, 0]
    assert [device for page in pages for device in page] == tagged


async def test_list_devices_never_shows_another_organizations_devices(
    store: Store, clock: ManualClock
) -> None:
    f = await fleet(store, clock)
    other = await fleet(store, clock)

    for org, own in ((f.org, f.devices), (other.org, other.devices)):
        for wanted in (
            DeviceFilter(),
            DeviceFilter(tag="pilot"),
            DeviceFilter(manufacturer="tesla"),
        ):
            listed = await store.read(partial(list_all, org_id=org.id, wanted=wanted))
            assert listed and {device.id for device in listed} <= {device.id for device in own}
    assert (
        await store.read(
            lambda tx: tx.list_devices(
                other.org.id, DeviceFilter(customer_id=f.ada.id), limit=100, after=None
            )
        )
        == []
    )


async def test_devices_of_customer_connection_and_customers_are_oldest_first(
    store: Store, clock: ManualClock
) -> None:
    f = await fleet(store, clock)
    intruder = await add_org(store, clock, "Intruder")
    ada_devices = oldest_first([d for d in f.devices if d.customer_id == f.ada.id])
    tesla = ada_devices[-1].connection_id

    assert await read(store, lambda tx: tx.devices_of_customer(f.org.id, f.ada.id)) == ada_devices
    assert await read(store, lambda tx: tx.devices_of_connection(f.org.id, tesla)) == [
        d for d in ada_devices if d.manufacturer == "tesla"
    ]
    unknown = ids.new_id()
    by_customer = await read(
        store, lambda tx: tx.devices_of_customers(f.org.id, [f.ada.id, f.bob.id, unknown])
    )
    assert by_customer == {
        f.ada.id: ada_devices,
        f.bob.id: oldest_first([d for d in f.devices if d.customer_id == f.bob.id]),
        unknown: [],
    }
    assert await read(store, lambda tx: tx.devices_of_customers(f.org.id, [])) == {}
    # Another organization asking by the same ids finds nothing.
    assert await read(store, lambda tx: tx.devices_of_customer(intruder.id, f.ada.id)) == []
    assert await read(store, lambda tx: tx.devices_of_connection(intruder.id, tesla)) == []
    assert await read(store, lambda tx: tx.devices_of_customers(intruder.id, [f.ada.id])) == {
        f.ada.id: []
    }


# Tags ---------------------------------------------------------------------------------


async def test_set_device_tags_adds_and_removes(store: Store, clock: ManualClock) -> None:
    org = await add_org(store, clock)
    customer = await add_customer(store, clock, org.id)
    (device_id,) = await add_devices(
        store,
        clock,
        customer,
        await connect(store, clock, customer),
        [device_info("x")],
        tags=("pilot", "north"),
    )
    clock.advance(minutes=1)

    updated = await store.write(
        lambda tx: tx.set_device_tags(
            org.id, device_id, ("vip", "pilot", "vip"), ("north", "absent"), clock()
        )
    )

    assert updated is not None
    assert updated.tags == ("pilot", "vip")
    assert updated.updated_at == clock()
    assert updated.created_at == clock() - timedelta(minutes=1)
    assert await get_device(store, org.id, device_id) == updated
    rows = await select_all(
        store, sa.select(schema.device_tags).where(schema.device_tags.c.device_id == device_id)
    )
    assert sorted(row.tag for row in rows) == ["pilot", "vip"]


async def test_set_device_tags_with_a_tag_in_both_lists_removes_it(
    store: Store, clock: ManualClock
) -> None:
    org = await add_org(store, clock)
    customer = await add_customer(store, clock, org.id)
    (device_id,) = await add_devices(
        store, clock, customer, await connect(store, clock, customer), [device_info("x")]
    )

    updated = await store.write(
        lambda tx: tx.set_device_tags(org.id, device_id, ("a", "b"), ("b",), clock())
    )

    assert updated is not None and updated.tags == ("a",)


async def test_set_device_tags_with_nothing_to_change_still_returns_the_device(
    store: Store, clock: ManualClock
) -> None:
    org = await add_org(store, clock)
    customer = await add_customer(store, clock, org.id)
    (device_id,) = await add_devices(
        store,
        clock,
        customer,
        await connect(store, clock, customer),
        [device_info("x")],
        tags=("a",),
    )

    updated = await store.write(lambda tx: tx.set_device_tags(org.id, device_id, (), (), clock()))

    assert updated is not None and updated.tags == ("a",)


async def test_set_device_tags_on_another_organizations_device_changes_nothing(
    store: Store, clock: ManualClock
) -> None:
    owner = await add_org(store, clock, "Owner")
    intruder = await add_org(store, clock, "Intruder")
    customer = await add_customer(store, clock, owner.id)
    (device_id,) = await add_devices(
        store,
        clock,
        customer,
        await connect(store, clock, customer),
        [device_info("x")],
        tags=("keep",),
    )
    before = await get_device(store, owner.id, device_id)
    clock.advance(minutes=1)

    assert (
        await store.write(
            lambda tx: tx.set_device_tags(intruder.id, device_id, ("evil",), ("keep",), clock())
        )
        is None
    )
    assert (
        await store.write(
            lambda tx: tx.set_device_tags(owner.id, ids.new_id(), ("a",), (), clock())
        )
        is None
    )
    assert await get_device(store, owner.id, device_id) == before


async def test_concurrent_tag_edits_of_one_device_all_land(
    store: Store, clock: ManualClock
) -> None:
    org = await add_org(store, clock)
    customer = await add_customer(store, clock, org.id)
    (device_id,) = await add_devices(
        store, clock, customer, await connect(store, clock, customer), [device_info("x")]
    )

    await asyncio.gather(
        *(
            store.write(
                partial(
                    Transaction.set_device_tags,
                    org_id=org.id,
                    device_id=device_id,
                    add=(f"t{n}", "shared"),
                    remove=(),
                    now=clock(),
                )
            )
            for n in range(8)
        )
    )

    device = await get_device(store, org.id, device_id)
    assert device is not None
    assert device.tags == tuple(sorted([f"t{n}" for n in range(8)] + ["shared"]))


async def test_reconnecting_adds_the_new_sessions_tags_and_removes_none(
    store: Store, clock: ManualClock
) -> None:
    org = await add_org(store, clock)
    customer = await add_customer(store, clock, org.id)
    connection_id = await connect(store, clock, customer)
    (device_id,) = await add_devices(
        store, clock, customer, connection_id, [device_info("x")], tags=("a", "b")
    )
    await store.write(lambda tx: tx.set_device_tags(org.id, device_id, ("c",), ("a",), clock()))

    again = await add_devices(
        store,
        clock,
        customer,
        await connect(store, clock, customer),
        [device_info("x"), device_info("y")],
        tags=("b", "d"),
    )

    assert again[0] == device_id
    first = await get_device(store, org.id, device_id)
    second = await get_device(store, org.id, again[1])
    assert first is not None and first.tags == ("b", "c", "d")
    assert second is not None and second.tags == ("b", "d")


async def test_saving_devices_without_tags_keeps_their_tags(
    store: Store, clock: ManualClock
) -> None:
    org = await add_org(store, clock)
    customer = await add_customer(store, clock, org.id)
    connection_id = await connect(store, clock, customer)
    (device_id,) = await add_devices(
        store, clock, customer, connection_id, [device_info("x")], tags=("a",)
    )

    await add_devices(store, clock, customer, connection_id, [device_info("x")])

    device = await get_device(store, org.id, device_id)
    assert device is not None and device.tags == ("a",)


async def test_concurrent_saves_of_tagged_devices_store_each_tag_once(
    store: Store, clock: ManualClock
) -> None:
    org = await add_org(store, clock)
    customer = await add_customer(store, clock, org.id)
    connection_id = await connect(store, clock, customer)
    devices = [device_info("x"), device_info("y")]

    results = await asyncio.gather(
        *(
            add_devices(store, clock, customer, connection_id, devices, tags=("pilot", f"s{n}"))
            for n in range(5)
        )
    )

    assert all(result == results[0] for result in results)
    for device_id in results[0]:
        device = await get_device(store, org.id, device_id)
        assert device is not None
        assert device.tags == tuple(sorted(["pilot"] + [f"s{n}" for n in range(5)]))


# Customers and sites ------------------------------------------------------------------


async def test_customers_and_sites_carry_their_times(store: Store, clock: ManualClock) -> None:
    org = await add_org(store, clock)
    created = clock()
    customer = await add_customer(store, clock, org.id)
    clock.advance(minutes=3)
    site = await add_site(store, clock, customer)
    changed = Customer(customer.id, org.id, customer.reference_id, "Ada", "Byron", "a@b.example")
    await store.write(lambda tx: tx.update_customer_contact(changed, clock()))

    found = await read(store, lambda tx: tx.get_customer(org.id, customer.id))
    assert found is not None
    assert (found.created_at, found.updated_at) == (created, clock())
    assert site.created_at == clock()
    assert await read(store, lambda tx: tx.get_site(org.id, site.id)) == site


async def test_list_customers_pages_newest_first_across_equal_times(
    store: Store, clock: ManualClock
) -> None:
    org = await add_org(store, clock)
    other = await add_org(store, clock, "Other")
    await add_customer(store, clock, other.id)
    customers = [await add_customer(store, clock, org.id) for _ in range(3)]
    clock.advance(seconds=1)
    customers += [await add_customer(store, clock, org.id) for _ in range(2)]
    expected = newest_first(
        [
            await read(store, partial(Transaction.get_customer, org_id=org.id, customer_id=c.id))
            for c in customers
        ]
    )

    pages = await all_pages(
        lambda after: store.read(
            lambda tx: tx.list_customers(org.id, reference_id="", email="", limit=2, after=after)
        )
    )

    assert [len(page) for page in pages] == [2, 2, 1, 0]
    assert [customer for page in pages for customer in page] == expected


async def test_list_customers_filters_by_reference_and_email_ignoring_case(
    store: Store, clock: ManualClock
) -> None:
    org = await add_org(store, clock)
    other = await add_org(store, clock, "Other")
    ada = await add_customer(store, clock, org.id, reference_id="crm-1", email="Ada@Example.com")
    twin = await add_customer(store, clock, org.id, reference_id="crm-1", email="twin@example.com")
    await add_customer(store, clock, org.id, reference_id="crm-2")
    await add_customer(store, clock, other.id, reference_id="crm-1", email="ada@example.com")

    async def listed(reference_id: str = "", email: str = "") -> set[str]:
        found = await store.read(
            lambda tx: tx.list_customers(
                org.id, reference_id=reference_id, email=email, limit=10, after=None
            )
        )
        return {customer.id for customer in found}

    assert await listed(reference_id="crm-1") == {ada.id, twin.id}
    assert await listed(email="ADA@example.COM") == {ada.id}
    assert await listed(email="  ada@example.com ") == {ada.id}
    assert await listed(reference_id="crm-1", email="twin@example.com") == {twin.id}
    assert await listed(reference_id="crm-2", email="twin@example.com") == set()
    assert await listed(reference_id="CRM-1") == set()
    assert len(await listed()) == 3


async def test_list_sites_pages_newest_first_and_filters_by_customer(
    store: Store, clock: ManualClock
) -> None:
    org = await add_org(store, clock)
    other = await add_org(store, clock, "Other")
    ada = await add_customer(store, clock, org.id)
    bob = await add_customer(store, clock, org.id)
    await add_site(store, clock, await add_customer(store, clock, other.id))
    sites = [await add_site(store, clock, ada, f"City {n}") for n in range(3)]
    clock.advance(seconds=1)
    sites += [await add_site(store, clock, bob), await add_site(store, clock, ada, "Later")]

    pages = await all_pages(
        lambda after: store.read(
            lambda tx: tx.list_sites(org.id, customer_id="", limit=2, after=after)
        )
    )
    ada_only = await store.read(
        lambda tx: tx.list_sites(org.id, customer_id=ada.id, limit=10, after=None)
    )

    assert [site for page in pages for site in page] == newest_first(sites)
    assert [len(page) for page in pages] == [2, 2, 1, 0]
    assert ada_only == newest_first([site for site in sites if site.customer_id == ada.id])
    assert (
        await store.read(
            lambda tx: tx.list_sites(other.id, customer_id=ada.id, limit=10, after=None)
        )
        == []
    )


async def test_sites_of_customers_groups_oldest_first(store: Store, clock: ManualClock) -> None:
    org = await add_org(store, clock)
    intruder = await add_org(store, clock, "Intruder")
    ada = await add_customer(store, clock, org.id)
    bob = await add_customer(store, clock, org.id)
    lonely = await add_customer(store, clock, org.id)
    first = await add_site(store, clock, ada, "First")
    clock.advance(seconds=1)
    bobs = await add_site(store, clock, bob)
    second = await add_site(store, clock, ada, "Second")

    grouped = await read(
        store, lambda tx: tx.sites_of_customers(org.id, [ada.id, bob.id, lonely.id])
    )

    assert grouped == {ada.id: [first, second], bob.id: [bobs], lonely.id: []}
    assert await read(store, lambda tx: tx.sites_of_customers(org.id, [])) == {}
    assert await read(store, lambda tx: tx.sites_of_customers(intruder.id, [ada.id])) == {
        ada.id: []
    }


# Connections ----------------------------------------------------------------------------


async def test_get_connection(store: Store, clock: ManualClock) -> None:
    org = await add_org(store, clock)
    intruder = await add_org(store, clock, "Intruder")
    customer = await add_customer(store, clock, org.id)
    connection_id = await connect(store, clock, customer)

    assert await read(store, lambda tx: tx.get_connection(org.id, connection_id)) == (
        ManufacturerConnection(
            id=connection_id,
            organization_id=org.id,
            customer_id=customer.id,
            manufacturer="sandbox",
            status=ConnectionStatus.ACTIVE,
            scope="read",
            token_expires_at=clock() + timedelta(hours=1),
            created_at=clock(),
            updated_at=clock(),
        )
    )
    assert await read(store, lambda tx: tx.get_connection(intruder.id, connection_id)) is None
    assert await read(store, lambda tx: tx.get_connection(org.id, ids.new_id())) is None


async def test_list_connections_pages_newest_first_and_filters(
    store: Store, clock: ManualClock
) -> None:
    org = await add_org(store, clock)
    other = await add_org(store, clock, "Other")
    ada = await add_customer(store, clock, org.id)
    bob = await add_customer(store, clock, org.id)
    await connect(store, clock, await add_customer(store, clock, other.id))
    made = [await connect(store, clock, ada, m) for m in ("sandbox", "tesla", "enphase")]
    clock.advance(seconds=1)
    made += [await connect(store, clock, bob, m) for m in ("sandbox", "tesla")]
    connections = [
        await read(store, partial(Transaction.get_connection, org_id=org.id, connection_id=c))
        for c in made
    ]

    async def listed(
        after: tuple[datetime, str] | None, customer_id: str = "", manufacturer: str = ""
    ) -> list[ManufacturerConnection]:
        return await store.read(
            lambda tx: tx.list_connections(
                org.id, customer_id=customer_id, manufacturer=manufacturer, limit=2, after=after
            )
        )

    pages = await all_pages(listed)
    assert [len(page) for page in pages] == [2, 2, 1, 0]
    assert [c for page in pages for c in page] == newest_first(connections)
    assert {c.id for c in await listed(None, customer_id=bob.id)} == set(made[3:])
    assert {c.id for c in await listed(None, manufacturer="tesla")} == {made[1], made[4]}
    assert [c.id for c in await listed(None, customer_id=ada.id, manufacturer="tesla")] == [made[1]]


async def test_connection_tokens_start_at_generation_zero_and_reconnect_bumps_it(
    store: Store, clock: ManualClock
) -> None:
    org = await add_org(store, clock)
    customer = await add_customer(store, clock, org.id)
    connection_id = await connect(store, clock, customer)

    first = await tokens(store, connection_id)
    assert first == StoredTokens(
        connection_id=connection_id,
        organization_id=org.id,
        manufacturer="sandbox",
        status=ConnectionStatus.ACTIVE,
        access_token_sealed=sealed("access", connection_id),
        refresh_token_sealed=sealed("refresh", connection_id),
        token_expires_at=clock() + timedelta(hours=1),
        token_generation=0,
        refresh_claimed_at=None,
    )
    assert "access@" not in repr(first)

    assert await claim(store, connection_id, 0, clock())
    await connect(store, clock, customer, access_token="again")

    second = await tokens(store, connection_id)
    assert second.token_generation == 1
    assert second.refresh_claimed_at is None
    assert second.access_token_sealed == sealed("again", connection_id)
    assert await read(store, lambda tx: tx.get_connection_tokens(ids.new_id())) is None


# Token refresh --------------------------------------------------------------------------


async def active_connection(store: Store, clock: ManualClock) -> tuple[Organization, Customer, str]:
    org = await add_org(store, clock)
    customer = await add_customer(store, clock, org.id)
    return org, customer, await connect(store, clock, customer)


async def test_claim_token_refresh_is_granted_once_per_generation(
    store: Store, clock: ManualClock
) -> None:
    _, _, connection_id = await active_connection(store, clock)

    assert await claim(store, connection_id, 1, clock()) is False  # not the current generation
    assert await claim(store, connection_id, 0, clock()) is True
    assert await claim(store, connection_id, 0, clock()) is False  # held
    assert (await tokens(store, connection_id)).refresh_claimed_at == clock()

    clock.advance(seconds=CLAIM_TIMEOUT.total_seconds() - 1)
    assert await claim(store, connection_id, 0, clock()) is False  # still fresh
    clock.advance(seconds=2)
    assert await claim(store, connection_id, 0, clock()) is True  # abandoned: taken over
    assert await claim(store, ids.new_id(), 0, clock()) is False


async def test_concurrent_claims_of_one_connection_grant_exactly_one(
    store: Store, clock: ManualClock
) -> None:
    _, _, connection_id = await active_connection(store, clock)

    results = await asyncio.gather(*(claim(store, connection_id, 0, clock()) for _ in range(10)))

    assert sorted(results) == [False] * 9 + [True]


async def test_store_refreshed_tokens_moves_to_the_next_generation(
    store: Store, clock: ManualClock
) -> None:
    org, _, connection_id = await active_connection(store, clock)
    assert await claim(store, connection_id, 0, clock())
    clock.advance(minutes=1)

    await store.write(
        lambda tx: tx.store_refreshed_tokens(
            connection_id,
            access_token_sealed=b"new-access",
            refresh_token_sealed=b"new-refresh",
            token_expires_at=clock() + timedelta(minutes=5),
            now=clock(),
        )
    )

    stored = await tokens(store, connection_id)
    assert (stored.access_token_sealed, stored.refresh_token_sealed) == (
        b"new-access",
        b"new-refresh",
    )
    assert stored.token_expires_at == clock() + timedelta(minutes=5)
    assert (stored.token_generation, stored.refresh_claimed_at) == (1, None)
    connection = await read(store, lambda tx: tx.get_connection(org.id, connection_id))
    assert connection is not None and connection.updated_at == clock()
    # The old generation can no longer be claimed; the new one can.
    assert await claim(store, connection_id, 0, clock()) is False
    assert await claim(store, connection_id, 1, clock()) is True


async def test_store_refreshed_tokens_without_a_refresh_token_keeps_the_stored_one(
    store: Store, clock: ManualClock
) -> None:
    _, _, connection_id = await active_connection(store, clock)

    await store.write(
        lambda tx: tx.store_refreshed_tokens(
            connection_id,
            access_token_sealed=b"new-access",
            refresh_token_sealed=None,
            token_expires_at=None,
            now=clock(),
        )
    )

    stored = await tokens(store, connection_id)
    assert stored.refresh_token_sealed == sealed("refresh", connection_id)
    assert (stored.access_token_sealed, stored.token_expires_at) == (b"new-access", None)


async def test_release_token_refresh_lets_the_next_caller_claim(
    store: Store, clock: ManualClock
) -> None:
    _, _, connection_id = await active_connection(store, clock)
    assert await claim(store, connection_id, 0, clock())

    await store.write(lambda tx: tx.release_token_refresh(connection_id))

    stored = await tokens(store, connection_id)
    assert (stored.token_generation, stored.refresh_claimed_at) == (0, None)
    assert await claim(store, connection_id, 0, clock()) is True


async def test_needs_reauthorization_stops_refreshes_until_a_reconnect_repairs_it(
    store: Store, clock: ManualClock
) -> None:
    org, customer, connection_id = await active_connection(store, clock)
    _, key_hash = await add_scoped_key(store, clock, customer, connection_id)
    assert await claim(store, connection_id, 0, clock())
    clock.advance(minutes=1)

    await store.write(lambda tx: tx.mark_needs_reauthorization(connection_id, clock()))

    stored = await tokens(store, connection_id)
    assert stored.status is ConnectionStatus.NEEDS_REAUTHORIZATION
    assert (stored.token_generation, stored.refresh_claimed_at) == (1, None)
    connection = await read(store, lambda tx: tx.get_connection(org.id, connection_id))
    assert connection is not None
    assert (connection.status, connection.updated_at) == (
        ConnectionStatus.NEEDS_REAUTHORIZATION,
        clock(),
    )
    assert await claim(store, connection_id, 1, clock()) is False
    # A late refresh result is not stored on a connection that needs re-authorization.
    await store.write(
        lambda tx: tx.store_refreshed_tokens(
            connection_id,
            access_token_sealed=b"late",
            refresh_token_sealed=b"late",
            token_expires_at=None,
            now=clock(),
        )
    )
    assert (await tokens(store, connection_id)).access_token_sealed == sealed(
        "access", connection_id
    )
    # The key still identifies the customer: reads fail on the connection's status.
    assert await principal(store, key_hash) is not None

    # Completing a new authorization repairs the same connection.
    assert await connect(store, clock, customer, access_token="fresh") == connection_id
    repaired = await tokens(store, connection_id)
    assert (repaired.status, repaired.token_generation) == (ConnectionStatus.ACTIVE, 2)
    assert await claim(store, connection_id, 2, clock()) is True


# Scoped keys, revocation and disconnect ---------------------------------------------------


async def test_principal_of_a_scoped_key_names_its_customer_and_connection(
    store: Store, clock: ManualClock
) -> None:
    org, customer, connection_id = await active_connection(store, clock)
    key_id, key_hash = await add_scoped_key(store, clock, customer, connection_id)
    secret_id, secret_hash = await add_secret_key(store, clock, org.id)

    assert await principal(store, key_hash) == Principal(
        KeyKind.SCOPED, key_id, org, customer_id=customer.id, connection_id=connection_id
    )
    assert await principal(store, secret_hash) == Principal(KeyKind.SECRET, secret_id, org)


async def test_revoked_scoped_key_opens_nothing(store: Store, clock: ManualClock) -> None:
    org, customer, connection_id = await active_connection(store, clock)
    intruder = await add_org(store, clock, "Intruder")
    _, key_hash = await add_scoped_key(store, clock, customer, connection_id)
    _, other_hash = await add_scoped_key(store, clock, customer, connection_id)
    _, secret_hash = await add_secret_key(store, clock, org.id)

    def revoke(org_id: str, hashed: str) -> Callable[[Transaction], bool]:
        return lambda tx: tx.revoke_scoped_key(org_id, hashed, clock())

    assert await store.write(revoke(intruder.id, key_hash)) is False
    assert await principal(store, key_hash) is not None
    assert await store.write(revoke(org.id, key_hash)) is True
    assert await principal(store, key_hash) is None
    assert await store.write(revoke(org.id, key_hash)) is False  # already revoked
    assert await store.write(revoke(org.id, hash_key("tx_sk_unknown"))) is False
    assert await store.write(revoke(org.id, secret_hash)) is False  # not a scoped key
    assert await principal(store, secret_hash) is not None
    assert await principal(store, other_hash) is not None  # the other key is untouched


async def test_disconnect_deletes_tokens_revokes_keys_and_disconnects_devices(
    store: Store, clock: ManualClock
) -> None:
    org, customer, connection_id = await active_connection(store, clock)
    other_connection = await connect(store, clock, customer, "tesla")
    await add_devices(store, clock, customer, connection_id, [device_info("x"), device_info("y")])
    (kept_device,) = await add_devices(
        store, clock, customer, other_connection, [device_info("z")], manufacturer="tesla"
    )
    _, key_hash = await add_scoped_key(store, clock, customer, connection_id)
    _, second_hash = await add_scoped_key(store, clock, customer, connection_id)
    _, other_key = await add_scoped_key(store, clock, customer, other_connection)
    _, secret_hash = await add_secret_key(store, clock, org.id)
    assert await claim(store, connection_id, 0, clock())
    clock.advance(minutes=1)

    disconnected = await store.write(
        lambda tx: tx.disconnect_connection(org.id, connection_id, clock())
    )

    assert disconnected is not None
    assert (disconnected.status, disconnected.token_expires_at, disconnected.updated_at) == (
        ConnectionStatus.DISCONNECTED,
        None,
        clock(),
    )
    stored = await tokens(store, connection_id)
    assert (stored.access_token_sealed, stored.refresh_token_sealed) == (None, None)
    assert (stored.token_generation, stored.refresh_claimed_at) == (1, None)
    assert await principal(store, key_hash) is None
    assert await principal(store, second_hash) is None
    assert await principal(store, other_key) is not None
    assert await principal(store, secret_hash) is not None
    k = schema.api_keys
    revoked = await select_all(
        store, sa.select(k.c.revoked_at).where(k.c.connection_id == connection_id)
    )
    assert [row.revoked_at for row in revoked] == [clock().replace(tzinfo=None)] * 2
    devices = await read(store, lambda tx: tx.devices_of_connection(org.id, connection_id))
    assert {(d.status, d.updated_at) for d in devices} == {("disconnected", clock())}
    kept = await get_device(store, org.id, kept_device)
    assert kept is not None and kept.status == "connected"
    assert await read(store, lambda tx: tx.count_connected_devices(org.id, customer.id)) == 1
    # Nothing can refresh it any more, and a late refresh result is dropped.
    assert await claim(store, connection_id, 1, clock()) is False
    await store.write(
        lambda tx: tx.store_refreshed_tokens(
            connection_id,
            access_token_sealed=b"late",
            refresh_token_sealed=b"late",
            token_expires_at=None,
            now=clock(),
        )
    )
    await store.write(lambda tx: tx.mark_needs_reauthorization(connection_id, clock()))
    assert await tokens(store, connection_id) == stored


async def test_disconnecting_again_changes_nothing(store: Store, clock: ManualClock) -> None:
    org, customer, connection_id = await active_connection(store, clock)
    await add_devices(store, clock, customer, connection_id, [device_info("x")])
    _, key_hash = await add_scoped_key(store, clock, customer, connection_id)
    first = await store.write(lambda tx: tx.disconnect_connection(org.id, connection_id, clock()))
    devices = await read(store, lambda tx: tx.devices_of_connection(org.id, connection_id))
    stored = await tokens(store, connection_id)
    k = schema.api_keys
    keys = await select_all(store, sa.select(k).where(k.c.connection_id == connection_id))
    clock.advance(minutes=5)

    second = await store.write(lambda tx: tx.disconnect_connection(org.id, connection_id, clock()))

    assert second == first
    assert await read(store, lambda tx: tx.devices_of_connection(org.id, connection_id)) == devices
    assert await tokens(store, connection_id) == stored
    assert await select_all(store, sa.select(k).where(k.c.connection_id == connection_id)) == keys
    assert await principal(store, key_hash) is None


async def test_disconnect_of_another_organizations_connection_changes_nothing(
    store: Store, clock: ManualClock
) -> None:
    org, customer, connection_id = await active_connection(store, clock)
    intruder = await add_org(store, clock, "Intruder")
    await add_devices(store, clock, customer, connection_id, [device_info("x")])
    _, key_hash = await add_scoped_key(store, clock, customer, connection_id)
    before = await tokens(store, connection_id)

    assert (
        await store.write(lambda tx: tx.disconnect_connection(intruder.id, connection_id, clock()))
        is None
    )
    assert (
        await store.write(lambda tx: tx.disconnect_connection(org.id, ids.new_id(), clock()))
        is None
    )
    assert await tokens(store, connection_id) == before
    assert await principal(store, key_hash) is not None
    assert await read(store, lambda tx: tx.count_connected_devices(org.id, customer.id)) == 1


async def test_scoped_key_of_a_disconnected_connection_opens_nothing_even_unrevoked(
    store: Store, clock: ManualClock
) -> None:
    org, customer, connection_id = await active_connection(store, clock)
    await store.write(lambda tx: tx.disconnect_connection(org.id, connection_id, clock()))

    # A key minted for the connection after the disconnect (a race the revocation missed).
    _, key_hash = await add_scoped_key(store, clock, customer, connection_id)

    assert await principal(store, key_hash) is None


async def test_reconnecting_after_disconnect_revives_the_connection_not_the_old_keys(
    store: Store, clock: ManualClock
) -> None:
    org, customer, connection_id = await active_connection(store, clock)
    (device_id,) = await add_devices(
        store, clock, customer, connection_id, [device_info("x")], tags=("a",)
    )
    _, old_key = await add_scoped_key(store, clock, customer, connection_id)
    await store.write(lambda tx: tx.disconnect_connection(org.id, connection_id, clock()))

    assert await connect(store, clock, customer, access_token="back") == connection_id
    await add_devices(store, clock, customer, connection_id, [device_info("x")], tags=("b",))
    _, new_key = await add_scoped_key(store, clock, customer, connection_id)

    stored = await tokens(store, connection_id)
    assert (stored.status, stored.token_generation) == (ConnectionStatus.ACTIVE, 2)
    assert stored.access_token_sealed == sealed("back", connection_id)
    device = await get_device(store, org.id, device_id)
    assert device is not None and (device.status, device.tags) == ("connected", ("a", "b"))
    assert await principal(store, old_key) is None
    assert await principal(store, new_key) is not None


# Migration 0003 -------------------------------------------------------------------------


@pytest.fixture
async def fresh_store(database_url: tuple[str, str | None]) -> AsyncIterator[Store]:
    """A store on an empty database that nobody has migrated."""
    url, schema_name = database_url
    store = open_store(url, schema=schema_name)
    yield store
    await store.close()


LEGACY_TAGS = {"d-many": ["pilot", "north", "pilot"], "d-none": [], "d-one": ["solo"]}


async def seed_at_0002(store: Store) -> tuple[str, str]:
    """Rows as revision 0002 stored them, tags as a JSON list on the device; returns the
    organization and customer ids."""
    await store.database.migrate("0002")
    now = datetime(2026, 12, 3, 16, 0)
    org_id, customer_id, connection_id = ids.new_id(), ids.new_id(), ids.new_id()

    def seed(c: sa.Connection) -> None:
        c.execute(
            sa.text(
                "INSERT INTO organizations (id, name, headless_enabled, created_at) "
                "VALUES (:id, 'Legacy', :headless, :now)"
            ),
            {"id": org_id, "headless": False, "now": now},
        )
        c.execute(
            sa.text(
                "INSERT INTO customers (id, organization_id, reference_id, first_name, "
                "last_name, email, email_key, phone, created_at, updated_at) "
                "VALUES (:id, :org, 'crm-1', '', '', '', '', '', :now, :now)"
            ),
            {"id": customer_id, "org": org_id, "now": now},
        )
        c.execute(
            sa.text(
                "INSERT INTO manufacturer_connections (id, organization_id, customer_id, "
                "manufacturer, status, scope, created_at, updated_at) "
                "VALUES (:id, :org, :customer, 'sandbox', 'active', '', :now, :now)"
            ),
            {"id": connection_id, "org": org_id, "customer": customer_id, "now": now},
        )
        insert_device = sa.text(
            "INSERT INTO devices (id, organization_id, customer_id, connection_id, "
            "manufacturer, external_id, type, model, serial_number, name, reference_id, tags, "
            "status, created_at, updated_at) VALUES (:id, :org, :customer, :connection, "
            "'sandbox', :id, 'battery', '', '', '', 'crm-1', :tags, 'connected', :now, :now)"
        ).bindparams(sa.bindparam("tags", type_=sa.JSON))
        for device_id, tags in LEGACY_TAGS.items():
            c.execute(
                insert_device,
                {
                    "id": device_id,
                    "org": org_id,
                    "customer": customer_id,
                    "connection": connection_id,
                    "tags": tags,
                    "now": now,
                },
            )

    await store.database.run(seed, write=True)
    return org_id, connection_id


async def test_migration_0003_moves_json_tags_into_device_tags(fresh_store: Store) -> None:
    store = fresh_store
    org_id, connection_id = await seed_at_0002(store)

    await store.database.migrate()

    assert await store.database.is_migrated() is True
    rows = await select_all(store, sa.select(schema.device_tags))
    assert sorted((row.device_id, row.tag) for row in rows) == [
        ("d-many", "north"),
        ("d-many", "pilot"),
        ("d-one", "solo"),
    ]
    columns = await store.database.run(
        lambda c: {column["name"] for column in sa.inspect(c).get_columns("devices")},
        write=False,
    )
    assert "tags" not in columns
    for device_id, tags in LEGACY_TAGS.items():
        device = await get_device(store, org_id, device_id)
        assert device is not None and device.tags == tuple(sorted(set(tags)))
    listed = await store.read(
        lambda tx: tx.list_devices(org_id, DeviceFilter(tag="pilot"), limit=10, after=None)
    )
    assert [device.id for device in listed] == ["d-many"]
    stored = await tokens(store, connection_id)
    assert (stored.token_generation, stored.refresh_claimed_at) == (0, None)


async def test_downgrading_0003_puts_the_tags_back_on_the_devices(fresh_store: Store) -> None:
    store = fresh_store
    org_id, connection_id = await seed_at_0002(store)
    await store.database.migrate()
    now = datetime.now(UTC)
    await store.write(lambda tx: tx.set_device_tags(org_id, "d-none", ("added",), (), now))
    await store.write(lambda tx: tx.set_device_tags(org_id, "d-one", (), ("solo",), now))
    await store.write(lambda tx: tx.mark_needs_reauthorization(connection_id, now))

    await store.database.downgrade("0002")

    assert await store.database.current_revision() == "0002"
    devices = sa.table("devices", sa.column("id", sa.String), sa.column("tags", sa.JSON))
    rows = await select_all(store, sa.select(devices.c.id, devices.c.tags))
    assert {row.id: row.tags for row in rows} == {
        "d-many": ["north", "pilot"],
        "d-none": ["added"],
        "d-one": [],
    }
    tables = await store.database.run(lambda c: set(sa.inspect(c).get_table_names()), write=False)
    assert "device_tags" not in tables
    m = schema.manufacturer_connections
    (status,) = await select_all(store, sa.select(m.c.status))
    assert status.status == "active"  # 0002 knew no needs_reauthorization

    await store.database.migrate()
    device = await get_device(store, org_id, "d-many")
    assert device is not None and device.tags == ("north", "pilot")
