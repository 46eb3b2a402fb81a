"""Starting an authorization attempt at an OAuth manufacturer, for headless sessions
(CreateConnection, StartAuthorization) and the hosted pages alike."""

from __future__ import annotations

from datetime import datetime

from texture_connect.crypto import Sealer
from texture_connect.domain import ids
from texture_connect.domain.catalog import Manufacturer
from texture_connect.domain.oauth_state import issue_state, new_code_verifier
from texture_connect.manufacturers.oauth import authorization_url
from texture_connect.storage import Transaction


def verifier_context(attempt_id: str) -> str:
    return f"attempt:{attempt_id}"


def start_authorization(
    tx: Transaction,
    sealer: Sealer,
    *,
    session_id: str,
    manufacturer: Manufacturer,
    callback_url: str,
    now: datetime,
) -> str:
    """A new attempt with its own state and PKCE verifier (sealed at rest); returns the
    manufacturer's authorization URL. Earlier attempts' states stay valid only until used."""
    attempt_id = ids.new_id()
    state = issue_state(attempt_id)
    verifier = new_code_verifier()
    tx.insert_authorization_attempt(
        attempt_id=attempt_id,
        session_id=session_id,
        manufacturer=manufacturer.slug,
        state_hash=state.secret_hash,
        code_verifier_sealed=sealer.seal_text(verifier, verifier_context(attempt_id)),
        now=now,
    )
    return authorization_url(
        manufacturer, state=state.value, code_verifier=verifier, redirect_uri=callback_url
    )
