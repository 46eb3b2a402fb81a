"""The manufacturer catalog as data, and the manufacturerFilters rule."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# The fixed vocabulary of manufacturerFilters.deviceTypes.
DEVICE_TYPES: tuple[str, ...] = (
    "battery",
    "charger",
    "vehicle",
    "thermostat",
    "inverter",
    "meter",
    "water_heater",
    "heat_pump",
)


class AuthKind(enum.Enum):
    OAUTH2 = "oauth2"
    CREDENTIALS = "credentials"


@dataclass(frozen=True)
class OAuthSettings:
    authorization_endpoint: str
    token_endpoint: str
    client_id: str
    # The name of the environment variable holding the client secret, never the secret.
    client_secret_env: str
    scopes: tuple[str, ...] = ()
    pkce: bool = True
    # RFC 9207: the `iss` the manufacturer sends back; empty when it sends none.
    issuer: str = ""


@dataclass(frozen=True)
class CredentialSettings:
    """A credential-based manufacturer's direct sign-in API (manufacturers/credentials.py).

    The customer's username and password go to ``login_url`` once, and a one-time code (when
    the manufacturer asks for one) to ``otp_url``; both answer OAuth-style tokens. We
    authenticate as a client with HTTP Basic ``client_id`` and the secret held in the
    environment variable named ``client_secret_env``."""

    login_url: str
    otp_url: str
    client_id: str
    # The name of the environment variable holding the client secret, never the secret.
    client_secret_env: str
    # Where the refresh token is refreshed with an RFC 6749 §6 refresh grant (same client
    # authentication). Empty: the manufacturer has no refresh, so a connection must be
    # authorized again (the customer signs in again) when its access token expires.
    token_endpoint: str = ""


@dataclass(frozen=True)
class Manufacturer:
    slug: str
    display_name: str
    device_types: tuple[str, ...]
    auth_kind: AuthKind
    adapter: str
    oauth: OAuthSettings | None = None
    # The manufacturer's own OAuth error codes mapped to normalized texture_error values.
    error_codes: Mapping[str, str] = field(default_factory=dict)
    device_api_url: str = ""
    # The sign-in API of an AuthKind.CREDENTIALS manufacturer (the catalog file requires it).
    credentials: CredentialSettings | None = None


@dataclass(frozen=True)
class Catalog:
    manufacturers: Mapping[str, Manufacturer]

    @classmethod
    def of(cls, manufacturers: Iterable[Manufacturer]) -> Catalog:
        return cls({m.slug: m for m in manufacturers})

    def get(self, slug: str) -> Manufacturer | None:
        return self.manufacturers.get(slug)

    def available(
        self, slugs: Iterable[str] = (), device_types: Iterable[str] = ()
    ) -> list[Manufacturer]:
        """The manufacturers a session offers: those named (all when none are), narrowed
        to those with at least one device of the requested types (any when none are)."""
        wanted = set(slugs)
        types = set(device_types)
        return [
            m
            for m in self.manufacturers.values()
            if (not wanted or m.slug in wanted) and (not types or types & set(m.device_types))
        ]
