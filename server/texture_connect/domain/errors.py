"""Errors as data: every failure the service reports has a stable reason in this registry.

A reason maps to a gRPC status code and a fixed description. The adapters turn a
``ServiceError`` into ``google.rpc.Status`` with ``ErrorInfo`` (reason, domain) and,
for validation failures, ``BadRequest`` field violations whose paths use the JSON names
of the request (``customerInfo.location.postalCode``). Messages never carry secrets:
they are written here or built from field names, never from a submitted value.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

ERROR_DOMAIN = "connect.texturehq.com"


class Code(enum.Enum):
    """The gRPC status codes the domain uses, by name, so the core imports no grpc."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    UNAVAILABLE = "UNAVAILABLE"
    INTERNAL = "INTERNAL"


@dataclass(frozen=True)
class Reason:
    name: str
    code: Code
    description: str


def _registry(*reasons: Reason) -> dict[str, Reason]:
    return {reason.name: reason for reason in reasons}


REASONS = _registry(
    Reason("INVALID_REQUEST", Code.INVALID_ARGUMENT, "The request has invalid fields."),
    Reason(
        "IDEMPOTENCY_KEY_REUSED",
        Code.INVALID_ARGUMENT,
        "This requestId was already used with a different request in the last 24 hours.",
    ),
    Reason("API_KEY_MISSING", Code.UNAUTHENTICATED, "Send an API key in 'texture-api-key'."),
    Reason("API_KEY_INVALID", Code.UNAUTHENTICATED, "The API key is unknown or revoked."),
    Reason(
        "CONNECT_KEY_NOT_ALLOWED",
        Code.PERMISSION_DENIED,
        "A connect key may only create standard-mode connect sessions; use a secret key.",
    ),
    Reason(
        "INTERNAL_CREDENTIAL_REQUIRED",
        Code.PERMISSION_DENIED,
        "This method is reserved for Texture's own HTTP front end.",
    ),
    Reason(
        "HEADLESS_NOT_ENABLED",
        Code.PERMISSION_DENIED,
        "Headless Connect is an enterprise feature that is not enabled for this organization.",
    ),
    Reason("CUSTOMER_NOT_FOUND", Code.NOT_FOUND, "No such customer in this organization."),
    Reason("SITE_NOT_FOUND", Code.NOT_FOUND, "No such site in this organization."),
    Reason(
        "CONNECT_SESSION_NOT_FOUND", Code.NOT_FOUND, "No such connect session in this organization."
    ),
    Reason(
        "CUSTOMER_HAS_NO_SITE",
        Code.FAILED_PRECONDITION,
        "The customer has no site yet; pass full customerInfo with a location instead.",
    ),
    Reason(
        "OAUTH_STATE_INVALID",
        Code.INVALID_ARGUMENT,
        "The authorization response has a missing, malformed or unknown state.",
    ),
    Reason(
        "CONNECT_SESSION_NOT_PENDING",
        Code.FAILED_PRECONDITION,
        "The connect session has completed, failed or expired.",
    ),
    Reason(
        "MANUFACTURER_NOT_OFFERED",
        Code.INVALID_ARGUMENT,
        "The manufacturer is not offered by this connect session or does not use OAuth.",
    ),
    Reason("DEVICE_NOT_FOUND", Code.NOT_FOUND, "No such device in this organization."),
    Reason(
        "MANUFACTURER_CONNECTION_NOT_FOUND",
        Code.NOT_FOUND,
        "No such manufacturer connection in this organization.",
    ),
    Reason(
        "SCOPED_KEY_FORBIDDEN",
        Code.PERMISSION_DENIED,
        "This scoped key only opens the devices of the customer it was issued for.",
    ),
    Reason(
        "SECRET_KEY_REQUIRED",
        Code.PERMISSION_DENIED,
        "This method needs a secret key.",
    ),
    Reason(
        "CONNECTION_NEEDS_REAUTHORIZATION",
        Code.FAILED_PRECONDITION,
        "The manufacturer no longer accepts this connection's grant: the customer must "
        "authorize again (create a connect session for the same customer and manufacturer).",
    ),
    Reason(
        "CONNECTION_DISCONNECTED",
        Code.FAILED_PRECONDITION,
        "This device's manufacturer connection was disconnected.",
    ),
    Reason(
        "SUBSCRIPTION_REQUIRED",
        Code.FAILED_PRECONDITION,
        "The manufacturer account lacks an active connected-services subscription.",
    ),
    Reason(
        "DEVICE_NOT_AT_MANUFACTURER",
        Code.FAILED_PRECONDITION,
        "The manufacturer no longer reports this device on the customer's account.",
    ),
    Reason(
        "MANUFACTURER_UNAVAILABLE",
        Code.UNAVAILABLE,
        "The manufacturer did not answer as expected; retry later.",
    ),
    Reason("INTERNAL", Code.INTERNAL, "An internal error occurred."),
    Reason("UNAVAILABLE", Code.UNAVAILABLE, "The service is temporarily unavailable."),
)


@dataclass(frozen=True)
class FieldViolation:
    """One invalid field, named by its JSON path in the request."""

    field: str
    description: str


@dataclass
class ServiceError(Exception):
    """A failure with a registered reason; the gRPC adapter renders it as a rich status."""

    reason: Reason
    message: str = ""
    violations: tuple[FieldViolation, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.message:
            self.message = self.reason.description
        super().__init__(self.message)

    @property
    def code(self) -> Code:
        return self.reason.code


def fail(reason_name: str, message: str = "", **metadata: str) -> ServiceError:
    """The error for a registered reason; unknown names are a programming error."""
    return ServiceError(REASONS[reason_name], message, metadata=dict(metadata))


def invalid(violations: Iterable[FieldViolation]) -> ServiceError:
    found = tuple(violations)
    fields = ", ".join(v.field for v in found)
    return ServiceError(REASONS["INVALID_REQUEST"], f"Invalid fields: {fields}.", found)


class Violations:
    """Collects every violation of a request so the caller sees them all at once."""

    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def add(self, field_path: str, description: str) -> None:
        self.items.append(FieldViolation(field_path, description))

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self) -> None:
        if self.items:
            raise invalid(self.items)
