"""The end of every flow, shared by the OAuth callback and the hosted pages: listing the
account's compatible devices, staging them for the customer's choice (standard mode),
storing the connection and minting the scoped key, or ending with a texture_error."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime

from texture_connect.crypto import Sealer
from texture_connect.domain import ids
from texture_connect.domain.catalog import DEVICE_TYPES, Manufacturer
from texture_connect.domain.keys import KeyKind, display_hint, hash_key, new_key
from texture_connect.domain.records import ConnectedDevice, ConnectSession, SessionStatus
from texture_connect.domain.redirects import error_redirect, success_redirect
from texture_connect.domain.texture_errors import TEXTURE_ERRORS
from texture_connect.manufacturers.devices import (
    DeviceAdapter,
    DeviceApiError,
    DeviceInfo,
    SubscriptionRequired,
)
from texture_connect.manufacturers.tokens import TokenSet
from texture_connect.services.token_access import token_context
from texture_connect.storage import Store, Transaction

log = logging.getLogger("texture_connect.connecting")


class _SessionEnded(Exception):
    pass


class ConnectFailure(Exception):
    """The flow cannot connect: ``texture_error`` says why."""

    def __init__(self, texture_error: str) -> None:
        super().__init__(texture_error)
        self.texture_error = texture_error


def apply_failure(tx: Transaction, session_id: str, texture_error: str, now: datetime) -> None:
    """The one rule for a failed attempt: a retryable error leaves the session open (its
    claim released, the error shown by the hosted pages); any other ends it."""
    if TEXTURE_ERRORS[texture_error].retryable:
        tx.release_session_callback(session_id)
        tx.update_session_flow(session_id, flow_error=texture_error)
    else:
        tx.end_session(session_id, status=SessionStatus.FAILED, now=now, error=texture_error)


def pending_context(session_id: str) -> str:
    return f"session:{session_id}:pending-tokens"


def link_context(session_id: str) -> str:
    return f"session:{session_id}:link"


class Connector:
    def __init__(
        self,
        *,
        store: Store,
        sealer: Sealer,
        public_url: str,
        adapter_for: Callable[[Manufacturer], DeviceAdapter],
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._sealer = sealer
        self._public_url = public_url
        self._adapter_for = adapter_for
        self._clock = clock

    # Where the browser goes ---------------------------------------------------------------

    def hosted_url(self, session: ConnectSession) -> str:
        """The session's hosted page (its link URL): it shows whatever the session records."""
        assert session.link_token_sealed is not None
        token = self._sealer.open_text(session.link_token_sealed, link_context(session.id))
        return f"{self._public_url}/{token}"

    def failure_url(
        self, session: ConnectSession, texture_error: str, raw: str | None = None
    ) -> str:
        """Headless: the app's redirect URL with texture_error. Standard: the hosted pages,
        which explain the error and offer to try again where that may help."""
        if session.mode == "standard" and session.link_token_sealed is not None:
            return self.hosted_url(session)
        return error_redirect(session.redirect_url, texture_error, raw)

    # Steps ------------------------------------------------------------------------------

    async def compatible_devices(
        self, session: ConnectSession, manufacturer: Manufacturer, access_token: str
    ) -> list[DeviceInfo]:
        """The account's devices the session may connect; raises ``ConnectFailure``."""
        adapter = self._adapter_for(manufacturer)
        try:
            listed = await adapter.list_devices(access_token)
        except SubscriptionRequired:
            raise ConnectFailure("subscription_required") from None
        except DeviceApiError as exc:
            log.warning("device listing at %s failed: %s", manufacturer.slug, type(exc).__name__)
            raise ConnectFailure("connection_failed") from None
        wanted = set(session.device_types) or set(DEVICE_TYPES)
        compatible = [d for d in listed if d.type in wanted and d.type in DEVICE_TYPES]
        if not compatible:
            raise ConnectFailure("device_incompatible")
        return compatible

    async def record_failure(self, session: ConnectSession, texture_error: str) -> None:
        """A retryable error leaves the session open (a new attempt gets a new state); any
        other ends it."""
        now = self._clock()
        await self._store.write(lambda tx: apply_failure(tx, session.id, texture_error, now))
        log.info("session %s: %s", session.id, texture_error)

    async def stage_devices(
        self,
        session: ConnectSession,
        manufacturer: Manufacturer,
        tokens: TokenSet,
        devices: list[DeviceInfo],
    ) -> None:
        """Standard mode: keep the tokens (sealed) and the devices for the customer's
        choice on the device page. Nothing is connected until they choose."""
        sealed = self._sealer.seal_text(
            json.dumps(
                {
                    "access_token": tokens.access_token,
                    "refresh_token": tokens.refresh_token,
                    "expires_at": tokens.expires_at.isoformat() if tokens.expires_at else None,
                    "scope": tokens.scope,
                    "token_type": tokens.token_type,
                }
            ),
            pending_context(session.id),
        )
        staged = [
            {
                "id": d.id,
                "type": d.type,
                "name": d.name,
                "model": d.model,
                "serial": d.serial_number,
            }
            for d in devices
        ]

        def stage(tx: Transaction) -> None:
            tx.update_session_flow(
                session.id,
                flow_step="devices",
                flow_manufacturer=manufacturer.slug,
                flow_error="",
                pending_tokens_sealed=sealed,
                pending_devices=staged,
                otp_challenge_sealed=None,
            )
            tx.release_session_callback(session.id)

        await self._store.write(stage)

    def pending_tokens(self, session: ConnectSession) -> TokenSet:
        assert session.pending_tokens_sealed is not None
        data = json.loads(
            self._sealer.open_text(session.pending_tokens_sealed, pending_context(session.id))
        )
        expires = data.get("expires_at")
        return TokenSet(
            access_token=data["access_token"],
            refresh_token=data.get("refresh_token"),
            expires_at=datetime.fromisoformat(expires) if expires else None,
            scope=data.get("scope", ""),
            token_type=data.get("token_type", "Bearer"),
        )

    async def complete(
        self,
        session: ConnectSession,
        manufacturer: Manufacturer,
        tokens: TokenSet,
        devices: list[DeviceInfo],
    ) -> str | None:
        """In one transaction: the connection (tokens sealed), the devices (linked to the
        customer and site, with the session's referenceId and tags), a scoped key, and the
        session completed. Returns the app's redirect URL with the key; None when the
        session was no longer pending (a concurrent completion won)."""
        now = self._clock()
        scoped_key = new_key(KeyKind.SCOPED)
        org_id = session.organization_id

        def save(tx: Transaction) -> bool | None:
            current = tx.get_session(None, session.id)
            if current is None or current.status is not SessionStatus.PENDING:
                return None
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
                site_id=current.site_id or None,
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
            if not tx.end_session(
                session.id, status=SessionStatus.COMPLETED, now=now, connection_id=connection_id
            ):
                # Another completion (or a cancel) ended the session first: undo all of it.
                raise _SessionEnded()
            return existing_devices

        try:
            existing_devices = await self._store.write(save)
        except _SessionEnded:
            return None
        if existing_devices is None:
            return None
        log.info(
            "session %s completed: %d device(s) at %s", session.id, len(devices), manufacturer.slug
        )
        return success_redirect(
            session.redirect_url,
            scoped_key=scoped_key,
            customer_id=session.customer_id,
            existing_devices=existing_devices,
        )
