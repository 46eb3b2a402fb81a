"""The manufacturer catalog file: the shipped development catalog and the checks on entries."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from texture_connect.domain.catalog import AuthKind, Catalog
from texture_connect.manufacturers.catalog_file import (
    DEVELOPMENT_CATALOG,
    CatalogError,
    load_catalog,
)

SANDBOX = "http://127.0.0.1:8080/sandbox"


@pytest.fixture(scope="module")
def development() -> Catalog:
    return load_catalog(DEVELOPMENT_CATALOG, sandbox_url=SANDBOX)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "manufacturers.toml"
    path.write_text(textwrap.dedent(text))
    return path


def load(tmp_path: Path, text: str, sandbox_url: str = SANDBOX) -> Catalog:
    return load_catalog(write(tmp_path, text), sandbox_url=sandbox_url)


def load_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(CatalogError) as caught:
        load(tmp_path, text)
    return str(caught.value)


OAUTH_ENTRY = """
[manufacturers.acme]
name = "Acme"
device_types = ["battery"]
auth = "oauth2"
adapter = "sandbox"
oauth.authorization_endpoint = "{sandbox}/acme/oauth/authorize"
oauth.token_endpoint = "{sandbox}/acme/oauth/token"
oauth.client_id = "texture-dev"
oauth.client_secret_env = "ACME_SECRET"
oauth.scopes = ["read", "write"]
oauth.issuer = "{sandbox}/acme"
error_codes.login_cancelled = "access_denied"
"""

CREDENTIALS_ENTRY = """
[manufacturers.acme]
name = "Acme"
device_types = ["battery"]
auth = "credentials"
credentials.login_url = "{sandbox}/acme/api/login"
credentials.otp_url = "{sandbox}/acme/api/login/otp"
credentials.client_id = "texture-dev"
credentials.client_secret_env = "ACME_SECRET"
"""


def without(entry: str, key: str) -> str:
    return "".join(line + "\n" for line in entry.splitlines() if not line.startswith(key))


# --- the development catalog ----------------------------------------------------------


@pytest.mark.parametrize("slug", ["tesla", "enphase", "honeywell", "daikin"])
def test_development_catalog_has_the_seeds_oauth_manufacturers(
    development: Catalog, slug: str
) -> None:
    manufacturer = development.get(slug)
    assert manufacturer is not None
    assert manufacturer.auth_kind is AuthKind.OAUTH2
    assert manufacturer.oauth is not None
    assert manufacturer.oauth.client_id
    assert manufacturer.oauth.pkce is True
    assert manufacturer.adapter == "sandbox"


def test_development_catalog_has_generac_as_a_credentials_manufacturer(
    development: Catalog,
) -> None:
    generac = development.get("generac")
    assert generac is not None
    assert generac.auth_kind is AuthKind.CREDENTIALS
    assert generac.oauth is None


def test_development_catalog_slugs_and_device_types(development: Catalog) -> None:
    tesla = development.get("tesla")
    assert tesla is not None
    assert tesla.display_name == "Tesla"
    assert {"battery", "vehicle"} <= set(tesla.device_types)
    honeywell = development.get("honeywell")
    assert honeywell is not None
    assert honeywell.device_types == ("thermostat",)


def test_development_catalog_substitutes_the_sandbox_url(development: Catalog) -> None:
    tesla = development.get("tesla")
    assert tesla is not None and tesla.oauth is not None
    assert tesla.oauth.authorization_endpoint == f"{SANDBOX}/tesla/oauth/authorize"
    assert tesla.oauth.token_endpoint == f"{SANDBOX}/tesla/oauth/token"
    assert tesla.oauth.issuer == f"{SANDBOX}/tesla"
    for manufacturer in development.manufacturers.values():
        if manufacturer.oauth is not None:
            assert "{sandbox}" not in repr(manufacturer.oauth)
            assert manufacturer.oauth.authorization_endpoint.startswith(SANDBOX + "/")


def test_development_catalog_names_secrets_by_environment_variable(
    development: Catalog,
) -> None:
    for manufacturer in development.manufacturers.values():
        if manufacturer.oauth is not None:
            assert manufacturer.oauth.client_secret_env.isupper()


def test_development_catalog_maps_manufacturer_error_codes(development: Catalog) -> None:
    tesla = development.get("tesla")
    assert tesla is not None
    assert tesla.error_codes["login_cancelled"] == "access_denied"
    enphase = development.get("enphase")
    assert enphase is not None
    assert enphase.error_codes["no_active_subscription"] == "subscription_required"


# --- loading a file -------------------------------------------------------------------


def test_oauth_entry_loads_every_field(tmp_path: Path) -> None:
    catalog = load(tmp_path, OAUTH_ENTRY)
    acme = catalog.get("acme")
    assert acme is not None
    assert acme.display_name == "Acme"
    assert acme.device_types == ("battery",)
    assert acme.auth_kind is AuthKind.OAUTH2
    assert acme.oauth is not None
    assert acme.oauth.client_secret_env == "ACME_SECRET"
    assert acme.oauth.scopes == ("read", "write")
    assert acme.error_codes == {"login_cancelled": "access_denied"}


@pytest.mark.parametrize(
    "sandbox_url",
    ["https://connect.test/sandbox", "https://connect.test/sandbox/"],
)
def test_sandbox_placeholder_is_replaced_without_a_double_slash(
    tmp_path: Path, sandbox_url: str
) -> None:
    acme = load(tmp_path, OAUTH_ENTRY, sandbox_url).get("acme")
    assert acme is not None and acme.oauth is not None
    assert acme.oauth.authorization_endpoint == "https://connect.test/sandbox/acme/oauth/authorize"
    assert acme.oauth.issuer == "https://connect.test/sandbox/acme"


def test_defaults_of_optional_fields(tmp_path: Path) -> None:
    text = without(without(without(OAUTH_ENTRY, "oauth.scopes"), "oauth.issuer"), "adapter")
    acme = load(tmp_path, text).get("acme")
    assert acme is not None and acme.oauth is not None
    assert acme.adapter == "sandbox"
    assert acme.oauth.scopes == ()
    assert acme.oauth.pkce is True
    assert acme.oauth.issuer == ""


def test_pkce_can_be_turned_off(tmp_path: Path) -> None:
    acme = load(tmp_path, OAUTH_ENTRY + "oauth.pkce = false\n").get("acme")
    assert acme is not None and acme.oauth is not None
    assert acme.oauth.pkce is False


def test_credentials_entry_needs_no_oauth_table(tmp_path: Path) -> None:
    acme = load(tmp_path, CREDENTIALS_ENTRY).get("acme")
    assert acme is not None
    assert acme.auth_kind is AuthKind.CREDENTIALS
    assert acme.oauth is None


def test_generic_json_with_device_api_url_loads(tmp_path: Path) -> None:
    text = CREDENTIALS_ENTRY + 'adapter = "generic_json"\ndevice_api_url = "{sandbox}/acme/api"\n'
    acme = load(tmp_path, text).get("acme")
    assert acme is not None
    assert acme.adapter == "generic_json"
    assert acme.device_api_url == f"{SANDBOX}/acme/api"


# --- bad entries ----------------------------------------------------------------------


@pytest.mark.parametrize("slug", ["Acme", "ACME", "-acme", "_acme", '"ac me"', '"acme!"', "a" * 65])
def test_bad_slug_is_refused(tmp_path: Path, slug: str) -> None:
    message = load_error(
        tmp_path, CREDENTIALS_ENTRY.replace("[manufacturers.acme]", f"[manufacturers.{slug}]")
    )
    assert "slug" in message


@pytest.mark.parametrize("slug", ["acme", "acme-2", "acme_energy", "9volt", "a" * 64])
def test_good_slugs_load(tmp_path: Path, slug: str) -> None:
    text = CREDENTIALS_ENTRY.replace("[manufacturers.acme]", f"[manufacturers.{slug}]")
    assert load(tmp_path, text).get(slug) is not None


@pytest.mark.parametrize(
    "device_types", ['["toaster"]', '["battery", "toaster"]', "[]", '["Battery"]']
)
def test_unknown_or_missing_device_type_is_refused(tmp_path: Path, device_types: str) -> None:
    text = CREDENTIALS_ENTRY.replace('["battery"]', device_types)
    assert "manufacturers.acme.device_types" in load_error(tmp_path, text)


@pytest.mark.parametrize("device_types", ['"battery"', "[1]"])
def test_device_types_must_be_a_list_of_strings(tmp_path: Path, device_types: str) -> None:
    text = CREDENTIALS_ENTRY.replace('["battery"]', device_types)
    assert "manufacturers.acme.device_types must be a list of strings" in load_error(tmp_path, text)


def test_missing_device_types_is_refused(tmp_path: Path) -> None:
    text = without(CREDENTIALS_ENTRY, "device_types")
    assert "manufacturers.acme.device_types" in load_error(tmp_path, text)


@pytest.mark.parametrize("auth", ['"oauth"', '"OAUTH2"', '"password"', None])
def test_bad_auth_kind_is_refused(tmp_path: Path, auth: str | None) -> None:
    text = without(CREDENTIALS_ENTRY, "auth")
    if auth is not None:
        text += f"auth = {auth}\n"
    assert "manufacturers.acme.auth must be 'oauth2' or 'credentials'" in load_error(tmp_path, text)


def test_unknown_adapter_is_refused(tmp_path: Path) -> None:
    text = CREDENTIALS_ENTRY + 'adapter = "scraper"\n'
    assert "manufacturers.acme.adapter" in load_error(tmp_path, text)


def test_missing_oauth_table_is_refused(tmp_path: Path) -> None:
    text = without(OAUTH_ENTRY, "oauth.")
    assert "manufacturers.acme.oauth is required" in load_error(tmp_path, text)


@pytest.mark.parametrize(
    "field", ["authorization_endpoint", "token_endpoint", "client_id", "client_secret_env"]
)
def test_missing_oauth_field_is_named(tmp_path: Path, field: str) -> None:
    text = without(OAUTH_ENTRY, f"oauth.{field}")
    assert f"manufacturers.acme.oauth.{field} is required" in load_error(tmp_path, text)


def test_empty_oauth_field_is_refused(tmp_path: Path) -> None:
    text = OAUTH_ENTRY.replace('oauth.client_id = "texture-dev"', 'oauth.client_id = ""')
    assert "manufacturers.acme.oauth.client_id is required" in load_error(tmp_path, text)


def test_scopes_must_be_a_list_of_strings(tmp_path: Path) -> None:
    text = OAUTH_ENTRY.replace('["read", "write"]', '"read write"')
    assert "manufacturers.acme.oauth.scopes must be a list of strings" in load_error(tmp_path, text)


@pytest.mark.parametrize("target", ["acess_denied", "invalid_grant", "ACCESS_DENIED"])
def test_error_code_mapped_to_an_unknown_target_is_refused(tmp_path: Path, target: str) -> None:
    text = OAUTH_ENTRY + f'error_codes.bad_code = "{target}"\n'
    message = load_error(tmp_path, text)
    assert "manufacturers.acme.error_codes.bad_code" in message
    assert target in message


def test_error_codes_must_be_a_table(tmp_path: Path) -> None:
    text = CREDENTIALS_ENTRY + 'error_codes = "access_denied"\n'
    assert "manufacturers.acme.error_codes must be a table" in load_error(tmp_path, text)


def test_generic_json_without_device_api_url_is_refused(tmp_path: Path) -> None:
    text = CREDENTIALS_ENTRY + 'adapter = "generic_json"\n'
    assert "manufacturers.acme.device_api_url is required" in load_error(tmp_path, text)


@pytest.mark.parametrize("name", [None, '""', "3"])
def test_missing_name_is_refused(tmp_path: Path, name: str | None) -> None:
    text = without(CREDENTIALS_ENTRY, "name")
    if name is not None:
        text += f"name = {name}\n"
    assert "manufacturers.acme.name is required" in load_error(tmp_path, text)


def test_bad_entry_among_good_ones_is_named(tmp_path: Path) -> None:
    good = CREDENTIALS_ENTRY
    bad = CREDENTIALS_ENTRY.replace("acme", "broken").replace('["battery"]', '["toaster"]')
    assert "manufacturers.broken.device_types" in load_error(tmp_path, good + bad)


@pytest.mark.parametrize(
    "text", ["", "title = 'x'\n", "manufacturers = {}\n", "manufacturers = 3\n"]
)
def test_file_without_entries_is_refused(tmp_path: Path, text: str) -> None:
    assert "no [manufacturers.<slug>] entries" in load_error(tmp_path, text)


def test_invalid_toml_is_refused(tmp_path: Path) -> None:
    assert "cannot read manufacturer catalog" in load_error(tmp_path, "[manufacturers.acme\n")


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot read manufacturer catalog"):
        load_catalog(tmp_path / "absent.toml", sandbox_url=SANDBOX)


def test_catalog_error_is_a_value_error() -> None:
    assert issubclass(CatalogError, ValueError)
