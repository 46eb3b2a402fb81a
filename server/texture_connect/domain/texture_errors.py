"""The normalized ``texture_error`` values appended to redirectUrl when a flow fails
(seed: "Handling the OAuth Callback"), as data: code, meaning, whether a retry may succeed.

RFC 6749 §4.1.2.1 codes that the seed lists pass through as they are; a manufacturer's own
codes are mapped by its catalog entry; anything else becomes ``unknown_error`` with the
original string in ``texture_error_raw``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class TextureError:
    code: str
    meaning: str
    retryable: bool
    source: str  # "texture" or "rfc6749"


TEXTURE_ERRORS: Mapping[str, TextureError] = {
    e.code: e
    for e in (
        TextureError(
            "connect_session_expired",
            "The connect session timed out before authorization completed.",
            False,
            "texture",
        ),
        TextureError(
            "connect_session_already_completed",
            "Authorization was already completed for this session.",
            False,
            "texture",
        ),
        TextureError("oauth_state_mismatch", "CSRF state validation failed.", False, "texture"),
        TextureError(
            "connection_failed",
            "Authorization completed but the token exchange or device connection failed.",
            True,
            "texture",
        ),
        TextureError(
            "device_incompatible",
            "The account has no device compatible with the requested permissions.",
            False,
            "texture",
        ),
        TextureError(
            "subscription_required",
            "The device account lacks an active connected-services subscription.",
            False,
            "texture",
        ),
        TextureError("unknown_error", "An unrecognized error occurred.", False, "texture"),
        TextureError("access_denied", "The customer declined authorization.", False, "rfc6749"),
        TextureError(
            "server_error",
            "The manufacturer's authorization server encountered an unexpected error.",
            True,
            "rfc6749",
        ),
        TextureError(
            "temporarily_unavailable",
            "The manufacturer's authorization server is temporarily unavailable.",
            True,
            "rfc6749",
        ),
    )
}

# RFC 6749 §4.1.2.1 codes that pass through unchanged.
PASS_THROUGH = frozenset(code for code, e in TEXTURE_ERRORS.items() if e.source == "rfc6749")


def normalize_authorization_error(
    raw: str, manufacturer_codes: Mapping[str, str]
) -> tuple[str, str | None]:
    """(texture_error, texture_error_raw or None) for an ``error`` from a manufacturer."""
    if raw in PASS_THROUGH:
        return raw, None
    mapped = manufacturer_codes.get(raw)
    if mapped is not None and mapped in TEXTURE_ERRORS and mapped != "unknown_error":
        return mapped, None
    return "unknown_error", raw
