"""The authorization request to a manufacturer (RFC 6749 §4.1.1, PKCE S256 RFC 7636 §4.3)."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import replace
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from texture_connect.domain.catalog import AuthKind, Manufacturer, OAuthSettings
from texture_connect.domain.ids import new_id
from texture_connect.domain.oauth_state import issue_state, new_code_verifier
from texture_connect.manufacturers.oauth import authorization_url

REDIRECT_URI = "https://connect.example.test/oauth/callback?flow=headless"
OAUTH = OAuthSettings(
    authorization_endpoint="https://auth.tesla.example/oauth2/v3/authorize",
    token_endpoint="https://auth.tesla.example/oauth2/v3/token",
    client_id="texture-dev",
    client_secret_env="TESLA_CLIENT_SECRET",
    scopes=("openid", "offline_access", "energy_device_data"),
)
TESLA = Manufacturer("tesla", "Tesla", ("battery",), AuthKind.OAUTH2, "sandbox", OAUTH)


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def build(manufacturer: Manufacturer = TESLA) -> tuple[str, str, str]:
    """(url, state, verifier)"""
    state = issue_state(new_id()).value
    verifier = new_code_verifier()
    url = authorization_url(
        manufacturer, state=state, code_verifier=verifier, redirect_uri=REDIRECT_URI
    )
    return url, state, verifier


def query(url: str) -> dict[str, str]:
    values = parse_qs(urlsplit(url).query, keep_blank_values=True, strict_parsing=True)
    assert all(len(v) == 1 for v in values.values()), values
    return {k: v[0] for k, v in values.items()}


def test_url_starts_at_the_authorization_endpoint() -> None:
    url, _, _ = build()
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == OAUTH.authorization_endpoint


def test_url_carries_the_authorization_code_request() -> None:
    url, state, verifier = build()
    params = query(url)
    assert params["response_type"] == "code"
    assert params["client_id"] == "texture-dev"
    assert params["redirect_uri"] == REDIRECT_URI
    assert params["scope"] == "openid offline_access energy_device_data"
    assert params["state"] == state
    assert params["code_challenge"] == s256(verifier)
    assert params["code_challenge_method"] == "S256"


def test_s256_helper_matches_rfc_7636_appendix_b() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert s256(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    url = authorization_url(TESLA, state="s", code_verifier=verifier, redirect_uri=REDIRECT_URI)
    assert query(url)["code_challenge"] == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_url_never_contains_the_verifier() -> None:
    for _ in range(50):
        url, _, verifier = build()
        assert verifier not in url
        assert quote(verifier, safe="") not in url
        assert verifier not in query(url).values()
        assert "code_verifier" not in url


def test_url_carries_no_client_secret_or_its_variable_name() -> None:
    url, _, _ = build()
    assert "client_secret" not in url
    assert "TESLA_CLIENT_SECRET" not in url


def test_challenge_differs_per_verifier() -> None:
    first, _, _ = build()
    second, _, _ = build()
    assert query(first)["code_challenge"] != query(second)["code_challenge"]


def test_existing_query_of_the_authorization_endpoint_is_kept() -> None:
    oauth = replace(OAUTH, authorization_endpoint="https://auth.example/authorize?audience=api")
    url, state, _ = build(replace(TESLA, oauth=oauth))
    params = query(url)
    assert params["audience"] == "api"
    assert params["state"] == state


def test_no_scopes_means_no_scope_parameter() -> None:
    url, _, _ = build(replace(TESLA, oauth=replace(OAUTH, scopes=())))
    assert "scope" not in query(url)


def test_without_pkce_no_challenge_is_sent() -> None:
    url, _, verifier = build(replace(TESLA, oauth=replace(OAUTH, pkce=False)))
    params = query(url)
    assert "code_challenge" not in params
    assert "code_challenge_method" not in params
    assert verifier not in url
    assert params["response_type"] == "code"


def test_credentials_manufacturer_has_no_authorization_url() -> None:
    generac = Manufacturer(
        "generac", "Generac PWRcell", ("battery",), AuthKind.CREDENTIALS, "sandbox"
    )
    with pytest.raises(ValueError, match="generac does not use OAuth"):
        build(generac)
