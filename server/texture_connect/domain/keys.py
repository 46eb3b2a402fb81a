"""API key formats and hashing.

A key is shown once, when it is created; only its SHA-256 digest is stored. Keys carry
256 random bits, so a fast hash is enough: there is nothing to brute-force, and a fast
hash keeps the per-call lookup cheap. The kind is visible in the prefix so a leaked key
is recognisable (and secret scanners can match it).
"""

from __future__ import annotations

import enum
import hashlib
import secrets


class KeyKind(enum.Enum):
    # Server to server; every method.
    SECRET = "secret"
    # Publishable, embedded in front ends: may only create standard-mode sessions.
    CONNECT = "connect"
    # Minted at the end of a flow for one customer's devices.
    SCOPED = "scoped"
    # Texture's own HTTP front end (callback shim, hosted pages).
    INTERNAL = "internal"


KEY_PREFIXES: dict[KeyKind, str] = {
    KeyKind.SECRET: "tx_sk_",
    KeyKind.CONNECT: "tx_ck_",
    KeyKind.SCOPED: "tx_scoped_",
    KeyKind.INTERNAL: "tx_ik_",
}


def new_key(kind: KeyKind) -> str:
    return KEY_PREFIXES[kind] + secrets.token_urlsafe(32)


def kind_of(key: str) -> KeyKind | None:
    for kind, prefix in KEY_PREFIXES.items():
        if key.startswith(prefix):
            return kind
    return None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def display_hint(key: str) -> str:
    """What may be shown about a key after creation: its prefix and last four characters."""
    kind = kind_of(key)
    prefix = KEY_PREFIXES[kind] if kind else ""
    return f"{prefix}…{key[-4:]}"
