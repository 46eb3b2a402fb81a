"""Encryption at rest for manufacturer tokens and PKCE verifiers (AES-256-GCM).

Keys are 32 random bytes, written as URL-safe base64. ``TEXTURE_ENCRYPTION_KEY`` holds
the current key, optionally followed by older keys separated by commas: new values are
sealed with the first key, and any listed key opens a value, so a key can be rotated by
prepending the new one and dropping the old one once nothing sealed with it remains.
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_VERSION = b"\x01"
_NONCE_BYTES = 12


class DecryptionError(Exception):
    """A sealed value did not open with any configured key."""


def new_encryption_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def _decode_key(text: str) -> bytes:
    raw = base64.urlsafe_b64decode(text.strip() + "=" * (-len(text.strip()) % 4))
    if len(raw) != 32:
        raise ValueError("an encryption key must be 32 bytes of URL-safe base64")
    return raw


class Sealer:
    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ValueError("at least one encryption key is required")
        self._keys = [AESGCM(_decode_key(k)) for k in keys]

    def __repr__(self) -> str:
        return f"Sealer(keys={len(self._keys)})"

    @classmethod
    def from_setting(cls, setting: str) -> Sealer:
        return cls([k for k in setting.split(",") if k.strip()])

    def seal(self, plaintext: bytes, context: str) -> bytes:
        """``context`` (e.g. the row id) is bound as associated data, so a sealed value
        copied into another row does not open there."""
        nonce = os.urandom(_NONCE_BYTES)
        return _VERSION + nonce + self._keys[0].encrypt(nonce, plaintext, context.encode())

    def seal_text(self, plaintext: str, context: str) -> bytes:
        return self.seal(plaintext.encode(), context)

    def open_text(self, sealed: bytes, context: str) -> str:
        return self.open(sealed, context).decode()

    def open(self, sealed: bytes, context: str) -> bytes:
        if not sealed.startswith(_VERSION):
            raise DecryptionError("unknown sealed-value format")
        nonce = sealed[1 : 1 + _NONCE_BYTES]
        body = sealed[1 + _NONCE_BYTES :]
        for key in self._keys:
            try:
                return key.decrypt(nonce, body, context.encode())
            except InvalidTag:
                continue
        raise DecryptionError("no configured key opens this value")


def read_or_create_secret(path: Path, make: Callable[[], str]) -> str:
    """A secret kept in a file readable by its owner only: created once (atomically, so
    two processes starting together agree on one value), then read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    value = make()
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def development_key(data_dir: Path) -> str:
    """A key generated once into the data directory, for development only."""
    return read_or_create_secret(data_dir / "encryption.key", new_encryption_key)
