"""The client side of OAuth 2.0 with each manufacturer (Authlib)."""

from __future__ import annotations

from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from texture_connect.domain.catalog import Manufacturer


def authorization_url(
    manufacturer: Manufacturer, *, state: str, code_verifier: str, redirect_uri: str
) -> str:
    """The URL that starts the authorization code grant (RFC 6749 §4.1.1) with PKCE
    S256 (RFC 7636 §4.3): only the challenge travels; the verifier stays with us."""
    oauth = manufacturer.oauth
    if oauth is None:
        raise ValueError(f"{manufacturer.slug} does not use OAuth")
    extra: dict[str, str] = {}
    if oauth.pkce:
        extra["code_challenge"] = create_s256_code_challenge(code_verifier)
        extra["code_challenge_method"] = "S256"
    return str(
        prepare_grant_uri(
            oauth.authorization_endpoint,
            client_id=oauth.client_id,
            response_type="code",
            redirect_uri=redirect_uri,
            scope=" ".join(oauth.scopes) or None,
            state=state,
            **extra,
        )
    )
