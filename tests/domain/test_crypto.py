"""Encryption at rest (AES-256-GCM) with key rotation, and the development key file."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest

from texture_connect.crypto import DecryptionError, Sealer, development_key, new_encryption_key

CONTEXT = "conn_cabc123"


def test_new_key_is_32_bytes_of_urlsafe_base64() -> None:
    key = new_encryption_key()
    assert len(base64.urlsafe_b64decode(key)) == 32
    assert new_encryption_key() != key


@pytest.mark.parametrize("plaintext", [b"", b"refresh-token", bytes(range(256)) * 10])
def test_seal_open_round_trip(plaintext: bytes) -> None:
    sealer = Sealer([new_encryption_key()])
    assert sealer.open(sealer.seal(plaintext, CONTEXT), CONTEXT) == plaintext


def test_seal_text_open_text_round_trip() -> None:
    sealer = Sealer([new_encryption_key()])
    assert sealer.open_text(sealer.seal_text("tökén ✓", CONTEXT), CONTEXT) == "tökén ✓"


def test_sealed_value_hides_the_plaintext() -> None:
    sealer = Sealer([new_encryption_key()])
    secret = b"super-secret-access-token"
    assert secret not in sealer.seal(secret, CONTEXT)


def test_sealing_twice_gives_different_values() -> None:
    sealer = Sealer([new_encryption_key()])
    assert sealer.seal(b"x", CONTEXT) != sealer.seal(b"x", CONTEXT)


def test_wrong_context_does_not_open() -> None:
    sealer = Sealer([new_encryption_key()])
    sealed = sealer.seal(b"token", CONTEXT)
    with pytest.raises(DecryptionError):
        sealer.open(sealed, "conn_other")


def test_wrong_key_does_not_open() -> None:
    sealed = Sealer([new_encryption_key()]).seal(b"token", CONTEXT)
    with pytest.raises(DecryptionError):
        Sealer([new_encryption_key()]).open(sealed, CONTEXT)


def test_tampered_value_does_not_open() -> None:
    sealer = Sealer([new_encryption_key()])
    sealed = bytearray(sealer.seal(b"token", CONTEXT))
    sealed[-1] ^= 1
    with pytest.raises(DecryptionError):
        sealer.open(bytes(sealed), CONTEXT)


@pytest.mark.parametrize("sealed", [b"", b"\x02" + b"\x00" * 40, b"plain text"])
def test_unknown_format_does_not_open(sealed: bytes) -> None:
    with pytest.raises(DecryptionError):
        Sealer([new_encryption_key()]).open(sealed, CONTEXT)


def test_rotation_seals_with_the_first_key_and_opens_with_any() -> None:
    old_key, new_key = new_encryption_key(), new_encryption_key()
    old_value = Sealer([old_key]).seal(b"old", CONTEXT)

    rotated = Sealer.from_setting(f"{new_key},{old_key}")
    assert rotated.open(old_value, CONTEXT) == b"old"

    new_value = rotated.seal(b"new", CONTEXT)
    assert Sealer([new_key]).open(new_value, CONTEXT) == b"new"
    with pytest.raises(DecryptionError):
        Sealer([old_key]).open(new_value, CONTEXT)


def test_dropping_the_old_key_stops_old_values_opening() -> None:
    old_key, new_key = new_encryption_key(), new_encryption_key()
    old_value = Sealer([old_key]).seal(b"old", CONTEXT)
    with pytest.raises(DecryptionError):
        Sealer.from_setting(new_key).open(old_value, CONTEXT)


def test_setting_tolerates_spaces_empty_entries_and_missing_padding() -> None:
    a, b = new_encryption_key(), new_encryption_key()
    sealer = Sealer.from_setting(f" {a.rstrip('=')} , ,{b},")
    assert repr(sealer) == "Sealer(keys=2)"
    assert Sealer([a]).open(sealer.seal(b"x", CONTEXT), CONTEXT) == b"x"


@pytest.mark.parametrize("setting", ["", " ", ",", " , "])
def test_empty_setting_is_refused(setting: str) -> None:
    with pytest.raises(ValueError, match="at least one encryption key"):
        Sealer.from_setting(setting)


@pytest.mark.parametrize(
    "key",
    [
        "",
        base64.urlsafe_b64encode(b"k" * 16).decode(),
        base64.urlsafe_b64encode(b"k" * 31).decode(),
        base64.urlsafe_b64encode(b"k" * 33).decode(),
    ],
)
def test_key_that_is_not_32_bytes_is_refused(key: str) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Sealer([key])


def test_key_that_is_not_base64_is_refused() -> None:
    with pytest.raises(ValueError):
        Sealer(["short"])


def test_repr_shows_no_key_material() -> None:
    keys = [new_encryption_key(), new_encryption_key()]
    sealer = Sealer(keys)
    text = repr(sealer)
    assert text == "Sealer(keys=2)"
    assert str(sealer) == text
    for key in keys:
        assert key not in text
        assert key.rstrip("=")[:8] not in text


def test_development_key_is_created_once_with_owner_only_permissions(tmp_path: Path) -> None:
    data_dir = tmp_path / "nested" / "data"
    key = development_key(data_dir)
    path = data_dir / "encryption.key"
    assert path.read_text() == key + "\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(base64.urlsafe_b64decode(key)) == 32


def test_development_key_is_reused(tmp_path: Path) -> None:
    first = development_key(tmp_path)
    mtime = (tmp_path / "encryption.key").stat().st_mtime_ns
    assert development_key(tmp_path) == first
    assert (tmp_path / "encryption.key").stat().st_mtime_ns == mtime


def test_development_key_works_with_the_sealer(tmp_path: Path) -> None:
    sealed = Sealer([development_key(tmp_path)]).seal(b"x", CONTEXT)
    assert Sealer([development_key(tmp_path)]).open(sealed, CONTEXT) == b"x"


def test_development_key_reads_an_existing_file(tmp_path: Path) -> None:
    key = new_encryption_key()
    (tmp_path / "encryption.key").write_text(f"  {key}\n\n")
    assert development_key(tmp_path) == key
