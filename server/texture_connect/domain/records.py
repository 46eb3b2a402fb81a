"""The records the rules reason about. Storage returns these; the core never reads rows."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from texture_connect.domain.addresses import Address
from texture_connect.domain.keys import KeyKind


@dataclass(frozen=True)
class Organization:
    id: str
    name: str
    headless_enabled: bool


@dataclass(frozen=True)
class Principal:
    """Who is calling: the kind of key it used and, for organization keys, whose it is.
    Texture's own front end calls with an internal credential and no organization."""

    key_kind: KeyKind
    key_id: str
    organization: Organization | None = None
    # Scoped keys only: the customer (and connection) the key was minted for.
    customer_id: str = ""
    connection_id: str = ""


@dataclass(frozen=True)
class Customer:
    id: str
    organization_id: str
    reference_id: str
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    phone: str = ""
    # Bookkeeping, not content: two reads of one customer compare equal across updates
    # of nothing but time.
    created_at: datetime | None = field(default=None, compare=False)
    updated_at: datetime | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Site:
    id: str
    organization_id: str
    customer_id: str
    address: Address
    address_key: str
    created_at: datetime | None = field(default=None, compare=False)


class SessionStatus(enum.Enum):
    PENDING = "pending"
    COMPLETED = "completed"
    FAILED = "failed"
    EXPIRED = "expired"


@dataclass(frozen=True)
class ConnectSession:
    id: str
    organization_id: str
    mode: str
    status: SessionStatus
    customer_id: str
    site_id: str
    reference_id: str
    tags: tuple[str, ...]
    client_name: str
    redirect_url: str
    manufacturers: tuple[str, ...]
    device_types: tuple[str, ...]
    customer_form_bypassed: bool
    created_at: datetime
    expires_at: datetime
    ended_at: datetime | None = None
    error: str = ""
    # The hosted flow (standard mode): see texture_connect.domain.hosted_flow.
    customer_info: dict[str, Any] | None = None
    flow_step: str = "welcome"
    flow_manufacturer: str = ""
    flow_error: str = ""
    link_token_sealed: bytes | None = field(default=None, repr=False)
    pending_tokens_sealed: bytes | None = field(default=None, repr=False)
    pending_devices: tuple[dict[str, str], ...] = ()
    otp_challenge_sealed: bytes | None = field(default=None, repr=False)

    def status_at(self, now: datetime) -> SessionStatus:
        """A pending session past its expiry is expired, whether or not anything wrote it."""
        if self.status is SessionStatus.PENDING and now >= self.expires_at:
            return SessionStatus.EXPIRED
        return self.status


@dataclass(frozen=True)
class AuthorizationAttempt:
    id: str
    session_id: str
    manufacturer: str
    state_hash: str
    code_verifier_sealed: bytes
    used_at: datetime | None


@dataclass(frozen=True)
class ConnectedDevice:
    """A device as the manufacturer reported it, to be stored for a customer."""

    external_id: str
    type: str
    model: str
    serial_number: str
    name: str


@dataclass(frozen=True)
class Device:
    id: str
    organization_id: str
    customer_id: str
    site_id: str  # empty when the customer has no site yet
    connection_id: str
    manufacturer: str
    external_id: str
    type: str
    model: str
    serial_number: str
    name: str
    reference_id: str
    tags: tuple[str, ...]
    status: str  # "connected" or "disconnected"
    created_at: datetime
    updated_at: datetime


class ConnectionStatus(enum.Enum):
    ACTIVE = "active"
    NEEDS_REAUTHORIZATION = "needs_reauthorization"
    DISCONNECTED = "disconnected"


@dataclass(frozen=True)
class ManufacturerConnection:
    id: str
    organization_id: str
    customer_id: str
    manufacturer: str
    status: ConnectionStatus
    scope: str
    token_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, repr=False)
class StoredTokens:
    """A connection's sealed tokens and the bookkeeping of their refresh."""

    connection_id: str
    organization_id: str
    manufacturer: str
    status: ConnectionStatus
    access_token_sealed: bytes | None
    refresh_token_sealed: bytes | None
    token_expires_at: datetime | None
    # Bumped by every token change: waiters compare it to see a refresh land.
    token_generation: int
    refresh_claimed_at: datetime | None
    token_refreshed_at: datetime | None = None

    def __repr__(self) -> str:
        return f"StoredTokens({self.connection_id!r}, generation={self.token_generation})"


@dataclass(frozen=True)
class DeviceFilter:
    """ListDevices filters; empty strings match everything. ``customer_id`` is also how a
    scoped key is confined to its own customer."""

    customer_id: str = ""
    site_id: str = ""
    reference_id: str = ""
    tag: str = ""
    manufacturer: str = ""
    device_type: str = ""
