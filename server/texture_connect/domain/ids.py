"""Identifier formats.

- Resource ids (customers, sites, sessions, keys) are cuid-style: a letter, a base-36
  millisecond timestamp, then random base-36 characters; 25 characters, sortable by
  creation time and collision-resistant (about 98 random bits).
- Generated reference ids are ``texture-generated:<uuidv7>`` as the seed specifies.
- Link tokens are ``link_`` followed by 32 hex digits (128 random bits).
"""

from __future__ import annotations

import secrets
import time
import uuid

_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"
ID_LENGTH = 25
GENERATED_REFERENCE_PREFIX = "texture-generated:"
LINK_TOKEN_PREFIX = "link_"


def _base36(number: int) -> str:
    digits = []
    while True:
        number, remainder = divmod(number, 36)
        digits.append(_BASE36[remainder])
        if number == 0:
            return "".join(reversed(digits))


def new_id(now_ms: int | None = None) -> str:
    """A cuid-style id: ``c`` + 8 timestamp characters + 16 random characters."""
    stamp = _base36(now_ms if now_ms is not None else time.time_ns() // 1_000_000)
    stamp = stamp[-8:].rjust(8, "0")
    width = ID_LENGTH - 1 - len(stamp)
    randomness = _base36(secrets.randbits(5 * width + 8))[-width:].rjust(width, "0")
    return "c" + stamp + randomness


def looks_like_id(value: str) -> bool:
    return len(value) == ID_LENGTH and value[0] == "c" and all(ch in _BASE36 for ch in value)


def uuid7(now_ms: int | None = None) -> uuid.UUID:
    """A UUID version 7 (RFC 9562 §5.7): 48-bit Unix milliseconds, then random bits."""
    millis = now_ms if now_ms is not None else time.time_ns() // 1_000_000
    value = (millis & ((1 << 48) - 1)) << 80
    value |= secrets.randbits(76) & ~(0xF << 76)  # leave the version nibble free
    value |= 0x7 << 76  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 9562 variant 10xx
    return uuid.UUID(int=value)


def generated_reference_id() -> str:
    return f"{GENERATED_REFERENCE_PREFIX}{uuid7()}"


def new_link_token() -> str:
    return LINK_TOKEN_PREFIX + secrets.token_hex(16)
