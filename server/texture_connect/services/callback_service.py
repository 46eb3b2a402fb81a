"""CallbackService: the manufacturer's authorization response, forwarded by the HTTP shim.

The order of checks is the security argument, so it is spelled out:
1. ``state`` must parse and name a known authorization attempt; otherwise there is no safe
   place to send the browser and the shim shows an error page (RFC 6749 §4.1.2.1 spirit:
   never redirect to an unverified target).
2. The state's secret must match (constant time): else ``oauth_state_mismatch``.
3. The session must still be pending and unexpired; the state must be unused.
4. An ``error`` is handled before any token request (Authlib's fetch_token, handed an error
   redirect, would fall back to another grant).
5. ``iss`` must equal the manufacturer's issuer (RFC 9207 §2.4, mix-up defence).
6. One atomic claim in the database lets exactly one callback per session reach the token
   endpoint, across replicas; the others get ``connect_session_already_completed``.
7. Token exchange with the PKCE verifier, device listing, then one transaction that stores
   the connection (tokens sealed), the devices and a scoped key, and completes the session.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from grpc import aio

from texture.connect.v1 import callback_pb2, callback_pb2_grpc
from texture_connect.crypto import Sealer
from texture_connect.domain import ids
from texture_connect.domain.catalog import DEVICE_TYPES, Catalog, Manufacturer
from texture_connect.domain.errors import fail
from texture_connect.domain.keys import KeyKind, display_hint, hash_key, new_key
from texture_connect.domain.oauth_state import parse_state, state_secret_matches
from texture_connect.domain.records import (
    AuthorizationAttempt,
    ConnectedDevice,
    ConnectSession,
    SessionStatus,
)
from texture_connect.domain.redirects import error_redirect, success_redirect
from texture_connect.domain.texture_errors import TEXTURE_ERRORS, normalize_authorization_error
from texture_connect.manufacturers.devices import (
    DeviceAdapter,
    DeviceApiError,
    DeviceInfo,
    SubscriptionRequired,
)
from texture_connect.manufacturers.tokens import (
    TokenExchangeError,
    TokenSet,
    client_secret_for,
    exchange_code,
)
from texture_connect.services.token_access import token_context
from texture_connect.storage import Store, Transaction

log = logging.getLogger("texture_connect.callback")

# A claim older than this belongs to a replica that died mid-exchange.
CLAIM_TIMEOUT = timedelta(minutes=2)


@dataclass(frozen=True)
class CallbackSettings:
    callback_url: str
    # Where manufacturers' client secrets are looked up, by the catalog's variable names.
    secrets_env: Mapping[str, str]


class CallbackService(callback_pb2_grpc.CallbackServiceServicer):
    def __init__(
        self,
        *,
        store: Store,
        catalog: Catalog,
        sealer: Sealer,
        settings: CallbackSettings,
        adapter_for: Callable[[Manufacturer], DeviceAdapter],
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._catalog = catalog
        self._sealer = sealer
        self._settings = settings
        self._adapter_for = adapter_for
        self._clock = clock

    async def HandleOAuthCallback(
        self, request: callback_pb2.HandleOAuthCallbackRequest, context: aio.ServicerContext
    ) -> callback_pb2.HandleOAuthCallbackResponse:
        return callback_pb2.HandleOAuthCallbackResponse(redirect_url=await self._handle(request))

    async def _handle(self, request: callback_pb2.HandleOAuthCallbackRequest) -> str:
        parsed = parse_state(request.state)
        if parsed is None:
            raise fail("OAUTH_STATE_INVALID")
        attempt_id, secret = parsed
        now = self._clock()

        def load(tx: Transaction) -> tuple[AuthorizationAttempt | None, ConnectSession | None]:
            attempt = tx.get_authorization_attempt(attempt_id)
            return attempt, tx.get_session(None, attempt.session_id) if attempt else None

        attempt, session = await self._store.read(load)
        if attempt is None or session is None:
            raise fail("OAUTH_STATE_INVALID")
        # RFC 6749 §10.12: the state binds this response to the attempt we started.
        if not state_secret_matches(secret, attempt.state_hash):
            log.info("callback for session %s: state secret mismatch", session.id)
            return error_redirect(session.redirect_url, "oauth_state_mismatch")
        status = session.status_at(now)
        if status is SessionStatus.EXPIRED:
            return error_redirect(session.redirect_url, "connect_session_expired")
        if status is not SessionStatus.PENDING or attempt.used_at is not None:
            return error_redirect(session.redirect_url, "connect_session_already_completed")
        manufacturer = self._catalog.get(attempt.manufacturer)
        if manufacturer is None or manufacturer.oauth is None:
            raise fail("INTERNAL", "The session's manufacturer is no longer in the catalog.")

        if request.error:
            # RFC 6749 §4.1.2.1: an error response; never send it to the token endpoint.
            return await self._authorization_error(session, attempt_id, manufacturer, request)
        issuer = manufacturer.oauth.issuer
        if issuer and request.iss != issuer:
            # RFC 9207 §2.4: a response from another issuer (or none) is a mix-up attempt.
            await self._store.write(lambda tx: tx.use_authorization_attempt(attempt_id, now))
            log.warning("callback for session %s: issuer mismatch", session.id)
            return error_redirect(session.redirect_url, "oauth_state_mismatch")
        if not request.code:
            await self._store.write(lambda tx: tx.use_authorization_attempt(attempt_id, now))
            return error_redirect(session.redirect_url, "unknown_error", "missing_code")

        def claim(tx: Transaction) -> bool:
            if not tx.claim_session_callback(session.id, now, now - CLAIM_TIMEOUT):
                return False
            if not tx.use_authorization_attempt(attempt_id, now):
                tx.release_session_callback(session.id)
                return False
            return True

        if not await self._store.write(claim):
            return error_redirect(session.redirect_url, "connect_session_already_completed")
        try:
            return await self._exchange_and_connect(session, attempt, manufacturer, request.code)
        except BaseException:
            # Whatever went wrong, the claim must not outlive this call: the customer may
            # retry with a new attempt at once rather than after CLAIM_TIMEOUT.
            await self._store.write(lambda tx: tx.release_session_callback(session.id))
            raise

    async def _authorization_error(
        self,
        session: ConnectSession,
        attempt_id: str,
        manufacturer: Manufacturer,
        request: callback_pb2.HandleOAuthCallbackRequest,
    ) -> str:
        texture_error, raw = normalize_authorization_error(
            request.error[:100], manufacturer.error_codes
        )
        now = self._clock()

        def record(tx: Transaction) -> bool:
            if not tx.use_authorization_attempt(attempt_id, now):
                return False
            # Only an idle session may end here: another attempt may be completing it.
            if not tx.claim_session_callback(session.id, now, now - CLAIM_TIMEOUT):
                return False
            if TEXTURE_ERRORS[texture_error].retryable:
                tx.release_session_callback(session.id)
            else:
                tx.end_session(
                    session.id, status=SessionStatus.FAILED, now=now, error=texture_error
                )
            return True

        if not await self._store.write(record):
            return error_redirect(session.redirect_url, "connect_session_already_completed")
        log.info("callback for session %s: authorization error %s", session.id, texture_error)
        return error_redirect(session.redirect_url, texture_error, raw)

    async def _fail(self, session: ConnectSession, texture_error: str) -> str:
        """Ends the flow with an error. A retryable one releases the claim: the session
        stays open until it expires, and a new attempt (new state) may succeed."""
        now = self._clock()

        def record(tx: Transaction) -> None:
            if TEXTURE_ERRORS[texture_error].retryable:
                tx.release_session_callback(session.id)
            else:
                tx.end_session(
                    session.id, status=SessionStatus.FAILED, now=now, error=texture_error
                )

        await self._store.write(record)
        log.info("callback for session %s: %s", session.id, texture_error)
        return error_redirect(session.redirect_url, texture_error)

    async def _exchange_and_connect(
        self,
        session: ConnectSession,
        attempt: AuthorizationAttempt,
        manufacturer: Manufacturer,
        code: str,
    ) -> str:
        verifier = self._sealer.open_text(attempt.code_verifier_sealed, f"attempt:{attempt.id}")
        try:
            tokens = await exchange_code(
                manufacturer,
                code=code,
                code_verifier=verifier,
                redirect_uri=self._settings.callback_url,
                client_secret=client_secret_for(manufacturer, self._settings.secrets_env),
            )
        except TokenExchangeError as exc:
            log.warning("token exchange with %s failed: %s", manufacturer.slug, type(exc).__name__)
            return await self._fail(session, "connection_failed")
        adapter = self._adapter_for(manufacturer)
        try:
            listed = await adapter.list_devices(tokens.access_token)
        except SubscriptionRequired:
            return await self._fail(session, "subscription_required")
        except DeviceApiError as exc:
            log.warning("device listing at %s failed: %s", manufacturer.slug, type(exc).__name__)
            return await self._fail(session, "connection_failed")
        wanted = set(session.device_types) or set(DEVICE_TYPES)
        compatible = [d for d in listed if d.type in wanted and d.type in DEVICE_TYPES]
        if not compatible:
            return await self._fail(session, "device_incompatible")
        return await self._complete(session, manufacturer, tokens, compatible)

    async def _complete(
        self,
        session: ConnectSession,
        manufacturer: Manufacturer,
        tokens: TokenSet,
        devices: list[DeviceInfo],
    ) -> str:
        now = self._clock()
        scoped_key = new_key(KeyKind.SCOPED)
        org_id = session.organization_id

        def save(tx: Transaction) -> bool:
            existing_devices = tx.count_connected_devices(org_id, session.customer_id) > 0

            def seal(connection_id: str) -> tuple[bytes, bytes | None]:
                access = self._sealer.seal_text(
                    tokens.access_token, token_context(connection_id, "access")
                )
                if not tokens.refresh_token:
                    return access, None
                refresh = self._sealer.seal_text(
                    tokens.refresh_token, token_context(connection_id, "refresh")
                )
                return access, refresh

            connection_id = tx.save_connection(
                new_id=ids.new_id(),
                org_id=org_id,
                customer_id=session.customer_id,
                manufacturer=manufacturer.slug,
                seal_tokens=seal,
                token_expires_at=tokens.expires_at,
                scope=tokens.scope,
                now=now,
            )
            tx.save_devices(
                org_id=org_id,
                customer_id=session.customer_id,
                site_id=session.site_id or None,
                connection_id=connection_id,
                manufacturer=manufacturer.slug,
                reference_id=session.reference_id,
                tags=session.tags,
                devices=[
                    ConnectedDevice(d.id, d.type, d.model, d.serial_number, d.name) for d in devices
                ],
                new_ids=[ids.new_id() for _ in devices],
                now=now,
            )
            tx.insert_scoped_key(
                key_id="key_" + ids.new_id(),
                org_id=org_id,
                key_hash=hash_key(scoped_key),
                hint=display_hint(scoped_key),
                customer_id=session.customer_id,
                connection_id=connection_id,
                now=now,
            )
            tx.end_session(
                session.id, status=SessionStatus.COMPLETED, now=now, connection_id=connection_id
            )
            return existing_devices

        existing_devices = await self._store.write(save)
        log.info(
            "session %s completed: %d device(s) at %s", session.id, len(devices), manufacturer.slug
        )
        return success_redirect(
            session.redirect_url,
            scoped_key=scoped_key,
            customer_id=session.customer_id,
            existing_devices=existing_devices,
        )
