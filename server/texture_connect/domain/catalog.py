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
