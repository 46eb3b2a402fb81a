"""API key formats and hashing."""

from __future__ import annotations

import hashlib
import re

import pytest

from texture_connect.domain.keys import (
    KEY_PREFIXES,
    KeyKind,
    display_hint,
    hash_key,
    kind_of,
    new_key,
)


@pytest.mark.parametrize(
    ("kind", "prefix"),
    [
        (KeyKind.SECRET, "tx_sk_"),
        (KeyKind.CONNECT, "tx_ck_"),
        (KeyKind.SCOPED, "tx_scoped_"),
        (KeyKind.INTERNAL, "tx_ik_"),
    ],
)
def test_each_kind_has_its_prefix(kind: KeyKind, prefix: str) -> None:
    assert KEY_PREFIXES[kind] == prefix
    key = new_key(kind)
    assert key.startswith(prefix)
    assert re.fullmatch(re.escape(prefix) + r"[A-Za-z0-9_-]{43}", key), key


def test_every_kind_has_a_prefix() -> None:
    assert set(KEY_PREFIXES) == set(KeyKind)


def test_no_prefix_is_a_prefix_of_another() -> None:
    prefixes = list(KEY_PREFIXES.values())
    for a in prefixes:
        for b in prefixes:
            assert a == b or not b.startswith(a)


@pytest.mark.parametrize("kind", list(KeyKind))
def test_kind_of_recognises_each_kind(kind: KeyKind) -> None:
    assert kind_of(new_key(kind)) is kind


@pytest.mark.parametrize(
    "key", ["", "tx_", "tx_sk", "sk_live_abc", "TX_SK_abc", "xtx_sk_abc", "tx_pk_abc"]
)
def test_kind_of_unknown_key_is_none(key: str) -> None:
    assert kind_of(key) is None


def test_new_keys_are_unique() -> None:
    assert len({new_key(KeyKind.SECRET) for _ in range(1_000)}) == 1_000


@pytest.mark.parametrize("kind", list(KeyKind))
def test_hash_is_sha256_hex_of_the_key(kind: KeyKind) -> None:
    key = new_key(kind)
    digest = hash_key(key)
    assert digest == hashlib.sha256(key.encode()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", digest)


@pytest.mark.parametrize("kind", list(KeyKind))
def test_hash_never_equals_or_contains_the_key(kind: KeyKind) -> None:
    key = new_key(kind)
    digest = hash_key(key)
    assert digest != key
    assert key not in digest
    assert key.removeprefix(KEY_PREFIXES[kind]) not in digest


def test_hash_is_deterministic_and_distinguishes_keys() -> None:
    key = new_key(KeyKind.SCOPED)
    assert hash_key(key) == hash_key(key)
    assert hash_key(key) != hash_key(key + "x")


@pytest.mark.parametrize("kind", list(KeyKind))
def test_display_hint_shows_only_prefix_and_last_four(kind: KeyKind) -> None:
    key = new_key(kind)
    hint = display_hint(key)
    assert hint == f"{KEY_PREFIXES[kind]}…{key[-4:]}"
    secret_part = key.removeprefix(KEY_PREFIXES[kind])
    assert secret_part[:-4] not in hint
    assert len(hint) == len(KEY_PREFIXES[kind]) + 1 + 4


def test_display_hint_of_unrecognised_key_shows_only_last_four() -> None:
    assert display_hint("sk_live_abcdefgh1234") == "…1234"
