"""Migrations: Alembic is the source of truth for the database, ``schema.metadata`` mirrors
it for queries. These tests run on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from texture_connect.domain import ids
from texture_connect.domain.keys import KeyKind, hash_key
from texture_connect.domain.records import Customer, Organization, Principal, SessionStatus
from texture_connect.storage import Database, NewSession, Store, open_store, schema

APP_TABLES = set(schema.metadata.tables)


@pytest.fixture
async def fresh_store(database_url: tuple[str, str | None]) -> AsyncIterator[Store]:
    """A store on an empty database that nobody has migrated."""
    url, schema_name = database_url
    store = open_store(url, schema=schema_name)
    yield store
    await store.close()


async def schema_differences(store: Store) -> list[Any]:
    def compare(connection: sa.Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, schema.metadata)

    return await store.database.run(compare, write=False)


async def table_names(store: Store) -> set[str]:
    return await store.database.run(lambda c: set(sa.inspect(c).get_table_names()), write=False)


async def downgrade(store: Store, revision: str) -> None:
    await store.database.downgrade(revision)


async def test_migrated_database_matches_schema_metadata(store: Store) -> None:
    # No filtering is needed: both engines reflect exactly the types the migrations
    # declared (JSON, DATETIME/TIMESTAMP, BLOB/BYTEA, BOOLEAN, VARCHAR(n)).
    assert await schema_differences(store) == []


async def test_fresh_database_is_not_migrated_until_migrate(fresh_store: Store) -> None:
    assert await fresh_store.database.current_revision() is None
    assert await fresh_store.database.is_migrated() is False

    await fresh_store.database.migrate()

    assert await fresh_store.database.is_migrated() is True
    assert await fresh_store.database.current_revision() == Database.head_revision()
    assert await table_names(fresh_store) >= APP_TABLES


async def test_partly_migrated_database_is_not_migrated(fresh_store: Store) -> None:
    await fresh_store.database.migrate("0001")

    assert await fresh_store.database.current_revision() == "0001"
    assert await fresh_store.database.is_migrated() is False


async def test_migrating_twice_is_a_no_op(store: Store) -> None:
    org = Organization(ids.new_id(), "Energy Coffee", True)
    await store.write(lambda tx: tx.insert_organization(org, datetime.now(UTC)))

    await store.database.migrate()

    assert await store.database.is_migrated() is True
    assert await store.read(lambda tx: tx.get_organization(org.id)) == org
    assert await schema_differences(store) == []


async def test_downgrade_to_base_and_upgrade_again(store: Store) -> None:
    await downgrade(store, "base")

    assert await store.database.current_revision() is None
    assert await store.database.is_migrated() is False
    assert not APP_TABLES & await table_names(store)

    await store.database.migrate()

    assert await store.database.is_migrated() is True
    assert await schema_differences(store) == []
    org = Organization(ids.new_id(), "Energy Coffee", False)
    await store.write(lambda tx: tx.insert_organization(org, datetime.now(UTC)))
    assert await store.read(lambda tx: tx.get_organization(org.id)) == org


async def test_upgrading_from_0001_keeps_existing_rows(fresh_store: Store) -> None:
    # A deployment on 0001 with data in it upgrades in place: the rows 0001 knew about,
    # including sessions (whose table 0002 alters), survive and read back.
    store = fresh_store
    await store.database.migrate("0001")
    now = datetime(2026, 12, 3, 16, 0, tzinfo=UTC)
    org = Organization(ids.new_id(), "Energy Coffee", True)
    customer = Customer(ids.new_id(), org.id, "crm-1", "Ada", "Lovelace", "ada@example.com")
    key_id, key_hash = "key_" + ids.new_id(), hash_key("tx_sk_legacy")
    attempt_id = ids.new_id()
    session = NewSession(
        id=ids.new_id(),
        organization_id=org.id,
        link_token_hash=hash_key("link_legacy"),
        mode="standard",
        customer_id=customer.id,
        site_id=None,
        reference_id="crm-1",
        tags=("legacy",),
        client_name="Energy Coffee",
        redirect_url="https://app.example.com/done",
        manufacturers=("sandbox",),
        device_types=("battery",),
        customer_info=None,
        customer_form_bypassed=False,
        created_at=now,
        expires_at=datetime(2099, 1, 1, tzinfo=UTC),
    )

    def seed(tx: Any) -> None:
        tx.insert_organization(org, now)
        tx.insert_api_key(
            key_id=key_id, org_id=org.id, kind=KeyKind.SECRET, key_hash=key_hash, hint="h", now=now
        )
        tx.insert_customer(customer, now)
        # Only the columns 0001 had: today's insert_session writes later ones too.
        row = {
            k: v for k, v in vars(session).items() if k not in ("link_token_sealed", "flow_step")
        }
        row.update(
            status="pending",
            tags=list(session.tags),
            manufacturers=list(session.manufacturers),
            device_types=list(session.device_types),
            created_at=now.replace(tzinfo=None),
            expires_at=session.expires_at.replace(tzinfo=None),
            error="",
        )
        legacy_sessions = sa.table(
            "connect_sessions",
            *(sa.column(k, schema.connect_sessions.c[k].type) for k in row),
        )
        tx._c.execute(legacy_sessions.insert().values(**row))
        tx.insert_authorization_attempt(
            attempt_id=attempt_id,
            session_id=session.id,
            manufacturer="sandbox",
            state_hash=hash_key("state"),
            code_verifier_sealed=b"sealed",
            now=now,
        )

    await store.write(seed)

    await store.database.migrate()

    assert await store.database.is_migrated() is True
    assert await store.read(lambda tx: tx.principal_for_key_hash(key_hash)) == Principal(
        KeyKind.SECRET, key_id, org
    )
    assert await store.read(lambda tx: tx.get_customer(org.id, customer.id)) == customer
    stored = await store.read(lambda tx: tx.get_session(org.id, session.id))
    assert stored is not None
    assert (stored.status, stored.tags, stored.created_at) == (
        SessionStatus.PENDING,
        ("legacy",),
        now,
    )
    attempt = await store.read(lambda tx: tx.get_authorization_attempt(attempt_id))
    assert attempt is not None and attempt.session_id == session.id
    # The column 0002 added works on the old row.
    claimed = await store.write(lambda tx: tx.claim_session_callback(session.id, now, now))
    assert claimed is True


async def test_downgrading_to_0001_keeps_existing_rows(store: Store) -> None:
    now = datetime(2026, 12, 3, 16, 0, tzinfo=UTC)
    org = Organization(ids.new_id(), "Energy Coffee", True)
    customer = Customer(ids.new_id(), org.id, "crm-1")
    session = NewSession(
        id=ids.new_id(),
        organization_id=org.id,
        link_token_hash=hash_key("link_rollback"),
        mode="standard",
        customer_id=customer.id,
        site_id=None,
        reference_id="crm-1",
        tags=(),
        client_name="Energy Coffee",
        redirect_url="https://app.example.com/done",
        manufacturers=("sandbox",),
        device_types=(),
        customer_info=None,
        customer_form_bypassed=False,
        created_at=now,
        expires_at=datetime(2099, 1, 1, tzinfo=UTC),
    )
    attempt_id = ids.new_id()

    def seed(tx: Any) -> None:
        tx.insert_organization(org, now)
        tx.insert_customer(customer, now)
        # Only the columns 0001 had: today's insert_session writes later ones too.
        row = {
            k: v for k, v in vars(session).items() if k not in ("link_token_sealed", "flow_step")
        }
        row.update(
            status="pending",
            tags=list(session.tags),
            manufacturers=list(session.manufacturers),
            device_types=list(session.device_types),
            created_at=now.replace(tzinfo=None),
            expires_at=session.expires_at.replace(tzinfo=None),
            error="",
        )
        legacy_sessions = sa.table(
            "connect_sessions",
            *(sa.column(k, schema.connect_sessions.c[k].type) for k in row),
        )
        tx._c.execute(legacy_sessions.insert().values(**row))
        tx.insert_authorization_attempt(
            attempt_id=attempt_id,
            session_id=session.id,
            manufacturer="sandbox",
            state_hash=hash_key("state"),
            code_verifier_sealed=b"sealed",
            now=now,
        )

    await store.write(seed)

    await downgrade(store, "0001")

    assert await store.database.current_revision() == "0001"
    attempt = await store.read(lambda tx: tx.get_authorization_attempt(attempt_id))
    assert attempt is not None and attempt.session_id == session.id
    await store.database.migrate()
    assert await store.read(lambda tx: tx.get_session(org.id, session.id)) is not None
