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
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from grpc import aio

from texture.connect.v1 import callback_pb2, callback_pb2_grpc
from texture_connect.crypto import Sealer
from texture_connect.domain.catalog import Catalog, Manufacturer
from texture_connect.domain.errors import fail
from texture_connect.domain.oauth_state import parse_state, state_secret_matches
from texture_connect.domain.records import (
    AuthorizationAttempt,
    ConnectSession,
    SessionStatus,
)
from texture_connect.domain.texture_errors import normalize_authorization_error
from texture_connect.manufacturers.tokens import (
    TokenExchangeError,
    client_secret_for,
    exchange_code,
)
from texture_connect.services.authorization import verifier_context
from texture_connect.services.connecting import ConnectFailure, Connector, apply_failure
from texture_connect.storage import Store, Transaction

log = logging.getLogger("texture_connect.callback")

# A claim older than this belongs to a replica that died mid-exchange.
CLAIM_TIMEOUT = timedelta(minutes=2)


@dataclass(frozen=True)
class CallbackSettings:
    callback_url: str
    # Where manufacturers' client secrets are looked up, by the catalog's variable names.
    secrets_env: Mapping[str, str] = field(repr=False)


class CallbackService(callback_pb2_grpc.CallbackServiceServicer):
    def __init__(
        self,
        *,
        store: Store,
        catalog: Catalog,
        sealer: Sealer,
        settings: CallbackSettings,
        connector: Connector,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._catalog = catalog
        self._sealer = sealer
        self._settings = settings
        self._connector = connector
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
            return self._connector.failure_url(session, "oauth_state_mismatch")
        status = session.status_at(now)
        if status is SessionStatus.EXPIRED:
            return self._connector.failure_url(session, "connect_session_expired")
        if status is not SessionStatus.PENDING or attempt.used_at is not None:
            return self._connector.failure_url(session, "connect_session_already_completed")
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
            return self._connector.failure_url(session, "oauth_state_mismatch")
        if not request.code:
            await self._store.write(lambda tx: tx.use_authorization_attempt(attempt_id, now))
            return self._connector.failure_url(session, "unknown_error", "missing_code")

        def claim(tx: Transaction) -> bool:
            if not tx.claim_session_callback(session.id, now, now - CLAIM_TIMEOUT):
                return False
            if not tx.use_authorization_attempt(attempt_id, now):
                tx.release_session_callback(session.id)
                return False
            return True

        if not await self._store.write(claim):
            return self._connector.failure_url(session, "connect_session_already_completed")
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
            apply_failure(tx, session.id, texture_error, now)
            return True

        if not await self._store.write(record):
            return self._connector.failure_url(session, "connect_session_already_completed")
        log.info("callback for session %s: authorization error %s", session.id, texture_error)
        return self._connector.failure_url(session, texture_error, raw)

    async def _exchange_and_connect(
        self,
        session: ConnectSession,
        attempt: AuthorizationAttempt,
        manufacturer: Manufacturer,
        code: str,
    ) -> str:
        verifier = self._sealer.open_text(
            attempt.code_verifier_sealed, verifier_context(attempt.id)
        )
        try:
            try:
                tokens = await exchange_code(
                    manufacturer,
                    code=code,
                    code_verifier=verifier,
                    redirect_uri=self._settings.callback_url,
                    client_secret=client_secret_for(manufacturer, self._settings.secrets_env),
                )
            except TokenExchangeError as exc:
                log.warning(
                    "token exchange with %s failed: %s", manufacturer.slug, type(exc).__name__
                )
                raise ConnectFailure("connection_failed") from None
            devices = await self._connector.compatible_devices(
                session, manufacturer, tokens.access_token
            )
        except ConnectFailure as failure:
            await self._connector.record_failure(session, failure.texture_error)
            return self._connector.failure_url(session, failure.texture_error)
        if session.mode == "standard":
            # The customer chooses which devices to connect on the hosted device page.
            await self._connector.stage_devices(session, manufacturer, tokens, devices)
            return self._connector.hosted_url(session)
        redirect = await self._connector.complete(session, manufacturer, tokens, devices)
        if redirect is None:
            return self._connector.failure_url(session, "connect_session_already_completed")
        return redirect
