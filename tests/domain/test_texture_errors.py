"""The normalized texture_error values (seed: "Handling the OAuth Callback")."""

from __future__ import annotations

import pytest

from texture_connect.domain.texture_errors import (
    PASS_THROUGH,
    TEXTURE_ERRORS,
    normalize_authorization_error,
)

TESLA_CODES = {
    "login_cancelled": "access_denied",
    "login_required": "access_denied",
    "no_active_subscription": "subscription_required",
    "vehicle_not_supported": "device_incompatible",
    "weird": "unknown_error",
    "typo": "acess_denied",
}


def test_the_seed_lists_exactly_these_values() -> None:
    assert set(TEXTURE_ERRORS) == {
        "connect_session_expired",
        "connect_session_already_completed",
        "oauth_state_mismatch",
        "connection_failed",
        "device_incompatible",
        "subscription_required",
        "unknown_error",
        "access_denied",
        "server_error",
        "temporarily_unavailable",
    }


def test_rfc_6749_values_are_the_pass_through_set() -> None:
    assert frozenset({"access_denied", "server_error", "temporarily_unavailable"}) == PASS_THROUGH
    for code in PASS_THROUGH:
        assert TEXTURE_ERRORS[code].source == "rfc6749"
    for code in set(TEXTURE_ERRORS) - PASS_THROUGH:
        assert TEXTURE_ERRORS[code].source == "texture"


@pytest.mark.parametrize(
    ("code", "retryable"),
    [
        ("connection_failed", True),
        ("server_error", True),
        ("temporarily_unavailable", True),
        ("access_denied", False),
        ("connect_session_expired", False),
        ("connect_session_already_completed", False),
        ("oauth_state_mismatch", False),
        ("device_incompatible", False),
        ("subscription_required", False),
        ("unknown_error", False),
    ],
)
def test_retryable_matches_the_seed(code: str, retryable: bool) -> None:
    assert TEXTURE_ERRORS[code].retryable is retryable
    assert TEXTURE_ERRORS[code].code == code
    assert TEXTURE_ERRORS[code].meaning


@pytest.mark.parametrize("raw", ["access_denied", "server_error", "temporarily_unavailable"])
def test_rfc_6749_codes_pass_through(raw: str) -> None:
    assert normalize_authorization_error(raw, {}) == (raw, None)
    assert normalize_authorization_error(raw, TESLA_CODES) == (raw, None)


@pytest.mark.parametrize("raw", ["access_denied", "server_error"])
def test_pass_through_is_not_overridden_by_a_manufacturer_map(raw: str) -> None:
    assert normalize_authorization_error(raw, {raw: "connection_failed"}) == (raw, None)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("login_cancelled", "access_denied"),
        ("login_required", "access_denied"),
        ("no_active_subscription", "subscription_required"),
        ("vehicle_not_supported", "device_incompatible"),
    ],
)
def test_manufacturer_codes_are_mapped(raw: str, expected: str) -> None:
    assert normalize_authorization_error(raw, TESLA_CODES) == (expected, None)


def test_mapping_is_per_manufacturer() -> None:
    assert normalize_authorization_error("login_cancelled", {}) == (
        "unknown_error",
        "login_cancelled",
    )


@pytest.mark.parametrize(
    "raw",
    [
        "something_new",
        "",
        "Access_Denied",
        "ACCESS_DENIED",
        " access_denied",
        "invalid_request",
        "unauthorized_client",
        "invalid_scope",
        "unsupported_response_type",
        "connection_failed",
        "oauth_state_mismatch",
    ],
)
def test_unknown_codes_become_unknown_error_with_the_raw_value(raw: str) -> None:
    assert normalize_authorization_error(raw, TESLA_CODES) == ("unknown_error", raw)


def test_code_mapped_to_unknown_error_keeps_the_raw_value() -> None:
    assert normalize_authorization_error("weird", TESLA_CODES) == ("unknown_error", "weird")


def test_code_mapped_to_an_unlisted_value_becomes_unknown_error() -> None:
    assert normalize_authorization_error("typo", TESLA_CODES) == ("unknown_error", "typo")
