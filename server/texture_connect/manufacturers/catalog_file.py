"""Loads the manufacturer catalog from TOML (``TEXTURE_MANUFACTURERS_FILE``), checking every
entry so that a mistake stops the server at start rather than a customer mid-flow."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from texture_connect.domain.catalog import (
    DEVICE_TYPES,
    AuthKind,
    Catalog,
    CredentialSettings,
    Manufacturer,
    OAuthSettings,
)
from texture_connect.domain.texture_errors import TEXTURE_ERRORS

DEVELOPMENT_CATALOG = Path(__file__).with_name("development.toml")
ADAPTERS = ("sandbox", "generic_json")
_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class CatalogError(ValueError):
    pass


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CatalogError(f"{where} must be a list of strings")
    return tuple(value)


def _text(table: dict[str, Any], key: str, where: str, sandbox_url: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value:
        raise CatalogError(f"{where}.{key} is required")
    return value.replace("{sandbox}", sandbox_url.rstrip("/"))


def _optional_text(table: dict[str, Any], key: str, sandbox_url: str) -> str:
    return str(table.get(key, "")).replace("{sandbox}", sandbox_url.rstrip("/"))


def _credentials(table: Any, where: str, sandbox_url: str) -> CredentialSettings:
    if not isinstance(table, dict):
        raise CatalogError(f"{where} is required for a credentials manufacturer")
    return CredentialSettings(
        login_url=_text(table, "login_url", where, sandbox_url),
        otp_url=_text(table, "otp_url", where, sandbox_url),
        client_id=_text(table, "client_id", where, sandbox_url),
        client_secret_env=_text(table, "client_secret_env", where, sandbox_url),
        token_endpoint=_optional_text(table, "token_endpoint", sandbox_url),
    )


def _manufacturer(slug: str, entry: dict[str, Any], sandbox_url: str) -> Manufacturer:
    where = f"manufacturers.{slug}"
    if not _SLUG.match(slug):
        raise CatalogError(f"{where}: a slug is lowercase letters, digits, '-' and '_'")
    device_types = _strings(entry.get("device_types", []), f"{where}.device_types")
    unknown = [t for t in device_types if t not in DEVICE_TYPES]
    if not device_types or unknown:
        raise CatalogError(f"{where}.device_types must be some of {', '.join(DEVICE_TYPES)}")
    try:
        auth_kind = AuthKind(entry.get("auth"))
    except ValueError:
        raise CatalogError(f"{where}.auth must be 'oauth2' or 'credentials'") from None
    adapter = entry.get("adapter", "sandbox")
    if adapter not in ADAPTERS:
        raise CatalogError(f"{where}.adapter must be one of {', '.join(ADAPTERS)}")
    oauth = None
    if auth_kind is AuthKind.OAUTH2:
        table = entry.get("oauth")
        if not isinstance(table, dict):
            raise CatalogError(f"{where}.oauth is required for an oauth2 manufacturer")
        o = f"{where}.oauth"
        oauth = OAuthSettings(
            authorization_endpoint=_text(table, "authorization_endpoint", o, sandbox_url),
            token_endpoint=_text(table, "token_endpoint", o, sandbox_url),
            client_id=_text(table, "client_id", o, sandbox_url),
            client_secret_env=_text(table, "client_secret_env", o, sandbox_url),
            scopes=_strings(table.get("scopes", []), f"{o}.scopes"),
            pkce=bool(table.get("pkce", True)),
            issuer=_optional_text(table, "issuer", sandbox_url),
        )
    credentials = None
    if auth_kind is AuthKind.CREDENTIALS:
        credentials = _credentials(entry.get("credentials"), f"{where}.credentials", sandbox_url)
    error_codes = entry.get("error_codes", {})
    if not isinstance(error_codes, dict):
        raise CatalogError(f"{where}.error_codes must be a table")
    for code, target in error_codes.items():
        if target not in TEXTURE_ERRORS:
            raise CatalogError(f"{where}.error_codes.{code} maps to unknown error '{target}'")
    device_api_url = _optional_text(entry, "device_api_url", sandbox_url)
    if adapter == "generic_json" and not device_api_url:
        raise CatalogError(f"{where}.device_api_url is required for the generic_json adapter")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise CatalogError(f"{where}.name is required")
    return Manufacturer(
        slug=slug,
        display_name=name,
        device_types=device_types,
        auth_kind=auth_kind,
        adapter=adapter,
        oauth=oauth,
        error_codes=dict(error_codes),
        device_api_url=device_api_url,
        credentials=credentials,
    )


def load_catalog(path: Path, *, sandbox_url: str) -> Catalog:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CatalogError(f"cannot read manufacturer catalog {path}: {exc}") from exc
    entries = data.get("manufacturers")
    if not isinstance(entries, dict) or not entries:
        raise CatalogError(f"{path}: no [manufacturers.<slug>] entries")
    return Catalog.of(_manufacturer(slug, entry, sandbox_url) for slug, entry in entries.items())
