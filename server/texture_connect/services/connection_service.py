"""ConnectionService: decode, apply the domain rules inside one transaction, encode."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from grpc import aio

from texture.connect.v1 import connection_pb2, connection_pb2_grpc
from texture_connect.crypto import Sealer
from texture_connect.domain import ids
from texture_connect.domain.catalog import AuthKind, Catalog, Manufacturer
from texture_connect.domain.connect_request import (
    ConnectionRequest,
    CreateConnectionInput,
    CustomerInfoInput,
    LocationInput,
    Mode,
    customer_info_document,
    validate_create_connection,
)
from texture_connect.domain.errors import FieldViolation, Reason, ServiceError, fail, invalid
from texture_connect.domain.keys import KeyKind, hash_key
from texture_connect.domain.records import ConnectSession, Customer, Organization, SessionStatus
from texture_connect.domain.resolution import choose_customer, choose_site
from texture_connect.services import encode
from texture_connect.services.authorization import start_authorization
from texture_connect.services.connecting import link_context
from texture_connect.services.context import current_organization, current_principal
from texture_connect.storage import IdempotencyConflict, NewSession, Store, Transaction

IDEMPOTENCY_WINDOW = timedelta(hours=24)
CREATE_METHOD = "CreateConnection"

_MODES = {
    connection_pb2.CONNECT_MODE_UNSPECIFIED: Mode.STANDARD,
    connection_pb2.CONNECT_MODE_STANDARD: Mode.STANDARD,
    connection_pb2.CONNECT_MODE_HEADLESS: Mode.HEADLESS,
}
_MODE_NAMES = {
    Mode.STANDARD: connection_pb2.CONNECT_MODE_STANDARD,
    Mode.HEADLESS: connection_pb2.CONNECT_MODE_HEADLESS,
}
_STATUSES = {
    SessionStatus.PENDING: connection_pb2.CONNECT_SESSION_STATUS_PENDING,
    SessionStatus.COMPLETED: connection_pb2.CONNECT_SESSION_STATUS_COMPLETED,
    SessionStatus.FAILED: connection_pb2.CONNECT_SESSION_STATUS_FAILED,
    SessionStatus.EXPIRED: connection_pb2.CONNECT_SESSION_STATUS_EXPIRED,
}


def decode_create_request(request: connection_pb2.CreateConnectionRequest) -> CreateConnectionInput:
    mode = _MODES.get(request.mode)
    if mode is None:
        raise invalid(
            [FieldViolation("mode", "must be CONNECT_MODE_STANDARD or CONNECT_MODE_HEADLESS")]
        )
    info = None
    if request.HasField("customer_info"):
        ci = request.customer_info
        location = None
        if ci.HasField("location"):
            loc = ci.location
            location = LocationInput(
                street_one=loc.street_one,
                street_two=loc.street_two,
                city=loc.city,
                state=loc.state,
                postal_code=loc.postal_code,
                country=loc.country,
            )
        info = CustomerInfoInput(ci.first_name, ci.last_name, ci.email, ci.phone, location)
    return CreateConnectionInput(
        redirect_url=request.redirect_url,
        reference_id=request.reference_id,
        tags=tuple(request.tags),
        client_name=request.client_name,
        customer_id=request.customer_id,
        site_id=request.site_id,
        mode=mode,
        manufacturers=tuple(request.manufacturer_filters.manufacturers),
        device_types=tuple(request.manufacturer_filters.device_types),
        customer_info=info,
        request_id=request.request_id,
    )


def _prefill(valid: ConnectionRequest) -> dict[str, Any] | None:
    """What the hosted customer form starts from (JSON names, as the caller sent them)."""
    return customer_info_document(valid.contact, valid.address, omit_empty=True) or None


@dataclass(frozen=True)
class ConnectionSettings:
    public_url: str
    callback_url: str
    session_ttl: timedelta


class ConnectionService(connection_pb2_grpc.ConnectionServiceServicer):
    def __init__(
        self,
        *,
        store: Store,
        catalog: Catalog,
        sealer: Sealer,
        settings: ConnectionSettings,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._catalog = catalog
        self._sealer = sealer
        self._settings = settings
        self._clock = clock

    async def CreateConnection(
        self, request: connection_pb2.CreateConnectionRequest, context: aio.ServicerContext
    ) -> connection_pb2.CreateConnectionResponse:
        principal = current_principal()
        organization = current_organization()
        decoded = decode_create_request(request)
        publishable = principal.key_kind is KeyKind.CONNECT
        if publishable and (decoded.customer_id or decoded.site_id):
            # A connect key is public: it must not be able to open a flow on someone
            # else's customer (and end up holding a scoped key for their devices).
            raise fail(
                "CONNECT_KEY_NOT_ALLOWED",
                "customerId and siteId need a secret key.",
                field="customerId" if decoded.customer_id else "siteId",
            )
        if decoded.mode is Mode.HEADLESS:
            if principal.key_kind is KeyKind.CONNECT:
                raise fail("CONNECT_KEY_NOT_ALLOWED")
            if not organization.headless_enabled:
                raise fail("HEADLESS_NOT_ENABLED")
        valid = validate_create_connection(decoded, self._catalog, organization.name)
        fingerprint = hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()

        def create(tx: Transaction) -> connection_pb2.CreateConnectionResponse:
            now = self._clock()
            if valid.request_id:
                replay = self._replay(tx, organization, valid.request_id, fingerprint, now)
                if replay is not None:
                    return replay
            response = self._create(tx, organization, valid, now, publishable=publishable)
            if valid.request_id:
                tx.put_idempotent_response(
                    org_id=organization.id,
                    method=CREATE_METHOD,
                    request_id=valid.request_id,
                    fingerprint=fingerprint,
                    response_sealed=self._sealer.seal(
                        response.SerializeToString(),
                        self._idempotency_context(organization, valid.request_id),
                    ),
                    now=now,
                    expired_before=now - IDEMPOTENCY_WINDOW,
                )
            return response

        try:
            return await self._store.write(create)
        except IdempotencyConflict:
            # A concurrent request with the same requestId committed first (another
            # replica, on PostgreSQL): answer with its response.
            replay = await self._store.read(
                lambda tx: self._replay(
                    tx, organization, valid.request_id, fingerprint, self._clock()
                )
            )
            if replay is None:
                raise fail("INTERNAL") from None
            return replay

    @staticmethod
    def _idempotency_context(organization: Organization, request_id: str) -> str:
        return f"idempotency:{organization.id}:{CREATE_METHOD}:{request_id}"

    def _replay(
        self,
        tx: Transaction,
        organization: Organization,
        request_id: str,
        fingerprint: str,
        now: datetime,
    ) -> connection_pb2.CreateConnectionResponse | None:
        stored = tx.get_idempotent_response(
            org_id=organization.id,
            method=CREATE_METHOD,
            request_id=request_id,
            since=now - IDEMPOTENCY_WINDOW,
        )
        if stored is None:
            return None
        if stored.fingerprint != fingerprint:
            error = fail("IDEMPOTENCY_KEY_REUSED")
            raise ServiceError(
                error.reason,
                error.message,
                (FieldViolation("requestId", "was already used with a different request"),),
            )
        response = connection_pb2.CreateConnectionResponse()
        response.ParseFromString(
            self._sealer.open(
                stored.response_sealed, self._idempotency_context(organization, request_id)
            )
        )
        return response

    def _create(
        self,
        tx: Transaction,
        organization: Organization,
        valid: ConnectionRequest,
        now: datetime,
        *,
        publishable: bool = False,
    ) -> connection_pb2.CreateConnectionResponse:
        """``publishable``: the request came with a connect key, which never resolves to (or
        updates) an existing customer: each such session gets a customer of its own."""
        org_id = organization.id
        by_id = tx.get_customer(org_id, valid.customer_id) if valid.customer_id else None
        if valid.customer_id and by_id is None:
            raise fail("CUSTOMER_NOT_FOUND", field="customerId")
        explicit_site = tx.get_site(org_id, valid.site_id) if valid.site_id else None
        if valid.site_id and explicit_site is None:
            raise fail("SITE_NOT_FOUND", field="siteId")
        site_owner = None
        if explicit_site is not None and by_id is None:
            site_owner = tx.get_customer(org_id, explicit_site.customer_id)
        by_email = by_reference = None
        if by_id is None and site_owner is None and not publishable:
            if valid.contact.email:
                by_email = tx.find_customer_by_email(org_id, valid.contact.email)
            if by_email is None and valid.reference_id:
                by_reference = tx.find_customer_by_reference(org_id, valid.reference_id)
        choice = choose_customer(
            valid,
            by_id=by_id,
            site_owner=site_owner,
            by_email=by_email,
            by_reference=by_reference,
        )
        if choice.existing is None:
            contact = choice.contact
            customer = Customer(
                id=ids.new_id(),
                organization_id=org_id,
                reference_id=choice.reference_id,
                first_name=contact.first_name,
                last_name=contact.last_name,
                email=contact.email,
                phone=contact.phone,
            )
            tx.insert_customer(customer, now)
            sites = []
        else:
            customer = choice.existing
            if choice.changed:
                tx.update_customer_contact(customer, now)
            sites = tx.list_customer_sites(org_id, customer.id)
        site_choice = choose_site(
            valid, customer=customer, explicit=explicit_site, customer_sites=sites
        )
        site = site_choice.existing
        if site is None and site_choice.create_at is not None:
            site = tx.insert_site(
                site_id=ids.new_id(),
                org_id=org_id,
                customer_id=customer.id,
                address=site_choice.create_at,
                now=now,
            )

        link_token = ids.new_link_token()
        session_id = ids.new_id()
        expires_at = now + self._settings.session_ttl
        tx.insert_session(
            NewSession(
                id=session_id,
                organization_id=org_id,
                link_token_hash=hash_key(link_token),
                mode=valid.mode.value,
                customer_id=customer.id,
                site_id=site.id if site else None,
                reference_id=choice.reference_id,
                tags=valid.tags,
                client_name=valid.client_name,
                redirect_url=valid.redirect_url,
                manufacturers=tuple(m.slug for m in valid.offered) if valid.manufacturers else (),
                device_types=valid.device_types,
                customer_info=_prefill(valid),
                customer_form_bypassed=valid.customer_form_bypassed,
                created_at=now,
                expires_at=expires_at,
                link_token_sealed=self._sealer.seal_text(link_token, link_context(session_id)),
            )
        )
        response = connection_pb2.CreateConnectionResponse(
            customer_id=customer.id,
            link_url=f"{self._settings.public_url}/{link_token}",
            link_token=link_token,
            link_session_id=session_id,
            expires_at=encode.timestamp(expires_at),
            site_id=site.id if site else "",
        )
        if valid.mode is Mode.HEADLESS:
            response.authorization.CopyFrom(
                self._start_authorization(tx, session_id, valid.headless_manufacturer, now)
            )
        return response

    def _start_authorization(
        self, tx: Transaction, session_id: str, manufacturer: Manufacturer, now: datetime
    ) -> connection_pb2.Authorization:
        return connection_pb2.Authorization(
            type=connection_pb2.AUTHORIZATION_TYPE_OAUTH_REDIRECT,
            url=start_authorization(
                tx,
                self._sealer,
                session_id=session_id,
                manufacturer=manufacturer,
                callback_url=self._settings.callback_url,
                now=now,
            ),
        )

    async def StartAuthorization(
        self, request: connection_pb2.StartAuthorizationRequest, context: aio.ServicerContext
    ) -> connection_pb2.StartAuthorizationResponse:
        organization = current_organization()
        if not request.link_session_id:
            raise invalid([FieldViolation("linkSessionId", "is required")])

        def start(tx: Transaction) -> connection_pb2.Authorization:
            now = self._clock()
            session = tx.get_session(organization.id, request.link_session_id)
            if session is None:
                raise fail("CONNECT_SESSION_NOT_FOUND", field="linkSessionId")
            if session.status_at(now) is not SessionStatus.PENDING:
                raise fail("CONNECT_SESSION_NOT_PENDING", status=session.status_at(now).value)
            offered = self._catalog.available(session.manufacturers, session.device_types)
            slug = request.manufacturer or (offered[0].slug if len(offered) == 1 else "")
            manufacturer = next((m for m in offered if m.slug == slug), None)
            if manufacturer is None or manufacturer.auth_kind is not AuthKind.OAUTH2:
                error = fail("MANUFACTURER_NOT_OFFERED")
                raise ServiceError(
                    error.reason,
                    error.message,
                    (FieldViolation("manufacturer", error.message),),
                )
            return self._start_authorization(tx, session.id, manufacturer, now)

        authorization = await self._store.write(start)
        return connection_pb2.StartAuthorizationResponse(authorization=authorization)

    async def GetConnection(
        self, request: connection_pb2.GetConnectionRequest, context: aio.ServicerContext
    ) -> connection_pb2.GetConnectionResponse:
        organization = current_organization()
        if not request.link_session_id:
            raise invalid([FieldViolation("linkSessionId", "is required")])
        session = await self._store.read(
            lambda tx: tx.get_session(organization.id, request.link_session_id)
        )
        if session is None:
            raise fail("CONNECT_SESSION_NOT_FOUND", field="linkSessionId")
        return connection_pb2.GetConnectionResponse(session=self._encode(session))

    def _encode(self, session: ConnectSession) -> connection_pb2.ConnectSession:
        message = connection_pb2.ConnectSession(
            link_session_id=session.id,
            status=_STATUSES[session.status_at(self._clock())],
            mode=_MODE_NAMES[Mode(session.mode)],
            customer_id=session.customer_id,
            site_id=session.site_id,
            reference_id=session.reference_id,
            tags=session.tags,
            client_name=session.client_name,
            redirect_url=session.redirect_url,
            manufacturer_filters=connection_pb2.ManufacturerFilters(
                manufacturers=session.manufacturers, device_types=session.device_types
            ),
            customer_form_bypassed=session.customer_form_bypassed,
            create_time=encode.timestamp(session.created_at),
            expires_at=encode.timestamp(session.expires_at),
            error=session.error,
        )
        if session.ended_at is not None:
            message.end_time.CopyFrom(encode.timestamp(session.ended_at))
        return message


__all__ = ["ConnectionService", "ConnectionSettings", "Reason", "decode_create_request"]
