"""The storage interface: rows in, domain records out. One implementation serves SQLite and
PostgreSQL through SQLAlchemy Core.

Callers hand a unit of work to ``await store.write(work)`` (or ``read``); everything
``work`` does through its ``tx`` commits together or not at all. Every query that takes an
id also takes the organization id, so one organization can never read another's rows:
a foreign id simply is not found.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from texture_connect.domain.addresses import Address, normalized_address_key
from texture_connect.domain.connect_request import Contact
from texture_connect.domain.keys import KeyKind
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
from texture_connect.storage import schema
from texture_connect.storage.database import Database

T = TypeVar("T")


def to_db_time(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


def from_db_time(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _utc(moment: datetime) -> datetime:
    result = from_db_time(moment)
    assert result is not None
    return result


@dataclass(frozen=True)
class StoredIdempotentResponse:
    fingerprint: str
    response_sealed: bytes
    created_at: datetime


@dataclass(frozen=True)
class NewSession:
    id: str
    organization_id: str
    link_token_hash: str
    mode: str
    customer_id: str
    site_id: str | None
    reference_id: str
    tags: tuple[str, ...]
    client_name: str
    redirect_url: str
    manufacturers: tuple[str, ...]
    device_types: tuple[str, ...]
    customer_info: dict[str, Any] | None
    customer_form_bypassed: bool
    created_at: datetime
    expires_at: datetime


class IdempotencyConflict(Exception):
    """Another transaction stored a response under the same request id first."""


# Hot-path statements, built once: SQLAlchemy then skips rebuilding and re-keying the
# expression on every call, which dominated the cost of CreateConnection.
_k, _o, _cu, _si = schema.api_keys, schema.organizations, schema.customers, schema.sites
_PRINCIPAL_BY_KEY_HASH = (
    sa.select(_k.c.id, _k.c.kind, _o.c.id.label("org_id"), _o.c.name, _o.c.headless_enabled)
    .join(_o, _o.c.id == _k.c.organization_id)
    .where(_k.c.key_hash == sa.bindparam("key_hash"), _k.c.revoked_at.is_(None))
)
_CUSTOMER_ORDER = (_cu.c.created_at, _cu.c.id)
_CUSTOMER_BY_ID = sa.select(_cu).where(
    _cu.c.organization_id == sa.bindparam("org_id"), _cu.c.id == sa.bindparam("value")
)
_CUSTOMER_BY_EMAIL = (
    sa.select(_cu)
    .where(
        _cu.c.organization_id == sa.bindparam("org_id"), _cu.c.email_key == sa.bindparam("value")
    )
    .order_by(*_CUSTOMER_ORDER)
    .limit(1)
)
_CUSTOMER_BY_REFERENCE = (
    sa.select(_cu)
    .where(
        _cu.c.organization_id == sa.bindparam("org_id"),
        _cu.c.reference_id == sa.bindparam("value"),
    )
    .order_by(*_CUSTOMER_ORDER)
    .limit(1)
)
_SITE_BY_ID = sa.select(_si).where(
    _si.c.organization_id == sa.bindparam("org_id"), _si.c.id == sa.bindparam("site_id")
)
_CUSTOMER_SITES = (
    sa.select(_si)
    .where(
        _si.c.organization_id == sa.bindparam("org_id"),
        _si.c.customer_id == sa.bindparam("customer_id"),
    )
    .order_by(_si.c.created_at, _si.c.id)
)


class Transaction:
    def __init__(self, connection: sa.Connection) -> None:
        self._c = connection

    # Organizations and keys --------------------------------------------------------------

    def insert_organization(self, org: Organization, now: datetime) -> None:
        self._c.execute(
            schema.organizations.insert(),
            dict(
                id=org.id,
                name=org.name,
                headless_enabled=org.headless_enabled,
                created_at=to_db_time(now),
            ),
        )

    def get_organization(self, org_id: str) -> Organization | None:
        row = (
            self._c.execute(
                sa.select(schema.organizations).where(schema.organizations.c.id == org_id)
            )
        ).first()
        return Organization(row.id, row.name, row.headless_enabled) if row else None

    def find_organization_by_name(self, name: str) -> Organization | None:
        row = (
            self._c.execute(
                sa.select(schema.organizations)
                .where(schema.organizations.c.name == name)
                .order_by(schema.organizations.c.created_at)
                .limit(1)
            )
        ).first()
        return Organization(row.id, row.name, row.headless_enabled) if row else None

    def set_headless(self, org_id: str, enabled: bool) -> bool:
        result = self._c.execute(
            schema.organizations.update()
            .where(schema.organizations.c.id == org_id)
            .values(headless_enabled=enabled)
        )
        return result.rowcount == 1

    def insert_api_key(
        self, *, key_id: str, org_id: str, kind: KeyKind, key_hash: str, hint: str, now: datetime
    ) -> None:
        self._c.execute(
            schema.api_keys.insert(),
            dict(
                id=key_id,
                organization_id=org_id,
                kind=kind.value,
                key_hash=key_hash,
                hint=hint,
                created_at=to_db_time(now),
            ),
        )

    def principal_for_key_hash(self, key_hash: str) -> Principal | None:
        """The organization behind an active (unrevoked) key, by the key's hash."""
        row = self._c.execute(_PRINCIPAL_BY_KEY_HASH, {"key_hash": key_hash}).first()
        if row is None:
            return None
        return Principal(
            KeyKind(row.kind), row.id, Organization(row.org_id, row.name, row.headless_enabled)
        )

    def revoke_api_key(self, *, key_id: str, now: datetime) -> bool:
        """Revokes an active key by id; False when there is no such active key."""
        result = self._c.execute(
            schema.api_keys.update()
            .where(schema.api_keys.c.id == key_id, schema.api_keys.c.revoked_at.is_(None))
            .values(revoked_at=to_db_time(now))
        )
        return result.rowcount == 1

    def key_id_for_hash(self, key_hash: str) -> str | None:
        return (
            self._c.execute(
                sa.select(schema.api_keys.c.id).where(schema.api_keys.c.key_hash == key_hash)
            )
        ).scalar()

    def list_api_keys(self, org_id: str) -> list[dict[str, Any]]:
        k = schema.api_keys
        rows = self._c.execute(
            sa.select(k.c.id, k.c.kind, k.c.hint, k.c.created_at, k.c.revoked_at)
            .where(k.c.organization_id == org_id)
            .order_by(k.c.created_at, k.c.id)
        )
        return [dict(row._mapping) for row in rows]

    # Customers ---------------------------------------------------------------------------

    @staticmethod
    def _customer(row: Any) -> Customer:
        return Customer(
            id=row.id,
            organization_id=row.organization_id,
            reference_id=row.reference_id,
            first_name=row.first_name,
            last_name=row.last_name,
            email=row.email,
            phone=row.phone,
        )

    def _one_customer(self, statement: sa.Select[Any], org_id: str, value: str) -> Customer | None:
        row = self._c.execute(statement, {"org_id": org_id, "value": value}).first()
        return self._customer(row) if row else None

    def get_customer(self, org_id: str, customer_id: str) -> Customer | None:
        return self._one_customer(_CUSTOMER_BY_ID, org_id, customer_id)

    def find_customer_by_email(self, org_id: str, email: str) -> Customer | None:
        return self._one_customer(_CUSTOMER_BY_EMAIL, org_id, email.strip().lower())

    def find_customer_by_reference(self, org_id: str, reference_id: str) -> Customer | None:
        return self._one_customer(_CUSTOMER_BY_REFERENCE, org_id, reference_id)

    def insert_customer(self, customer: Customer, now: datetime) -> None:
        self._c.execute(
            schema.customers.insert(),
            dict(
                id=customer.id,
                organization_id=customer.organization_id,
                reference_id=customer.reference_id,
                first_name=customer.first_name,
                last_name=customer.last_name,
                email=customer.email,
                email_key=customer.email.lower(),
                phone=customer.phone,
                created_at=to_db_time(now),
                updated_at=to_db_time(now),
            ),
        )

    def update_customer_contact(self, customer: Customer, now: datetime) -> None:
        c = schema.customers.c
        contact = Contact(customer.first_name, customer.last_name, customer.email, customer.phone)
        self._c.execute(
            schema.customers.update()
            .where(c.organization_id == customer.organization_id, c.id == customer.id)
            .values(
                first_name=contact.first_name,
                last_name=contact.last_name,
                email=contact.email,
                email_key=contact.email.lower(),
                phone=contact.phone,
                updated_at=to_db_time(now),
            )
        )

    # Sites -------------------------------------------------------------------------------

    @staticmethod
    def _site(row: Any) -> Site:
        return Site(
            id=row.id,
            organization_id=row.organization_id,
            customer_id=row.customer_id,
            address=Address(
                street_one=row.street_one,
                street_two=row.street_two,
                city=row.city,
                state=row.state,
                postal_code=row.postal_code,
                country=row.country,
            ),
            address_key=row.address_key,
        )

    def get_site(self, org_id: str, site_id: str) -> Site | None:
        row = self._c.execute(_SITE_BY_ID, {"org_id": org_id, "site_id": site_id}).first()
        return self._site(row) if row else None

    def list_customer_sites(self, org_id: str, customer_id: str) -> list[Site]:
        rows = self._c.execute(_CUSTOMER_SITES, {"org_id": org_id, "customer_id": customer_id})
        return [self._site(row) for row in rows]

    def insert_site(
        self, *, site_id: str, org_id: str, customer_id: str, address: Address, now: datetime
    ) -> Site:
        key = normalized_address_key(address)
        self._c.execute(
            schema.sites.insert(),
            dict(
                id=site_id,
                organization_id=org_id,
                customer_id=customer_id,
                street_one=address.street_one,
                street_two=address.street_two,
                city=address.city,
                state=address.state,
                postal_code=address.postal_code,
                country=address.country,
                address_key=key,
                created_at=to_db_time(now),
            ),
        )
        return Site(site_id, org_id, customer_id, address, key)

    # Connect sessions --------------------------------------------------------------------

    def insert_session(self, session: NewSession) -> None:
        self._c.execute(
            schema.connect_sessions.insert(),
            dict(
                id=session.id,
                organization_id=session.organization_id,
                link_token_hash=session.link_token_hash,
                mode=session.mode,
                status=SessionStatus.PENDING.value,
                customer_id=session.customer_id,
                site_id=session.site_id,
                reference_id=session.reference_id,
                tags=list(session.tags),
                client_name=session.client_name,
                redirect_url=session.redirect_url,
                manufacturers=list(session.manufacturers),
                device_types=list(session.device_types),
                customer_info=session.customer_info,
                customer_form_bypassed=session.customer_form_bypassed,
                created_at=to_db_time(session.created_at),
                expires_at=to_db_time(session.expires_at),
                error="",
            ),
        )

    def get_session(self, org_id: str | None, session_id: str) -> ConnectSession | None:
        """A session of ``org_id``; ``None`` only for Texture's internal callers, which
        find the session from an authorization attempt."""
        s = schema.connect_sessions.c
        conditions = [s.id == session_id]
        if org_id is not None:
            conditions.append(s.organization_id == org_id)
        row = (self._c.execute(sa.select(schema.connect_sessions).where(*conditions))).first()
        if row is None:
            return None
        return ConnectSession(
            id=row.id,
            organization_id=row.organization_id,
            mode=row.mode,
            status=SessionStatus(row.status),
            customer_id=row.customer_id,
            site_id=row.site_id or "",
            reference_id=row.reference_id,
            tags=tuple(row.tags),
            client_name=row.client_name,
            redirect_url=row.redirect_url,
            manufacturers=tuple(row.manufacturers),
            device_types=tuple(row.device_types),
            customer_form_bypassed=row.customer_form_bypassed,
            created_at=_utc(row.created_at),
            expires_at=_utc(row.expires_at),
            ended_at=from_db_time(row.ended_at),
            error=row.error,
        )

    def insert_authorization_attempt(
        self,
        *,
        attempt_id: str,
        session_id: str,
        manufacturer: str,
        state_hash: str,
        code_verifier_sealed: bytes,
        now: datetime,
    ) -> None:
        self._c.execute(
            schema.authorization_attempts.insert(),
            dict(
                id=attempt_id,
                session_id=session_id,
                manufacturer=manufacturer,
                state_hash=state_hash,
                code_verifier_sealed=code_verifier_sealed,
                created_at=to_db_time(now),
            ),
        )

    def get_authorization_attempt(self, attempt_id: str) -> AuthorizationAttempt | None:
        a = schema.authorization_attempts.c
        row = (
            self._c.execute(sa.select(schema.authorization_attempts).where(a.id == attempt_id))
        ).first()
        if row is None:
            return None
        return AuthorizationAttempt(
            id=row.id,
            session_id=row.session_id,
            manufacturer=row.manufacturer,
            state_hash=row.state_hash,
            code_verifier_sealed=row.code_verifier_sealed,
            used_at=from_db_time(row.used_at),
        )

    def use_authorization_attempt(self, attempt_id: str, now: datetime) -> bool:
        """Marks a state as used; False when it already was. A used state stays refused."""
        a = schema.authorization_attempts.c
        result = self._c.execute(
            schema.authorization_attempts.update()
            .where(a.id == attempt_id, a.used_at.is_(None))
            .values(used_at=to_db_time(now))
        )
        return result.rowcount == 1

    def claim_session_callback(
        self, session_id: str, now: datetime, stale_before: datetime
    ) -> bool:
        """The atomic claim: True for exactly one caller while the session is pending,
        unexpired and not claimed (a claim older than ``stale_before`` is abandoned)."""
        s = schema.connect_sessions.c
        result = self._c.execute(
            schema.connect_sessions.update()
            .where(
                s.id == session_id,
                s.status == SessionStatus.PENDING.value,
                s.expires_at > to_db_time(now),
                sa.or_(
                    s.callback_claimed_at.is_(None),
                    s.callback_claimed_at < to_db_time(stale_before),
                ),
            )
            .values(callback_claimed_at=to_db_time(now))
        )
        return result.rowcount == 1

    def release_session_callback(self, session_id: str) -> None:
        """After a retryable failure: the session stays open for a new attempt."""
        self._c.execute(
            schema.connect_sessions.update()
            .where(schema.connect_sessions.c.id == session_id)
            .values(callback_claimed_at=None)
        )

    def end_session(
        self,
        session_id: str,
        *,
        status: SessionStatus,
        now: datetime,
        error: str = "",
        connection_id: str | None = None,
    ) -> None:
        self._c.execute(
            schema.connect_sessions.update()
            .where(schema.connect_sessions.c.id == session_id)
            .values(
                status=status.value,
                ended_at=to_db_time(now),
                error=error,
                connection_id=connection_id,
                callback_claimed_at=None,
            )
        )

    def find_connection_id(self, org_id: str, customer_id: str, manufacturer: str) -> str | None:
        m = schema.manufacturer_connections.c
        return (
            self._c.execute(
                sa.select(m.id).where(
                    m.organization_id == org_id,
                    m.customer_id == customer_id,
                    m.manufacturer == manufacturer,
                )
            )
        ).scalar()

    def save_connection(
        self,
        *,
        new_id: str,
        org_id: str,
        customer_id: str,
        manufacturer: str,
        seal_tokens: Callable[[str], tuple[bytes, bytes | None]],
        token_expires_at: datetime | None,
        scope: str,
        now: datetime,
    ) -> str:
        """Creates or refreshes the customer's connection to ``manufacturer``; returns its
        id. ``seal_tokens(connection_id)`` seals the tokens bound to that id. Two sessions
        completing at once for one customer and manufacturer (replicas on PostgreSQL)
        meet at the unique constraint: the later one updates the row the first created."""
        connection_id = self.find_connection_id(org_id, customer_id, manufacturer)
        if connection_id is None:
            access, refresh = seal_tokens(new_id)
            try:
                with self._c.begin_nested():
                    self._c.execute(
                        schema.manufacturer_connections.insert(),
                        dict(
                            id=new_id,
                            organization_id=org_id,
                            customer_id=customer_id,
                            manufacturer=manufacturer,
                            status="active",
                            access_token_sealed=access,
                            refresh_token_sealed=refresh,
                            token_expires_at=to_db_time(token_expires_at)
                            if token_expires_at
                            else None,
                            scope=scope,
                            created_at=to_db_time(now),
                            updated_at=to_db_time(now),
                        ),
                    )
                return new_id
            except IntegrityError:
                connection_id = self.find_connection_id(org_id, customer_id, manufacturer)
                if connection_id is None:
                    raise
        access, refresh = seal_tokens(connection_id)
        self._c.execute(
            schema.manufacturer_connections.update()
            .where(schema.manufacturer_connections.c.id == connection_id)
            .values(
                status="active",
                access_token_sealed=access,
                refresh_token_sealed=refresh,
                token_expires_at=to_db_time(token_expires_at) if token_expires_at else None,
                scope=scope,
                updated_at=to_db_time(now),
            )
        )
        return connection_id

    def count_connected_devices(self, org_id: str, customer_id: str) -> int:
        d = schema.devices.c
        result = self._c.execute(
            sa.select(sa.func.count())
            .select_from(schema.devices)
            .where(
                d.organization_id == org_id, d.customer_id == customer_id, d.status == "connected"
            )
        )
        return int(result.scalar_one())

    def save_devices(
        self,
        *,
        org_id: str,
        customer_id: str,
        site_id: str | None,
        connection_id: str,
        manufacturer: str,
        reference_id: str,
        tags: tuple[str, ...],
        devices: list[ConnectedDevice],
        new_ids: list[str],
        now: datetime,
    ) -> list[str]:
        """Inserts new devices and refreshes known ones (matched by the manufacturer's id
        within the connection), so reconnecting never duplicates. Returns the device ids."""
        d = schema.devices.c
        existing = {
            row.external_id: row.id
            for row in self._c.execute(
                sa.select(d.id, d.external_id).where(d.connection_id == connection_id)
            )
        }
        ids = []
        for device, new_id in zip(devices, new_ids, strict=True):
            values = {
                "customer_id": customer_id,
                "site_id": site_id,
                "type": device.type,
                "model": device.model,
                "serial_number": device.serial_number,
                "name": device.name,
                "reference_id": reference_id,
                "tags": list(tags),
                "status": "connected",
                "updated_at": to_db_time(now),
            }
            device_id = existing.get(device.external_id, "")
            if not device_id:
                try:
                    with self._c.begin_nested():
                        self._c.execute(
                            schema.devices.insert(),
                            dict(
                                id=new_id,
                                organization_id=org_id,
                                connection_id=connection_id,
                                manufacturer=manufacturer,
                                external_id=device.external_id,
                                created_at=to_db_time(now),
                                **values,
                            ),
                        )
                    device_id = new_id
                except IntegrityError:
                    # A concurrent completion stored this device first: refresh it.
                    device_id = self._c.execute(
                        sa.select(d.id).where(
                            d.connection_id == connection_id, d.external_id == device.external_id
                        )
                    ).scalar_one()
            if device_id != new_id:
                self._c.execute(schema.devices.update().where(d.id == device_id).values(**values))
            ids.append(device_id)
        return ids

    def insert_scoped_key(
        self,
        *,
        key_id: str,
        org_id: str,
        key_hash: str,
        hint: str,
        customer_id: str,
        connection_id: str,
        now: datetime,
    ) -> None:
        self._c.execute(
            schema.api_keys.insert(),
            dict(
                id=key_id,
                organization_id=org_id,
                kind=KeyKind.SCOPED.value,
                key_hash=key_hash,
                hint=hint,
                customer_id=customer_id,
                connection_id=connection_id,
                created_at=to_db_time(now),
            ),
        )

    # Idempotency -------------------------------------------------------------------------

    def get_idempotent_response(
        self, *, org_id: str, method: str, request_id: str, since: datetime
    ) -> StoredIdempotentResponse | None:
        i = schema.idempotency_keys.c
        row = (
            self._c.execute(
                sa.select(i.fingerprint, i.response_sealed, i.created_at).where(
                    i.organization_id == org_id,
                    i.method == method,
                    i.request_id == request_id,
                    i.created_at >= to_db_time(since),
                )
            )
        ).first()
        if row is None:
            return None
        return StoredIdempotentResponse(row.fingerprint, row.response_sealed, _utc(row.created_at))

    def put_idempotent_response(
        self,
        *,
        org_id: str,
        method: str,
        request_id: str,
        fingerprint: str,
        response_sealed: bytes,
        now: datetime,
        expired_before: datetime,
    ) -> None:
        """Stores the first response. A stale row (older than ``expired_before``) under the
        same id is replaced; a live one raises ``IdempotencyConflict``."""
        i = schema.idempotency_keys.c
        self._c.execute(
            schema.idempotency_keys.delete().where(
                i.organization_id == org_id,
                i.method == method,
                i.request_id == request_id,
                i.created_at < to_db_time(expired_before),
            )
        )
        try:
            self._c.execute(
                schema.idempotency_keys.insert(),
                dict(
                    organization_id=org_id,
                    method=method,
                    request_id=request_id,
                    fingerprint=fingerprint,
                    response_sealed=response_sealed,
                    created_at=to_db_time(now),
                ),
            )
        except IntegrityError as exc:
            # The transaction is now unusable on PostgreSQL; the caller rolls it back.
            raise IdempotencyConflict() from exc


class Store:
    """Runs units of work on a ``Database``: ``await store.write(work)`` calls
    ``work(tx)``, a plain function, inside one transaction, and returns its result.

    Units of work are synchronous on purpose: on SQLite the whole unit runs on the
    database's writer thread without returning to the event loop between statements, which
    keeps the single write lock held for microseconds rather than for event-loop turns."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def write(self, work: Callable[[Transaction], T]) -> T:
        return await self.database.run(lambda c: work(Transaction(c)), write=True)

    async def read(self, work: Callable[[Transaction], T]) -> T:
        return await self.database.run(lambda c: work(Transaction(c)), write=False)

    async def close(self) -> None:
        await self.database.close()
