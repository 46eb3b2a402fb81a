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
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from texture_connect.domain.addresses import Address, normalized_address_key
from texture_connect.domain.connect_request import Contact
from texture_connect.domain.keys import KeyKind
from texture_connect.domain.records import (
    AuthorizationAttempt,
    ConnectedDevice,
    ConnectionStatus,
    ConnectSession,
    Customer,
    Device,
    DeviceFilter,
    ManufacturerConnection,
    Organization,
    Principal,
    SessionStatus,
    Site,
    StoredTokens,
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
    link_token_sealed: bytes | None = None
    flow_step: str = "welcome"


class IdempotencyConflict(Exception):
    """Another transaction stored a response under the same request id first."""


# Hot-path statements, built once: SQLAlchemy then skips rebuilding and re-keying the
# expression on every call, which dominated the cost of CreateConnection.
_k, _o, _cu, _si = schema.api_keys, schema.organizations, schema.customers, schema.sites
_mc, _d, _dt = schema.manufacturer_connections, schema.devices, schema.device_tags
_ACTIVE = ConnectionStatus.ACTIVE.value
_DISCONNECTED = ConnectionStatus.DISCONNECTED.value
# A scoped key opens nothing once its connection is disconnected (disconnecting also
# revokes it; this holds even for a key minted while a disconnect was under way).
_PRINCIPAL_BY_KEY_HASH = (
    sa.select(
        _k.c.id,
        _k.c.kind,
        _k.c.customer_id,
        _k.c.connection_id,
        _o.c.id.label("org_id"),
        _o.c.name,
        _o.c.headless_enabled,
    )
    .join(_o, _o.c.id == _k.c.organization_id)
    .outerjoin(
        _mc,
        sa.and_(_mc.c.id == _k.c.connection_id, _mc.c.organization_id == _k.c.organization_id),
    )
    .where(
        _k.c.key_hash == sa.bindparam("key_hash"),
        _k.c.revoked_at.is_(None),
        sa.or_(_k.c.kind != KeyKind.SCOPED.value, _mc.c.status != _DISCONNECTED),
    )
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
_DEVICE_BY_ID = sa.select(_d).where(
    _d.c.organization_id == sa.bindparam("org_id"), _d.c.id == sa.bindparam("device_id")
)
_TAG_CHUNK = 1000
_TAGS_OF_DEVICES = sa.select(_dt.c.device_id, _dt.c.tag).where(
    _dt.c.device_id.in_(sa.bindparam("device_ids", expanding=True))
)
# Adding a tag a device already has is a no-op, also when two transactions add it at once.
_ADD_TAGS = {
    "sqlite": sqlite.insert(_dt).on_conflict_do_nothing(),
    "postgresql": postgresql.insert(_dt).on_conflict_do_nothing(),
}
_CONNECTION_BY_ID = sa.select(_mc).where(
    _mc.c.organization_id == sa.bindparam("org_id"), _mc.c.id == sa.bindparam("connection_id")
)
_TOKENS_BY_CONNECTION = sa.select(_mc).where(_mc.c.id == sa.bindparam("connection_id"))


def _newest_first(
    statement: sa.Select[Any],
    created_at: sa.ColumnElement[datetime],
    row_id: sa.ColumnElement[str],
    *,
    limit: int,
    after: tuple[datetime, str] | None,
) -> sa.Select[Any]:
    """Keyset pagination, newest first: ``after`` is the (created_at, id) of the previous
    page's last item, and the id breaks ties between equal times."""
    if after is not None:
        at, last_id = to_db_time(after[0]), after[1]
        statement = statement.where(
            sa.or_(created_at < at, sa.and_(created_at == at, row_id < last_id))
        )
    return statement.order_by(created_at.desc(), row_id.desc()).limit(limit)


def _device(row: Any, tags: list[str]) -> Device:
    return Device(
        id=row.id,
        organization_id=row.organization_id,
        customer_id=row.customer_id,
        site_id=row.site_id or "",
        connection_id=row.connection_id,
        manufacturer=row.manufacturer,
        external_id=row.external_id,
        type=row.type,
        model=row.model,
        serial_number=row.serial_number,
        name=row.name,
        reference_id=row.reference_id,
        tags=tuple(sorted(tags)),
        status=row.status,
        created_at=_utc(row.created_at),
        updated_at=_utc(row.updated_at),
    )


def _connection(row: Any) -> ManufacturerConnection:
    return ManufacturerConnection(
        id=row.id,
        organization_id=row.organization_id,
        customer_id=row.customer_id,
        manufacturer=row.manufacturer,
        status=ConnectionStatus(row.status),
        scope=row.scope,
        token_expires_at=from_db_time(row.token_expires_at),
        created_at=_utc(row.created_at),
        updated_at=_utc(row.updated_at),
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
        """The organization behind an active (unrevoked) key, by the key's hash; for a
        scoped key also its customer and connection. A scoped key whose connection is
        disconnected is no key at all."""
        row = self._c.execute(_PRINCIPAL_BY_KEY_HASH, {"key_hash": key_hash}).first()
        if row is None:
            return None
        return Principal(
            KeyKind(row.kind),
            row.id,
            Organization(row.org_id, row.name, row.headless_enabled),
            customer_id=row.customer_id or "",
            connection_id=row.connection_id or "",
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
            created_at=_utc(row.created_at),
            updated_at=_utc(row.updated_at),
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

    def list_customers(
        self,
        org_id: str,
        *,
        reference_id: str,
        email: str,
        limit: int,
        after: tuple[datetime, str] | None,
    ) -> list[Customer]:
        """Newest first. Empty filters match everything; ``email`` ignores case."""
        statement = sa.select(_cu).where(_cu.c.organization_id == org_id)
        if reference_id:
            statement = statement.where(_cu.c.reference_id == reference_id)
        if email:
            statement = statement.where(_cu.c.email_key == email.strip().lower())
        statement = _newest_first(statement, _cu.c.created_at, _cu.c.id, limit=limit, after=after)
        return [self._customer(row) for row in self._c.execute(statement)]

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
            created_at=_utc(row.created_at),
        )

    def get_site(self, org_id: str, site_id: str) -> Site | None:
        row = self._c.execute(_SITE_BY_ID, {"org_id": org_id, "site_id": site_id}).first()
        return self._site(row) if row else None

    def list_customer_sites(self, org_id: str, customer_id: str) -> list[Site]:
        rows = self._c.execute(_CUSTOMER_SITES, {"org_id": org_id, "customer_id": customer_id})
        return [self._site(row) for row in rows]

    def list_sites(
        self, org_id: str, *, customer_id: str, limit: int, after: tuple[datetime, str] | None
    ) -> list[Site]:
        """Newest first; an empty ``customer_id`` lists every customer's sites."""
        statement = sa.select(_si).where(_si.c.organization_id == org_id)
        if customer_id:
            statement = statement.where(_si.c.customer_id == customer_id)
        statement = _newest_first(statement, _si.c.created_at, _si.c.id, limit=limit, after=after)
        return [self._site(row) for row in self._c.execute(statement)]

    def sites_of_customers(self, org_id: str, customer_ids: list[str]) -> dict[str, list[Site]]:
        """Each given customer's sites, oldest first; every given id is a key (a customer
        without sites, or of another organization, maps to an empty list)."""
        result: dict[str, list[Site]] = {customer_id: [] for customer_id in customer_ids}
        if not customer_ids:
            return result
        rows = self._c.execute(
            sa.select(_si)
            .where(_si.c.organization_id == org_id, _si.c.customer_id.in_(set(customer_ids)))
            .order_by(_si.c.created_at, _si.c.id)
        )
        for row in rows:
            result[row.customer_id].append(self._site(row))
        return result

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
        return Site(site_id, org_id, customer_id, address, key, _utc(to_db_time(now)))

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
                link_token_sealed=session.link_token_sealed,
                flow_step=session.flow_step,
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
        return self._session(row) if row else None

    def get_session_by_link_token_hash(self, link_token_hash: str) -> ConnectSession | None:
        row = self._c.execute(
            sa.select(schema.connect_sessions).where(
                schema.connect_sessions.c.link_token_hash == link_token_hash
            )
        ).first()
        return self._session(row) if row else None

    @staticmethod
    def _session(row: Any) -> ConnectSession:
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
            customer_info=row.customer_info,
            flow_step=row.flow_step,
            flow_manufacturer=row.flow_manufacturer,
            flow_error=row.flow_error,
            link_token_sealed=row.link_token_sealed,
            pending_tokens_sealed=row.pending_tokens_sealed,
            pending_devices=tuple(row.pending_devices or ()),
            otp_challenge_sealed=row.otp_challenge_sealed,
        )

    _FLOW_FIELDS = frozenset(
        {
            "flow_step",
            "flow_manufacturer",
            "flow_error",
            "pending_tokens_sealed",
            "pending_devices",
            "otp_challenge_sealed",
            "customer_info",
            "customer_form_bypassed",
            "site_id",
        }
    )

    def update_session_flow(self, session_id: str, **values: Any) -> bool:
        """Moves a pending session's hosted flow along; False when the session is no longer
        pending (it completed, failed or was claimed by a callback meanwhile)."""
        unknown = set(values) - self._FLOW_FIELDS
        if unknown:
            raise ValueError(f"not flow fields: {sorted(unknown)}")
        s = schema.connect_sessions.c
        result = self._c.execute(
            schema.connect_sessions.update()
            .where(s.id == session_id, s.status == SessionStatus.PENDING.value)
            .values(**values)
        )
        return result.rowcount == 1

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
    ) -> bool:
        """Ends a pending session; False when it had already ended (the row is locked
        by the UPDATE, so two concurrent endings cannot both succeed)."""
        result = self._c.execute(
            schema.connect_sessions.update()
            .where(
                schema.connect_sessions.c.id == session_id,
                schema.connect_sessions.c.status == SessionStatus.PENDING.value,
            )
            .values(
                status=status.value,
                ended_at=to_db_time(now),
                error=error,
                connection_id=connection_id,
                callback_claimed_at=None,
                # Nothing secret outlives the flow.
                flow_step=status.value,
                flow_error=error,
                pending_tokens_sealed=None,
                pending_devices=None,
                otp_challenge_sealed=None,
            )
        )
        return result.rowcount == 1

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
        id. ``seal_tokens(connection_id)`` seals the tokens bound to that id. Refreshing
        repairs a connection that needs re-authorization or was disconnected: it is active
        again, its token generation moves on and any refresh claim is dropped. Two sessions
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
                            status=_ACTIVE,
                            access_token_sealed=access,
                            refresh_token_sealed=refresh,
                            token_expires_at=to_db_time(token_expires_at)
                            if token_expires_at
                            else None,
                            scope=scope,
                            created_at=to_db_time(now),
                            updated_at=to_db_time(now),
                            token_generation=0,
                            refresh_claimed_at=None,
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
                status=_ACTIVE,
                access_token_sealed=access,
                refresh_token_sealed=refresh,
                token_expires_at=to_db_time(token_expires_at) if token_expires_at else None,
                scope=scope,
                updated_at=to_db_time(now),
                token_generation=_mc.c.token_generation + 1,
                refresh_claimed_at=None,
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
        within the connection), so reconnecting never duplicates. ``tags`` are added to
        each device's tags (a reconnect never removes any). Returns the device ids."""
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
        self._add_tags(ids, tags)
        return ids

    def _add_tags(self, device_ids: list[str], tags: tuple[str, ...]) -> None:
        rows = [
            {"device_id": device_id, "tag": tag}
            for device_id in dict.fromkeys(device_ids)
            for tag in dict.fromkeys(tags)
        ]
        if rows:
            self._c.execute(_ADD_TAGS[self._c.dialect.name], rows)

    # Devices -----------------------------------------------------------------------------

    def _devices(self, rows: Any) -> list[Device]:
        """Devices from their rows, with their tags loaded in one more query."""
        rows = list(rows)
        tags: dict[str, list[str]] = {row.id: [] for row in rows}
        device_ids = list(tags)
        # In chunks: a page is one query, and the lists behind a customers page stay far
        # below the engines' limits on bound parameters.
        for start in range(0, len(device_ids), _TAG_CHUNK):
            chunk = device_ids[start : start + _TAG_CHUNK]
            for tag_row in self._c.execute(_TAGS_OF_DEVICES, {"device_ids": chunk}):
                tags[tag_row.device_id].append(tag_row.tag)
        return [_device(row, tags[row.id]) for row in rows]

    def get_device(self, org_id: str, device_id: str) -> Device | None:
        rows = self._devices(
            self._c.execute(_DEVICE_BY_ID, {"org_id": org_id, "device_id": device_id})
        )
        return rows[0] if rows else None

    def list_devices(
        self,
        org_id: str,
        device_filter: DeviceFilter,
        *,
        limit: int,
        after: tuple[datetime, str] | None,
    ) -> list[Device]:
        """Newest first (created_at, then id, descending); ``after`` is the (created_at, id)
        of the previous page's last device. Empty filter fields match everything."""
        f = device_filter
        statement = sa.select(_d).where(_d.c.organization_id == org_id)
        for column, value in (
            (_d.c.customer_id, f.customer_id),
            (_d.c.site_id, f.site_id),
            (_d.c.reference_id, f.reference_id),
            (_d.c.manufacturer, f.manufacturer),
            (_d.c.type, f.device_type),
        ):
            if value:
                statement = statement.where(column == value)
        if f.tag:
            statement = statement.where(
                sa.exists().where(_dt.c.device_id == _d.c.id, _dt.c.tag == f.tag)
            )
        statement = _newest_first(statement, _d.c.created_at, _d.c.id, limit=limit, after=after)
        return self._devices(self._c.execute(statement))

    def devices_of_customer(self, org_id: str, customer_id: str) -> list[Device]:
        """Oldest first."""
        return self.devices_of_customers(org_id, [customer_id])[customer_id]

    def devices_of_customers(self, org_id: str, customer_ids: list[str]) -> dict[str, list[Device]]:
        """Each given customer's devices, oldest first; every given id is a key."""
        result: dict[str, list[Device]] = {customer_id: [] for customer_id in customer_ids}
        if not customer_ids:
            return result
        rows = self._c.execute(
            sa.select(_d)
            .where(_d.c.organization_id == org_id, _d.c.customer_id.in_(set(customer_ids)))
            .order_by(_d.c.created_at, _d.c.id)
        )
        for device in self._devices(rows):
            result[device.customer_id].append(device)
        return result

    def devices_of_connection(self, org_id: str, connection_id: str) -> list[Device]:
        """Oldest first."""
        rows = self._c.execute(
            sa.select(_d)
            .where(_d.c.organization_id == org_id, _d.c.connection_id == connection_id)
            .order_by(_d.c.created_at, _d.c.id)
        )
        return self._devices(rows)

    def set_device_tags(
        self,
        org_id: str,
        device_id: str,
        add: tuple[str, ...],
        remove: tuple[str, ...],
        now: datetime,
    ) -> Device | None:
        """Adds ``add`` and then removes ``remove`` (a tag named in both ends up removed),
        bumps the device's updated_at and returns the device; None when the organization
        has no such device. Adding a tag the device has, or removing one it lacks, is
        no error."""
        # The update first: it finds the device and, on PostgreSQL, locks its row, so
        # concurrent edits of one device's tags run one after the other.
        touched = self._c.execute(
            schema.devices.update()
            .where(_d.c.organization_id == org_id, _d.c.id == device_id)
            .values(updated_at=to_db_time(now))
        )
        if touched.rowcount != 1:
            return None
        self._add_tags([device_id], add)
        if remove:
            self._c.execute(
                schema.device_tags.delete().where(
                    _dt.c.device_id == device_id, _dt.c.tag.in_(set(remove))
                )
            )
        return self.get_device(org_id, device_id)

    # Connections: reading, token refresh, disconnect -------------------------------------

    def get_connection(self, org_id: str, connection_id: str) -> ManufacturerConnection | None:
        row = self._c.execute(
            _CONNECTION_BY_ID, {"org_id": org_id, "connection_id": connection_id}
        ).first()
        return _connection(row) if row else None

    def list_connections(
        self,
        org_id: str,
        *,
        customer_id: str,
        manufacturer: str,
        limit: int,
        after: tuple[datetime, str] | None,
    ) -> list[ManufacturerConnection]:
        """Newest first. Empty filters match everything."""
        statement = sa.select(_mc).where(_mc.c.organization_id == org_id)
        if customer_id:
            statement = statement.where(_mc.c.customer_id == customer_id)
        if manufacturer:
            statement = statement.where(_mc.c.manufacturer == manufacturer)
        statement = _newest_first(statement, _mc.c.created_at, _mc.c.id, limit=limit, after=after)
        return [_connection(row) for row in self._c.execute(statement)]

    def get_connection_tokens(self, connection_id: str) -> StoredTokens | None:
        """The sealed tokens, by connection id alone: for Texture's own use once the
        caller's organization has been checked."""
        row = self._c.execute(_TOKENS_BY_CONNECTION, {"connection_id": connection_id}).first()
        if row is None:
            return None
        return StoredTokens(
            connection_id=row.id,
            organization_id=row.organization_id,
            manufacturer=row.manufacturer,
            status=ConnectionStatus(row.status),
            access_token_sealed=row.access_token_sealed,
            refresh_token_sealed=row.refresh_token_sealed,
            token_expires_at=from_db_time(row.token_expires_at),
            token_generation=row.token_generation,
            refresh_claimed_at=from_db_time(row.refresh_claimed_at),
            token_refreshed_at=from_db_time(row.token_refreshed_at),
        )

    def claim_token_refresh(
        self, connection_id: str, generation: int, now: datetime, stale_before: datetime
    ) -> bool:
        """The atomic claim: True for exactly one caller while the connection is active,
        its tokens are still those of ``generation`` and nobody holds the claim (a claim
        older than ``stale_before`` is abandoned). Across replicas too: on PostgreSQL the
        losers' UPDATEs wait for the winner's row lock and then match nothing."""
        result = self._c.execute(
            schema.manufacturer_connections.update()
            .where(
                _mc.c.id == connection_id,
                _mc.c.token_generation == generation,
                _mc.c.status == _ACTIVE,
                sa.or_(
                    _mc.c.refresh_claimed_at.is_(None),
                    _mc.c.refresh_claimed_at < to_db_time(stale_before),
                ),
            )
            .values(refresh_claimed_at=to_db_time(now))
        )
        return result.rowcount == 1

    def store_refreshed_tokens(
        self,
        connection_id: str,
        *,
        access_token_sealed: bytes,
        refresh_token_sealed: bytes | None,
        token_expires_at: datetime | None,
        now: datetime,
        generation: int | None = None,
    ) -> bool:
        """Stores a refresh's result: a new generation, the claim released. With
        ``generation``, only if the tokens are still of that generation: a reconnect that
        landed meanwhile is never overwritten by the old grant's refresh. A refresh
        response without a refresh token keeps the stored one (``None`` keeps it). Only
        an active connection takes tokens: a refresh that lands after a disconnect (or
        after the connection was marked as needing re-authorization) stores nothing."""
        values: dict[str, Any] = dict(
            access_token_sealed=access_token_sealed,
            token_expires_at=to_db_time(token_expires_at) if token_expires_at else None,
            token_generation=_mc.c.token_generation + 1,
            refresh_claimed_at=None,
            token_refreshed_at=to_db_time(now),
            updated_at=to_db_time(now),
        )
        if refresh_token_sealed is not None:
            values["refresh_token_sealed"] = refresh_token_sealed
        conditions = [_mc.c.id == connection_id, _mc.c.status == _ACTIVE]
        if generation is not None:
            conditions.append(_mc.c.token_generation == generation)
        result = self._c.execute(
            schema.manufacturer_connections.update().where(*conditions).values(**values)
        )
        return result.rowcount == 1

    def release_token_refresh(self, connection_id: str, generation: int | None = None) -> None:
        """After a refresh failed for a passing reason: the next reader may try again.
        With ``generation``, only a claim on those tokens is released."""
        conditions = [_mc.c.id == connection_id]
        if generation is not None:
            conditions.append(_mc.c.token_generation == generation)
        self._c.execute(
            schema.manufacturer_connections.update()
            .where(*conditions)
            .values(refresh_claimed_at=None)
        )

    def mark_needs_reauthorization(
        self, connection_id: str, now: datetime, generation: int | None = None
    ) -> None:
        """The manufacturer refused the refresh token (invalid_grant). A disconnected
        connection stays disconnected; with ``generation``, a reconnect that landed
        meanwhile is left alone."""
        conditions = [_mc.c.id == connection_id, _mc.c.status == _ACTIVE]
        if generation is not None:
            conditions.append(_mc.c.token_generation == generation)
        self._c.execute(
            schema.manufacturer_connections.update()
            .where(*conditions)
            .values(
                status=ConnectionStatus.NEEDS_REAUTHORIZATION.value,
                refresh_claimed_at=None,
                token_generation=_mc.c.token_generation + 1,
                updated_at=to_db_time(now),
            )
        )

    def disconnect_connection(
        self, org_id: str, connection_id: str, now: datetime
    ) -> ManufacturerConnection | None:
        """Deletes the stored tokens, marks the connection and its devices disconnected
        and revokes the scoped keys minted for it; None when the organization has no such
        connection. Idempotent: disconnecting again changes nothing and returns the same
        record."""
        self._c.execute(
            schema.manufacturer_connections.update()
            .where(
                _mc.c.organization_id == org_id,
                _mc.c.id == connection_id,
                _mc.c.status != _DISCONNECTED,
            )
            .values(
                status=_DISCONNECTED,
                access_token_sealed=None,
                refresh_token_sealed=None,
                token_expires_at=None,
                refresh_claimed_at=None,
                token_generation=_mc.c.token_generation + 1,
                updated_at=to_db_time(now),
            )
        )
        connection = self.get_connection(org_id, connection_id)
        if connection is None:
            return None
        self._c.execute(
            schema.api_keys.update()
            .where(
                _k.c.organization_id == org_id,
                _k.c.connection_id == connection_id,
                _k.c.kind == KeyKind.SCOPED.value,
                _k.c.revoked_at.is_(None),
            )
            .values(revoked_at=to_db_time(now))
        )
        self._c.execute(
            schema.devices.update()
            .where(
                _d.c.organization_id == org_id,
                _d.c.connection_id == connection_id,
                _d.c.status != "disconnected",
            )
            .values(status="disconnected", updated_at=to_db_time(now))
        )
        return connection

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

    def revoke_scoped_key(self, org_id: str, key_hash: str, now: datetime) -> bool:
        """Revokes an active scoped key of the organization by its hash; False when there
        is none (unknown, another organization's, not scoped, or already revoked)."""
        result = self._c.execute(
            schema.api_keys.update()
            .where(
                _k.c.organization_id == org_id,
                _k.c.key_hash == key_hash,
                _k.c.kind == KeyKind.SCOPED.value,
                _k.c.revoked_at.is_(None),
            )
            .values(revoked_at=to_db_time(now))
        )
        return result.rowcount == 1

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
