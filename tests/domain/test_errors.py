"""Errors as data: the reason registry, ServiceError and violation collection."""

from __future__ import annotations

import pytest

from texture_connect.domain.errors import (
    ERROR_DOMAIN,
    REASONS,
    Code,
    FieldViolation,
    ServiceError,
    Violations,
    fail,
    invalid,
)


def test_error_domain() -> None:
    assert ERROR_DOMAIN == "connect.texturehq.com"


def test_every_reason_is_registered_under_its_own_name() -> None:
    for name, reason in REASONS.items():
        assert reason.name == name
        assert name.isupper()
        assert reason.description.endswith(".")


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("INVALID_REQUEST", Code.INVALID_ARGUMENT),
        ("IDEMPOTENCY_KEY_REUSED", Code.INVALID_ARGUMENT),
        ("API_KEY_MISSING", Code.UNAUTHENTICATED),
        ("API_KEY_INVALID", Code.UNAUTHENTICATED),
        ("CONNECT_KEY_NOT_ALLOWED", Code.PERMISSION_DENIED),
        ("INTERNAL_CREDENTIAL_REQUIRED", Code.PERMISSION_DENIED),
        ("HEADLESS_NOT_ENABLED", Code.PERMISSION_DENIED),
        ("CUSTOMER_NOT_FOUND", Code.NOT_FOUND),
        ("SITE_NOT_FOUND", Code.NOT_FOUND),
        ("CONNECT_SESSION_NOT_FOUND", Code.NOT_FOUND),
        ("CUSTOMER_HAS_NO_SITE", Code.FAILED_PRECONDITION),
        ("INTERNAL", Code.INTERNAL),
        ("UNAVAILABLE", Code.UNAVAILABLE),
    ],
)
def test_reason_codes(name: str, code: Code) -> None:
    assert REASONS[name].code is code
    assert fail(name).code is code


def test_fail_defaults_the_message_to_the_description() -> None:
    error = fail("SITE_NOT_FOUND")
    assert error.message == REASONS["SITE_NOT_FOUND"].description
    assert str(error) == error.message
    assert error.violations == ()
    assert error.metadata == {}


def test_fail_keeps_a_given_message_and_metadata() -> None:
    error = fail("CUSTOMER_NOT_FOUND", "No customer c1.", customer_id="c1")
    assert error.message == "No customer c1."
    assert error.metadata == {"customer_id": "c1"}


def test_fail_with_an_unregistered_reason_is_a_programming_error() -> None:
    with pytest.raises(KeyError):
        fail("NOT_A_REASON")


def test_invalid_lists_every_field_in_the_message() -> None:
    error = invalid([FieldViolation("redirectUrl", "is required"), FieldViolation("tags[3]", "x")])
    assert error.reason.name == "INVALID_REQUEST"
    assert error.code is Code.INVALID_ARGUMENT
    assert error.message == "Invalid fields: redirectUrl, tags[3]."
    assert [v.field for v in error.violations] == ["redirectUrl", "tags[3]"]
    assert isinstance(error, Exception)


def test_violations_collect_in_order_and_raise_together() -> None:
    violations = Violations()
    assert not violations
    violations.raise_if_any()
    violations.add("a", "one")
    violations.add("b.c", "two")
    assert violations
    with pytest.raises(ServiceError) as caught:
        violations.raise_if_any()
    assert caught.value.violations == (FieldViolation("a", "one"), FieldViolation("b.c", "two"))
