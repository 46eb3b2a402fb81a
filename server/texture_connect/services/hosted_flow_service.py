"""HostedFlowService: the steps of the Texture-hosted Connect pages (standard mode).

The HTTP side renders pages; every decision and every piece of state is here, in the
session row, so the pages work across replicas and the HTTP side never opens the database.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn

from grpc import aio

from texture.connect.v1 import connection_pb2, hosted_flow_pb2, hosted_flow_pb2_grpc
from texture_connect.crypto import Sealer
from texture_connect.domain import hosted_flow as steps
from texture_connect.domain import ids
from texture_connect.domain.addresses import normalized_address_key
from texture_connect.domain.catalog import AuthKind, Catalog, Manufacturer
from texture_connect.domain.connect_request import (
    CustomerInfoInput,
    LocationInput,
    customer_info_document,
    validate_contact,
    validate_location,
)
from texture_connect.domain.errors import FieldViolation, Violations, fail, invalid
from texture_connect.domain.keys import hash_key
from texture_connect.domain.records import ConnectSession, Customer, SessionStatus
from texture_connect.domain.redirects import error_redirect
from texture_connect.domain.texture_errors import TEXTURE_ERRORS
from texture_connect.manufacturers.credentials import (
    CredentialSignInError,
    OtpChallenge,
    credential_client_secret,
    sign_in,
    submit_one_time_code,
)
from texture_connect.manufacturers.devices import DeviceInfo
from texture_connect.manufacturers.tokens import TokenSet
from texture_connect.services import encode
from texture_connect.services.authorization import start_authorization
from texture_connect.services.connecting import ConnectFailure, Connector
from texture_connect.storage import Store, Transaction

log = logging.getLogger("texture_connect.hosted")

_STEPS = {
    steps.WELCOME: hosted_flow_pb2.FLOW_STEP_WELCOME,
    steps.MANUFACTURER: hosted_flow_pb2.FLOW_STEP_MANUFACTURER,
    steps.CUSTOMER_INFO: hosted_flow_pb2.FLOW_STEP_CUSTOMER_INFO,
    steps.AUTHORIZE: hosted_flow_pb2.FLOW_STEP_AUTHORIZE,
    steps.ONE_TIME_CODE: hosted_flow_pb2.FLOW_STEP_ONE_TIME_CODE,
    steps.DEVICES: hosted_flow_pb2.FLOW_STEP_DEVICES,
}


_REQUIRED = "is required when a location is given"
# The customer form speaks to a person, not a developer.
_FRIENDLY = {
    ("location.streetOne", _REQUIRED): "Please enter your street address.",
    ("location.city", _REQUIRED): "Please enter your city.",
    ("location.state", _REQUIRED): "Please enter your state or region.",
    ("location.postalCode", _REQUIRED): "Please enter your postal code.",
    ("location.country", _REQUIRED): "Please enter your country, like US.",
    (
        "location.country",
        "must be an ISO 3166-1 alpha-2 country code, e.g. US",
    ): "Enter a two-letter country code, like US or CA.",
    ("email", "must be an email address like name@example.com"): (
        "Enter an email address like name@example.com."
    ),
    ("phone", "must be a phone number of 7 to 15 digits, e.g. 555-555-0100"): (
        "Enter a phone number with 7 to 15 digits, like 555-555-0100."
    ),
}


_CUSTOMER_MISTAKES = frozenset({"invalid_credentials", "invalid_otp", "challenge_expired"})


def _challenge_context(session_id: str) -> str:
    return f"session:{session_id}:otp-challenge"


@dataclass(frozen=True)
class Loaded:
    session: ConnectSession
    customer: Customer | None
    has_site: bool


class HostedFlowService(hosted_flow_pb2_grpc.HostedFlowServiceServicer):
    def __init__(
        self,
        *,
        store: Store,
        catalog: Catalog,
        sealer: Sealer,
        connector: Connector,
        callback_url: str,
        secrets_env: Mapping[str, str],
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._catalog = catalog
        self._sealer = sealer
        self._connector = connector
        self._callback_url = callback_url
        self._secrets_env = secrets_env
        self._clock = clock

    # Loading and describing ---------------------------------------------------------------

    async def _load(self, link_token: str) -> Loaded:
        if not link_token.startswith("link_"):
            raise fail("CONNECT_SESSION_NOT_FOUND", field="linkToken")

        def load(tx: Transaction) -> Loaded | None:
            session = tx.get_session_by_link_token_hash(hash_key(link_token))
            if session is None or session.mode != "standard":
                return None
            customer = tx.get_customer(session.organization_id, session.customer_id)
            return Loaded(session, customer, bool(session.site_id))

        loaded = await self._store.read(load)
        if loaded is None:
            raise fail("CONNECT_SESSION_NOT_FOUND", field="linkToken")
        return loaded

    async def _pending(self, link_token: str) -> Loaded:
        loaded = await self._load(link_token)
        status = loaded.session.status_at(self._clock())
        if status is not SessionStatus.PENDING:
            raise fail("CONNECT_SESSION_NOT_PENDING", status=status.value)
        return loaded

    def _offered(self, session: ConnectSession) -> list[Manufacturer]:
        return self._catalog.available(session.manufacturers, session.device_types)

    def _form_needed(self, loaded: Loaded) -> bool:
        customer = loaded.customer
        contact_complete = bool(
            customer and customer.first_name and customer.last_name and customer.email
        )
        return steps.customer_form_needed(
            bypassed=loaded.session.customer_form_bypassed,
            has_site=loaded.has_site,
            contact_complete=contact_complete,
        )

    def _prefill(self, loaded: Loaded) -> connection_pb2.CustomerInfo:
        info: dict[str, Any] = dict(loaded.session.customer_info or {})
        customer = loaded.customer
        if customer is not None:
            for key, value in (
                ("firstName", customer.first_name),
                ("lastName", customer.last_name),
                ("email", customer.email),
                ("phone", customer.phone),
            ):
                info.setdefault(key, value)
        location = info.get("location") or {}
        return connection_pb2.CustomerInfo(
            first_name=info.get("firstName", ""),
            last_name=info.get("lastName", ""),
            email=info.get("email", ""),
            phone=info.get("phone", ""),
            location=connection_pb2.Location(
                street_one=location.get("streetOne", ""),
                street_two=location.get("streetTwo", ""),
                city=location.get("city", ""),
                state=location.get("state", ""),
                postal_code=location.get("postalCode", ""),
                country=location.get("country", ""),
            ),
        )

    def _flow(self, loaded: Loaded) -> hosted_flow_pb2.Flow:
        session = loaded.session
        status = session.status_at(self._clock())
        flow = hosted_flow_pb2.Flow(
            link_session_id=session.id,
            client_name=session.client_name,
            manufacturers=[
                hosted_flow_pb2.FlowManufacturer(
                    slug=m.slug,
                    display_name=m.display_name,
                    device_types=m.device_types,
                    credential_sign_in=m.auth_kind is AuthKind.CREDENTIALS,
                )
                for m in self._offered(session)
            ],
            manufacturer=session.flow_manufacturer,
            customer_info=self._prefill(loaded),
            expires_at=encode.timestamp(session.expires_at),
        )
        error = session.flow_error or session.error
        if error:
            flow.error = error
            flow.retryable = TEXTURE_ERRORS.get(error, TEXTURE_ERRORS["unknown_error"]).retryable
        if status is SessionStatus.COMPLETED:
            flow.step = hosted_flow_pb2.FLOW_STEP_COMPLETED
        elif status is SessionStatus.FAILED:
            flow.step = hosted_flow_pb2.FLOW_STEP_FAILED
            flow.redirect_url = error_redirect(session.redirect_url, session.error)
        elif status is SessionStatus.EXPIRED:
            flow.step = hosted_flow_pb2.FLOW_STEP_EXPIRED
        else:
            flow.step = _STEPS.get(session.flow_step, hosted_flow_pb2.FLOW_STEP_WELCOME)
        if flow.step == hosted_flow_pb2.FLOW_STEP_DEVICES:
            flow.devices.extend(
                hosted_flow_pb2.FlowDevice(
                    id=d["id"], type=d["type"], name=d.get("name", ""), model=d.get("model", "")
                )
                for d in session.pending_devices
            )
        if flow.step == hosted_flow_pb2.FLOW_STEP_ONE_TIME_CODE and session.otp_challenge_sealed:
            challenge = self._challenge(session)
            flow.one_time_code_delivery = challenge["delivery"]
        return flow

    def _challenge(self, session: ConnectSession) -> dict[str, str]:
        assert session.otp_challenge_sealed is not None
        data: dict[str, str] = json.loads(
            self._sealer.open_text(session.otp_challenge_sealed, _challenge_context(session.id))
        )
        return data

    async def _move(self, loaded: Loaded, **values: Any) -> hosted_flow_pb2.Flow:
        """Writes flow fields on the still-pending session and describes the result."""
        session_id = loaded.session.id
        if not await self._store.write(lambda tx: tx.update_session_flow(session_id, **values)):
            raise fail("CONNECT_SESSION_NOT_PENDING")
        return self._flow(await self._load_by_id(loaded))

    async def _load_by_id(self, loaded: Loaded) -> Loaded:
        session_id, org_id = loaded.session.id, loaded.session.organization_id

        def load(tx: Transaction) -> Loaded:
            session = tx.get_session(org_id, session_id)
            assert session is not None
            customer = tx.get_customer(org_id, session.customer_id)
            return Loaded(session, customer, bool(session.site_id))

        return await self._store.read(load)

    # Steps --------------------------------------------------------------------------------

    async def GetFlow(
        self, request: hosted_flow_pb2.GetFlowRequest, context: aio.ServicerContext
    ) -> hosted_flow_pb2.GetFlowResponse:
        loaded = await self._load(request.link_token)
        return hosted_flow_pb2.GetFlowResponse(flow=self._flow(loaded))

    async def ContinueFlow(
        self, request: hosted_flow_pb2.ContinueFlowRequest, context: aio.ServicerContext
    ) -> hosted_flow_pb2.ContinueFlowResponse:
        loaded = await self._pending(request.link_token)
        if loaded.session.flow_step != steps.WELCOME:
            return hosted_flow_pb2.ContinueFlowResponse(flow=self._flow(loaded))
        step, manufacturer = steps.after_welcome(
            self._offered(loaded.session), self._form_needed(loaded)
        )
        flow = await self._move(loaded, flow_step=step, flow_manufacturer=manufacturer)
        return hosted_flow_pb2.ContinueFlowResponse(flow=flow)

    async def SelectManufacturer(
        self, request: hosted_flow_pb2.SelectManufacturerRequest, context: aio.ServicerContext
    ) -> hosted_flow_pb2.SelectManufacturerResponse:
        loaded = await self._pending(request.link_token)
        if request.manufacturer not in {m.slug for m in self._offered(loaded.session)}:
            raise invalid([FieldViolation("manufacturer", "Choose one of the listed companies.")])
        flow = await self._move(
            loaded,
            flow_step=steps.after_manufacturer(self._form_needed(loaded)),
            flow_manufacturer=request.manufacturer,
            flow_error="",
        )
        return hosted_flow_pb2.SelectManufacturerResponse(flow=flow)

    async def SubmitCustomerInfo(
        self, request: hosted_flow_pb2.SubmitCustomerInfoRequest, context: aio.ServicerContext
    ) -> hosted_flow_pb2.SubmitCustomerInfoResponse:
        loaded = await self._pending(request.link_token)
        info = request.customer_info
        violations = Violations()
        for path, value, what in (
            ("firstName", info.first_name, "your first name"),
            ("lastName", info.last_name, "your last name"),
            ("email", info.email, "your email address"),
        ):
            if not value.strip():
                violations.add(path, f"Please enter {what}.")
        contact = validate_contact(
            violations,
            CustomerInfoInput(info.first_name, info.last_name, info.email, info.phone),
            "",
        )
        loc = info.location
        address = validate_location(
            violations,
            LocationInput(
                loc.street_one, loc.street_two, loc.city, loc.state, loc.postal_code, loc.country
            ),
            "location",
        )
        violations.items = [
            FieldViolation(field, _FRIENDLY.get((field, v.description), v.description))
            for v in violations.items
            for field in (v.field.lstrip("."),)
        ]
        violations.raise_if_any()
        assert address is not None
        session = loaded.session
        org_id = session.organization_id
        now = self._clock()
        confirmed = customer_info_document(contact, address, omit_empty=False)
        next_step = steps.AUTHORIZE if session.flow_manufacturer else steps.MANUFACTURER

        def save(tx: Transaction) -> bool:
            # What the customer confirmed is what the Contact and Site records hold.
            customer = tx.get_customer(org_id, session.customer_id)
            assert customer is not None
            tx.update_customer_contact(
                Customer(
                    id=customer.id,
                    organization_id=org_id,
                    reference_id=customer.reference_id,
                    first_name=contact.first_name,
                    last_name=contact.last_name,
                    email=contact.email,
                    phone=contact.phone,
                ),
                now,
            )
            key = normalized_address_key(address)
            site = next(
                (s for s in tx.list_customer_sites(org_id, customer.id) if s.address_key == key),
                None,
            )
            if site is None:
                site = tx.insert_site(
                    site_id=ids.new_id(),
                    org_id=org_id,
                    customer_id=customer.id,
                    address=address,
                    now=now,
                )
            return tx.update_session_flow(
                session.id,
                site_id=site.id,
                customer_info=confirmed,
                flow_step=next_step,
            )

        if not await self._store.write(save):
            raise fail("CONNECT_SESSION_NOT_PENDING")
        flow = self._flow(await self._load_by_id(loaded))
        return hosted_flow_pb2.SubmitCustomerInfoResponse(flow=flow)

    def _chosen(self, loaded: Loaded) -> Manufacturer:
        slug = loaded.session.flow_manufacturer
        manufacturer = self._catalog.get(slug) if slug else None
        if manufacturer is None or slug not in {m.slug for m in self._offered(loaded.session)}:
            raise fail("MANUFACTURER_NOT_OFFERED")
        return manufacturer

    async def BeginAuthorization(
        self, request: hosted_flow_pb2.BeginAuthorizationRequest, context: aio.ServicerContext
    ) -> hosted_flow_pb2.BeginAuthorizationResponse:
        loaded = await self._pending(request.link_token)
        if loaded.session.flow_step in (steps.WELCOME, steps.MANUFACTURER, steps.CUSTOMER_INFO):
            raise fail("CONNECT_SESSION_NOT_PENDING", step=loaded.session.flow_step)
        manufacturer = self._chosen(loaded)
        session_id = loaded.session.id
        now = self._clock()
        if manufacturer.auth_kind is AuthKind.CREDENTIALS:
            flow = await self._move(
                loaded, flow_step=steps.AUTHORIZE, flow_error="", otp_challenge_sealed=None
            )
            return hosted_flow_pb2.BeginAuthorizationResponse(flow=flow)

        def begin(tx: Transaction) -> str | None:
            if not tx.update_session_flow(session_id, flow_step=steps.AUTHORIZE, flow_error=""):
                return None
            return start_authorization(
                tx,
                self._sealer,
                session_id=session_id,
                manufacturer=manufacturer,
                callback_url=self._callback_url,
                now=now,
            )

        url = await self._store.write(begin)
        if url is None:
            raise fail("CONNECT_SESSION_NOT_PENDING")
        return hosted_flow_pb2.BeginAuthorizationResponse(
            flow=self._flow(await self._load_by_id(loaded)), authorization_url=url
        )

    async def _after_sign_in(
        self, loaded: Loaded, manufacturer: Manufacturer, tokens: TokenSet
    ) -> None:
        session = loaded.session
        try:
            devices = await self._connector.compatible_devices(
                session, manufacturer, tokens.access_token
            )
        except ConnectFailure as failure:
            await self._connector.record_failure(session, failure.texture_error)
            return
        await self._connector.stage_devices(session, manufacturer, tokens, devices)

    async def SubmitCredentials(
        self, request: hosted_flow_pb2.SubmitCredentialsRequest, context: aio.ServicerContext
    ) -> hosted_flow_pb2.SubmitCredentialsResponse:
        loaded = await self._pending(request.link_token)
        if loaded.session.flow_step != steps.AUTHORIZE:
            raise fail("CONNECT_SESSION_NOT_PENDING", step=loaded.session.flow_step)
        manufacturer = self._chosen(loaded)
        if manufacturer.auth_kind is not AuthKind.CREDENTIALS:
            raise fail("MANUFACTURER_NOT_OFFERED")
        violations = Violations()
        if not request.username.strip():
            violations.add("username", "Please enter your username.")
        if not request.password:
            violations.add("password", "Please enter your password.")
        violations.raise_if_any()
        try:
            result = await sign_in(
                manufacturer,
                username=request.username.strip(),
                password=request.password,
                client_secret=credential_client_secret(manufacturer, self._secrets_env),
            )
        except CredentialSignInError as exc:
            await self._manufacturer_trouble(loaded, exc)
            self._credential_error(exc, "password")
        if isinstance(result, OtpChallenge):
            sealed = self._sealer.seal_text(
                json.dumps({"challenge_id": result.challenge_id, "delivery": result.delivery}),
                _challenge_context(loaded.session.id),
            )
            flow = await self._move(
                loaded, flow_step=steps.ONE_TIME_CODE, otp_challenge_sealed=sealed
            )
            return hosted_flow_pb2.SubmitCredentialsResponse(flow=flow)
        await self._after_sign_in(loaded, manufacturer, result)
        flow = self._flow(await self._load_by_id(loaded))
        return hosted_flow_pb2.SubmitCredentialsResponse(flow=flow)

    async def _manufacturer_trouble(self, loaded: Loaded, exc: CredentialSignInError) -> None:
        """The manufacturer failed (not the customer): the flow shows the retryable error
        page with "Try again", as it does for an OAuth manufacturer's server_error."""
        if exc.reason in _CUSTOMER_MISTAKES:
            return
        error = "temporarily_unavailable" if exc.status == 503 else "server_error"
        await self._connector.record_failure(loaded.session, error)
        raise fail("MANUFACTURER_UNAVAILABLE", texture_error=error)

    @staticmethod
    def _credential_error(exc: CredentialSignInError, field: str) -> NoReturn:
        messages = {
            "invalid_credentials": "That username and password did not work. Check them and "
            "try again.",
            "invalid_otp": "That code is not right. Check the latest message and try again.",
            "challenge_expired": "That code has expired. Sign in again to get a new one.",
        }
        if exc.reason in messages:
            raise invalid([FieldViolation(field, messages[exc.reason])]) from None
        raise fail("MANUFACTURER_UNAVAILABLE") from None

    async def SubmitOneTimeCode(
        self, request: hosted_flow_pb2.SubmitOneTimeCodeRequest, context: aio.ServicerContext
    ) -> hosted_flow_pb2.SubmitOneTimeCodeResponse:
        loaded = await self._pending(request.link_token)
        session = loaded.session
        if session.flow_step != steps.ONE_TIME_CODE or session.otp_challenge_sealed is None:
            raise fail("CONNECT_SESSION_NOT_PENDING", step=session.flow_step)
        manufacturer = self._chosen(loaded)
        code = request.code.strip()
        if not code:
            raise invalid([FieldViolation("code", "Please enter the code we sent you.")])
        challenge = self._challenge(session)
        try:
            tokens = await submit_one_time_code(
                manufacturer,
                challenge_id=challenge["challenge_id"],
                code=code,
                client_secret=credential_client_secret(manufacturer, self._secrets_env),
            )
        except CredentialSignInError as exc:
            await self._manufacturer_trouble(loaded, exc)
            if exc.reason == "challenge_expired":
                await self._store.write(
                    lambda tx: tx.update_session_flow(
                        session.id, flow_step=steps.AUTHORIZE, otp_challenge_sealed=None
                    )
                )
            self._credential_error(exc, "code")
        await self._after_sign_in(loaded, manufacturer, tokens)
        flow = self._flow(await self._load_by_id(loaded))
        return hosted_flow_pb2.SubmitOneTimeCodeResponse(flow=flow)

    async def SelectDevices(
        self, request: hosted_flow_pb2.SelectDevicesRequest, context: aio.ServicerContext
    ) -> hosted_flow_pb2.SelectDevicesResponse:
        loaded = await self._pending(request.link_token)
        session = loaded.session
        if session.flow_step != steps.DEVICES or session.pending_tokens_sealed is None:
            raise fail("CONNECT_SESSION_NOT_PENDING", step=session.flow_step)
        manufacturer = self._chosen(loaded)
        chosen = set(request.device_ids)
        staged = {d["id"]: d for d in session.pending_devices}
        if not chosen:
            raise invalid([FieldViolation("deviceIds", "Choose at least one device.")])
        if not chosen <= staged.keys():
            raise invalid([FieldViolation("deviceIds", "Choose devices from the list.")])
        devices = [
            DeviceInfo(
                id=d["id"],
                type=d["type"],
                manufacturer=manufacturer.slug,
                model=d.get("model", ""),
                serial_number=d.get("serial", ""),
                name=d.get("name", ""),
            )
            for device_id, d in staged.items()
            if device_id in chosen
        ]
        tokens = self._connector.pending_tokens(session)
        redirect = await self._connector.complete(session, manufacturer, tokens, devices)
        if redirect is None:
            raise fail("CONNECT_SESSION_NOT_PENDING")
        return hosted_flow_pb2.SelectDevicesResponse(redirect_url=redirect)

    async def LeaveFlow(
        self, request: hosted_flow_pb2.LeaveFlowRequest, context: aio.ServicerContext
    ) -> hosted_flow_pb2.LeaveFlowResponse:
        if request.error not in TEXTURE_ERRORS:
            raise invalid([FieldViolation("error", "must be a texture_error value")])
        loaded = await self._load(request.link_token)
        session = loaded.session
        status = session.status_at(self._clock())
        if status is SessionStatus.COMPLETED:
            raise fail("CONNECT_SESSION_NOT_PENDING", status=status.value)
        if status is SessionStatus.EXPIRED:
            return hosted_flow_pb2.LeaveFlowResponse(
                redirect_url=error_redirect(session.redirect_url, "connect_session_expired")
            )
        if status is SessionStatus.FAILED:
            return hosted_flow_pb2.LeaveFlowResponse(
                redirect_url=error_redirect(session.redirect_url, session.error)
            )
        now = self._clock()
        ended = await self._store.write(
            lambda tx: tx.end_session(
                session.id, status=SessionStatus.FAILED, now=now, error=request.error
            )
        )
        if not ended:
            # The flow ended meanwhile (a completion won): the pages show how it ended.
            raise fail("CONNECT_SESSION_NOT_PENDING")
        log.info("session %s: the customer left with %s", session.id, request.error)
        return hosted_flow_pb2.LeaveFlowResponse(
            redirect_url=error_redirect(session.redirect_url, request.error)
        )
