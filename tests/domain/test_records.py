"""Connect session status over time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from texture_connect.domain.records import ConnectSession, SessionStatus

CREATED = datetime(2026, 4, 20, 12, 0, tzinfo=UTC)
EXPIRES = CREATED + timedelta(minutes=30)


def session(status: SessionStatus) -> ConnectSession:
    return ConnectSession(
        id="cs_1",
        organization_id="org_1",
        mode="standard",
        status=status,
        customer_id="c_1",
        site_id="",
        reference_id="ref",
        tags=(),
        client_name="Energy Coffee",
        redirect_url="https://mycompany.com/app",
        manufacturers=(),
        device_types=(),
        customer_form_bypassed=False,
        created_at=CREATED,
        expires_at=EXPIRES,
    )


def test_pending_session_before_expiry_is_pending() -> None:
    assert session(SessionStatus.PENDING).status_at(EXPIRES - timedelta(seconds=1)) is (
        SessionStatus.PENDING
    )


@pytest.mark.parametrize("after", [timedelta(0), timedelta(seconds=1), timedelta(days=1)])
def test_pending_session_at_or_past_expiry_is_expired(after: timedelta) -> None:
    assert session(SessionStatus.PENDING).status_at(EXPIRES + after) is SessionStatus.EXPIRED


@pytest.mark.parametrize(
    "status", [SessionStatus.COMPLETED, SessionStatus.FAILED, SessionStatus.EXPIRED]
)
def test_ended_session_keeps_its_status_after_expiry(status: SessionStatus) -> None:
    assert session(status).status_at(EXPIRES + timedelta(days=1)) is status
