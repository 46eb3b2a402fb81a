"""Access tokens for reading devices: decrypted on demand, refreshed before they expire.

Exactly one refresh per connection runs at a time, across replicas: the refresher first
wins an atomic claim in the database (``claim_token_refresh``, keyed by the token
generation it saw). Everyone else waits for the generation to move on and then uses the
new token: woken at once within this process, and by re-reading the row (every few tens
of milliseconds, for a bounded time) when the refresh happens on another replica.
A refresh the manufacturer rejects with ``invalid_grant`` (RFC 6749 §5.2) marks the
connection as needing re-authorization.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from texture_connect.crypto import Sealer
from texture_connect.domain.catalog import Catalog
from texture_connect.domain.errors import fail
from texture_connect.domain.records import ConnectionStatus, StoredTokens
from texture_connect.manufacturers.credentials import (
    credential_client_secret,
    refresh_credential_tokens,
)
from texture_connect.manufacturers.tokens import (
    InvalidGrant,
    TokenExchangeError,
    client_secret_for,
    refresh_tokens,
)
from texture_connect.storage import Store, Transaction

log = logging.getLogger("texture_connect.tokens")

# Refresh this long before expiry, so a token never expires mid-request.
REFRESH_MARGIN = timedelta(seconds=60)
# A claim older than this belongs to a refresher that died.
CLAIM_TIMEOUT = timedelta(seconds=30)
# A token refreshed this recently is used as long as it has not expired, even inside the
# refresh margin: the reads that queued behind a refresh share its result instead of
# refreshing again (short-lived tokens would otherwise be refreshed by every reader).
REUSE_WINDOW = timedelta(seconds=5)
# How long a reader waits for someone else's refresh before giving up (UNAVAILABLE).
WAIT_LIMIT_SECONDS = 15.0
_POLL_SECONDS = 0.05


def token_context(connection_id: str, which: str) -> str:
    """Associated data binding a sealed token to its connection row and role."""
    return f"connection:{connection_id}:{which}"


def _claim(tx: Transaction, *, connection_id: str, generation: int, now: datetime) -> bool:
    return tx.claim_token_refresh(connection_id, generation, now, now - CLAIM_TIMEOUT)


class TokenAccess:
    def __init__(
        self,
        *,
        store: Store,
        sealer: Sealer,
        catalog: Catalog,
        secrets_env: Mapping[str, str],
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._sealer = sealer
        self._catalog = catalog
        self._secrets_env = secrets_env
        self._clock = clock
        self._refreshed: dict[str, asyncio.Event] = {}

    async def access_token(
        self, connection_id: str, *, rejected_generation: int | None = None
    ) -> tuple[str, int]:
        """A usable access token and its generation. ``rejected_generation``: the
        manufacturer refused the token of that generation; refresh it even if unexpired."""
        deadline = time.monotonic() + WAIT_LIMIT_SECONDS
        # The generation of someone else's refresh we waited for: its token is used as long
        # as it has not expired, even inside the refresh margin (else every waiter would
        # refresh again when manufacturers issue short-lived tokens).
        waited_for: int | None = None
        while True:
            tokens = await self._store.read(lambda tx: tx.get_connection_tokens(connection_id))
            if tokens is None or tokens.status is ConnectionStatus.DISCONNECTED:
                raise fail("CONNECTION_DISCONNECTED")
            if tokens.status is ConnectionStatus.NEEDS_REAUTHORIZATION:
                raise fail("CONNECTION_NEEDS_REAUTHORIZATION")
            fresh_from_wait = waited_for is not None and tokens.token_generation > waited_for
            if not self._needs_refresh(tokens, rejected_generation, fresh_from_wait):
                assert tokens.access_token_sealed is not None
                access = self._sealer.open_text(
                    tokens.access_token_sealed, token_context(connection_id, "access")
                )
                return access, tokens.token_generation
            now = self._clock()
            generation = tokens.token_generation
            claimed = await self._store.write(
                functools.partial(
                    _claim, connection_id=connection_id, generation=generation, now=now
                )
            )
            if claimed:
                refreshed = await self._refresh(tokens)
                if refreshed is not None:
                    return refreshed
                continue
            await self._wait_for_refresh(connection_id, deadline)
            waited_for = generation if waited_for is None else waited_for
            rejected_generation = None if rejected_generation != generation else generation

    def _needs_refresh(
        self, tokens: StoredTokens, rejected_generation: int | None, fresh_from_wait: bool
    ) -> bool:
        if tokens.access_token_sealed is None:
            return True
        if rejected_generation is not None and rejected_generation == tokens.token_generation:
            return True
        expires = tokens.token_expires_at
        if expires is None:
            return False
        now = self._clock()
        just_refreshed = (
            tokens.token_refreshed_at is not None and now - tokens.token_refreshed_at < REUSE_WINDOW
        )
        margin = timedelta(0) if fresh_from_wait or just_refreshed else REFRESH_MARGIN
        return expires - now <= margin

    async def _wait_for_refresh(self, connection_id: str, deadline: float) -> None:
        if time.monotonic() >= deadline:
            raise fail("MANUFACTURER_UNAVAILABLE")
        event = self._refreshed.setdefault(connection_id, asyncio.Event())
        # Woken at once by a refresh in this process; re-checks the database in any case,
        # for refreshes on other replicas.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=_POLL_SECONDS)

    def _wake(self, connection_id: str) -> None:
        event = self._refreshed.pop(connection_id, None)
        if event is not None:
            event.set()

    async def _refresh(self, tokens: StoredTokens) -> tuple[str, int] | None:
        connection_id = tokens.connection_id
        generation = tokens.token_generation
        try:
            manufacturer = self._catalog.get(tokens.manufacturer)
            if manufacturer is None:
                raise fail("MANUFACTURER_UNAVAILABLE")
            can_refresh = manufacturer.oauth is not None or bool(
                manufacturer.credentials and manufacturer.credentials.token_endpoint
            )
            if tokens.refresh_token_sealed is None or not can_refresh:
                # Nothing to refresh with: only the customer can grant access again.
                await self._store.write(
                    lambda tx: tx.mark_needs_reauthorization(
                        connection_id, self._clock(), generation
                    )
                )
                raise fail("CONNECTION_NEEDS_REAUTHORIZATION")
            refresh_token = self._sealer.open_text(
                tokens.refresh_token_sealed, token_context(connection_id, "refresh")
            )
            try:
                if manufacturer.oauth is not None:
                    fresh = await refresh_tokens(
                        manufacturer,
                        refresh_token=refresh_token,
                        client_secret=client_secret_for(manufacturer, self._secrets_env),
                    )
                else:
                    fresh = await refresh_credential_tokens(
                        manufacturer,
                        refresh_token=refresh_token,
                        client_secret=credential_client_secret(manufacturer, self._secrets_env),
                    )
            except InvalidGrant:
                log.warning(
                    "refresh refused for connection %s: re-authorization needed", connection_id
                )
                await self._store.write(
                    lambda tx: tx.mark_needs_reauthorization(
                        connection_id, self._clock(), generation
                    )
                )
                raise fail("CONNECTION_NEEDS_REAUTHORIZATION") from None
            except TokenExchangeError as exc:
                log.warning("refresh failed for connection %s: %s", connection_id, exc.oauth_error)
                raise fail("MANUFACTURER_UNAVAILABLE") from None
            access_sealed = self._sealer.seal_text(
                fresh.access_token, token_context(connection_id, "access")
            )
            refresh_sealed = self._sealer.seal_text(
                fresh.refresh_token or refresh_token, token_context(connection_id, "refresh")
            )
            now = self._clock()
            stored = await self._store.write(
                lambda tx: tx.store_refreshed_tokens(
                    connection_id,
                    access_token_sealed=access_sealed,
                    refresh_token_sealed=refresh_sealed,
                    token_expires_at=fresh.expires_at,
                    now=now,
                    generation=generation,
                )
            )
            if not stored:
                # Reconnected or disconnected meanwhile: the old grant's tokens are moot;
                # the caller reads the connection again.
                return None
            log.info("refreshed the access token of connection %s", connection_id)
            return fresh.access_token, tokens.token_generation + 1
        except BaseException:
            # Whatever happened, a failed refresher must not hold the claim.
            await asyncio.shield(
                self._store.write(lambda tx: tx.release_token_refresh(connection_id, generation))
            )
            raise
        finally:
            self._wake(connection_id)
