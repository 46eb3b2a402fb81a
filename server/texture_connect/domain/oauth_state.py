"""The OAuth ``state`` parameter and PKCE verifiers.

``state`` = ``<attempt id>.<secret>``: the attempt id finds the one authorization attempt
it belongs to; the 256-bit secret proves the callback carries the value we issued
(RFC 6749 §10.12). Only the secret's SHA-256 digest is stored, so reading the database
does not yield a usable state; it is compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

from texture_connect.domain.ids import looks_like_id

STATE_SECRET_BYTES = 32  # 256 bits
_SECRET_LENGTH = 43  # base64url of 32 bytes, unpadded


@dataclass(frozen=True)
class IssuedState:
    attempt_id: str
    value: str = field(repr=False)  # give to the manufacturer; never store or log
    secret_hash: str  # store


def issue_state(attempt_id: str) -> IssuedState:
    secret = secrets.token_urlsafe(STATE_SECRET_BYTES)
    return IssuedState(attempt_id, f"{attempt_id}.{secret}", _digest(secret))


def parse_state(value: str) -> tuple[str, str] | None:
    """(attempt id, secret) of a well-formed state; None for anything else."""
    attempt_id, dot, secret = value.partition(".")
    if not dot or not looks_like_id(attempt_id) or len(secret) != _SECRET_LENGTH:
        return None
    return attempt_id, secret


def state_secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(_digest(secret), stored_hash)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_code_verifier() -> str:
    """RFC 7636 §4.1: 43 to 128 characters of [A-Z a-z 0-9 - . _ ~]; 32 random bytes."""
    return secrets.token_urlsafe(32)
