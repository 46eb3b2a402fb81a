"""The OAuth state parameter (RFC 6749 §10.12) and PKCE verifiers (RFC 7636 §4.1)."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from texture_connect.domain.ids import new_id
from texture_connect.domain.oauth_state import (
    STATE_SECRET_BYTES,
    issue_state,
    new_code_verifier,
    parse_state,
    state_secret_matches,
)

ATTEMPT = new_id()


def _secret(value: str) -> str:
    return value.partition(".")[2]


def test_state_is_attempt_id_dot_secret() -> None:
    issued = issue_state(ATTEMPT)
    assert issued.attempt_id == ATTEMPT
    attempt, dot, secret = issued.value.partition(".")
    assert (attempt, dot) == (ATTEMPT, ".")
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", secret), secret


def test_state_secret_has_at_least_256_bits() -> None:
    assert STATE_SECRET_BYTES * 8 >= 256
    secret = _secret(issue_state(ATTEMPT).value)
    raw = base64.urlsafe_b64decode(secret + "=")
    assert len(raw) * 8 >= 256


def test_states_are_unique() -> None:
    values = {issue_state(ATTEMPT).value for _ in range(1_000)}
    assert len(values) == 1_000


def test_secret_hash_is_sha256_of_the_secret() -> None:
    issued = issue_state(ATTEMPT)
    secret = _secret(issued.value)
    assert issued.secret_hash == hashlib.sha256(secret.encode()).hexdigest()


def test_secret_hash_does_not_contain_the_secret_or_the_state() -> None:
    issued = issue_state(ATTEMPT)
    secret = _secret(issued.value)
    assert secret not in issued.secret_hash
    assert issued.value not in issued.secret_hash
    assert secret[:8] not in issued.secret_hash


def test_parse_state_round_trips_an_issued_state() -> None:
    issued = issue_state(ATTEMPT)
    assert parse_state(issued.value) == (ATTEMPT, _secret(issued.value))


GOOD_SECRET = "A" * 43


@pytest.mark.parametrize(
    "value",
    [
        "",
        ".",
        "no-dot-at-all",
        ATTEMPT,
        f"{ATTEMPT}.",
        f".{GOOD_SECRET}",
        f"not-an-id.{GOOD_SECRET}",
        f"{ATTEMPT.upper()}.{GOOD_SECRET}",
        f"{ATTEMPT[:-1]}.{GOOD_SECRET}",
        f"{ATTEMPT}x.{GOOD_SECRET}",
        f"{ATTEMPT}.{GOOD_SECRET[:-1]}",
        f"{ATTEMPT}.{GOOD_SECRET}A",
        f" {ATTEMPT}.{GOOD_SECRET}",
        f"{ATTEMPT}.{GOOD_SECRET} ",
        f"{ATTEMPT}:{GOOD_SECRET}",
    ],
)
def test_parse_state_rejects_malformed_values(value: str) -> None:
    assert parse_state(value) is None


def test_parse_state_rejects_a_truncated_issued_state() -> None:
    value = issue_state(ATTEMPT).value
    assert parse_state(value[:-1]) is None
    assert parse_state(value + "x") is None


def test_issued_secret_matches_its_hash() -> None:
    issued = issue_state(ATTEMPT)
    parsed = parse_state(issued.value)
    assert parsed is not None
    assert state_secret_matches(parsed[1], issued.secret_hash)


def test_other_secrets_do_not_match() -> None:
    issued = issue_state(ATTEMPT)
    other = issue_state(ATTEMPT)
    secret = _secret(issued.value)
    assert not state_secret_matches(_secret(other.value), issued.secret_hash)
    assert not state_secret_matches(
        secret[:-1] + ("B" if secret[-1] != "B" else "C"), issued.secret_hash
    )
    assert not state_secret_matches("", issued.secret_hash)
    assert not state_secret_matches(secret, other.secret_hash)


def test_the_hash_itself_is_not_accepted_as_the_secret() -> None:
    issued = issue_state(ATTEMPT)
    assert not state_secret_matches(issued.secret_hash, issued.secret_hash)


def test_code_verifier_follows_rfc_7636() -> None:
    verifier = new_code_verifier()
    assert 43 <= len(verifier) <= 128
    assert re.fullmatch(r"[A-Za-z0-9\-._~]+", verifier)


def test_code_verifiers_are_unique() -> None:
    assert len({new_code_verifier() for _ in range(1_000)}) == 1_000
