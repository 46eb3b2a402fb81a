"""The token endpoint, client side: trading an authorization code for tokens and refreshing
them, with Authlib's async httpx client.

Nothing in this module logs, and no exception message it raises contains an authorization
code, a PKCE verifier, a token or a client secret.
"""

from __future__ import annotations

import base64
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus

import httpx

# Imported first on purpose: importing authlib.deprecate installs an "always" filter for its
# warning class, which would otherwise land in front of the "ignore" below.
from authlib.deprecate import AuthlibDeprecationWarning

from texture_connect.domain.catalog import Manufacturer, OAuthSettings
from texture_connect.manufacturers.tls import tls_context

with warnings.catch_warnings():
    # Authlib 1.9 warns, once at import, that it falls back to httpx because httpx2 is not
    # installed. We depend on httpx on purpose; keep the warning out of the server's logs.
    warnings.filterwarnings(
        "ignore",
        message=r"The httpx module is deprecated",
        category=AuthlibDeprecationWarning,
    )
    from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError

__all__ = [
    "ClientSecretMissing",
    "InvalidGrant",
    "TokenExchangeError",
    "TokenSet",
    "client_secret_for",
    "exchange_code",
    "refresh_tokens",
]


@dataclass(frozen=True, repr=False)
class TokenSet:
    """A successful access token response (RFC 6749 §5.1)."""

    access_token: str
    refresh_token: str | None
    expires_at: datetime | None  # UTC; None when the manufacturer sent no lifetime
    scope: str
    token_type: str

    def __repr__(self) -> str:
        # Never show the tokens themselves: reprs end up in logs and tracebacks.
        expires = self.expires_at.isoformat() if self.expires_at else None
        return (
            f"TokenSet(access_token=<redacted>, "
            f"refresh_token={'<redacted>' if self.refresh_token else None}, "
            f"expires_at={expires}, scope={self.scope!r}, token_type={self.token_type!r})"
        )


class TokenExchangeError(Exception):
    """The token endpoint did not give us tokens.

    ``oauth_error`` is the RFC 6749 §5.2 ``error`` code when the manufacturer sent one (or a
    local label such as ``"network_error"`` / ``"invalid_response"``); ``status`` is the HTTP
    status of the token response, or None when there was no response.
    """

    def __init__(
        self, message: str, *, oauth_error: str | None = None, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.oauth_error = oauth_error
        self.status = status


class InvalidGrant(TokenExchangeError):
    """RFC 6749 §5.2 ``invalid_grant``: the code or refresh token is invalid, expired, revoked,
    already used, or was issued to someone else. For a refresh, the grant is dead and the
    customer has to authorize again."""


class ClientSecretMissing(RuntimeError):
    """The environment variable that should hold a manufacturer's client secret is unset."""


def client_secret_for(manufacturer: Manufacturer, env: Mapping[str, str]) -> str:
    """The client secret from ``env[manufacturer.oauth.client_secret_env]``.

    The error names the variable, never a value."""
    oauth = _oauth(manufacturer)
    secret = env.get(oauth.client_secret_env, "")
    if not secret:
        raise ClientSecretMissing(
            f"{manufacturer.slug}: the environment variable {oauth.client_secret_env} "
            "(the OAuth client secret) is not set or is empty"
        )
    return secret


async def exchange_code(
    manufacturer: Manufacturer,
    *,
    code: str,
    code_verifier: str,
    redirect_uri: str,
    client_secret: str,
    timeout: float = 10.0,
) -> TokenSet:
    """The access token request of the authorization code grant (RFC 6749 §4.1.3).

    ``redirect_uri`` must be identical to the one in the authorization request (§4.1.3). The
    PKCE ``code_verifier`` is sent when the manufacturer uses PKCE (RFC 7636 §4.5)."""
    oauth = _oauth(manufacturer)
    params: dict[str, str] = {"code": code, "redirect_uri": redirect_uri}
    if oauth.pkce:
        params["code_verifier"] = code_verifier  # RFC 7636 §4.5
    sensitive = (code, code_verifier, client_secret)
    async with _client(oauth, client_secret, timeout) as client:
        statuses = _record_statuses(client, "access_token_response")
        try:
            # grant_type is explicit: never authorization_response=, with which Authlib
            # guesses the grant and falls back to client_credentials on an error redirect.
            token = await client.fetch_token(
                oauth.token_endpoint, grant_type="authorization_code", **params
            )
        except Exception as exc:
            raise _token_error(manufacturer, "code exchange", exc, statuses, sensitive) from None
    return _token_set(manufacturer, token, default_scope=" ".join(oauth.scopes))


async def refresh_tokens(
    manufacturer: Manufacturer,
    *,
    refresh_token: str,
    client_secret: str,
    timeout: float = 10.0,
) -> TokenSet:
    """Refreshing an access token (RFC 6749 §6).

    No ``scope`` is sent, so the manufacturer grants the original scope (§6). When the answer
    carries no new refresh token, the one we sent stays valid and is returned again; when it
    carries one, the old one must be considered dead (rotation, RFC 9700 §4.14.2)."""
    oauth = _oauth(manufacturer)
    sensitive = (refresh_token, client_secret)
    async with _client(oauth, client_secret, timeout) as client:
        statuses = _record_statuses(client, "refresh_token_response")
        try:
            token = await client.refresh_token(oauth.token_endpoint, refresh_token=refresh_token)
        except Exception as exc:
            raise _token_error(manufacturer, "refresh", exc, statuses, sensitive) from None
    return _token_set(manufacturer, token, default_scope=" ".join(oauth.scopes))


# --------------------------------------------------------------------------------- internals


def _oauth(manufacturer: Manufacturer) -> OAuthSettings:
    if manufacturer.oauth is None:
        raise ValueError(f"{manufacturer.slug} does not use OAuth")
    return manufacturer.oauth


def _client_secret_basic(
    client: Any, method: str, uri: str, headers: Any, body: Any
) -> tuple[str, Any, Any]:
    """RFC 6749 §2.3.1: the client id and secret are application/x-www-form-urlencoded
    before they are joined for HTTP Basic (Authlib's built-in method skips that step)."""
    credentials = f"{quote_plus(client.client_id)}:{quote_plus(client.client_secret)}"
    headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode("ascii")
    return uri, headers, body


def _client(oauth: OAuthSettings, client_secret: str, timeout: float) -> AsyncOAuth2Client:
    return AsyncOAuth2Client(
        client_id=oauth.client_id,
        client_secret=client_secret,
        # RFC 6749 §2.3.1: every authorization server must support HTTP Basic.
        token_endpoint_auth_method=_client_secret_basic,
        timeout=timeout,
        # RFC 6749 §5.1: the token response is answered directly, never redirected.
        follow_redirects=False,
        verify=tls_context(),
    )


def _record_statuses(client: AsyncOAuth2Client, hook: str) -> list[int]:
    """Collects the HTTP status of each token response: Authlib's OAuthError drops it."""
    statuses: list[int] = []

    def record(response: httpx.Response) -> httpx.Response:
        statuses.append(response.status_code)
        return response

    client.register_compliance_hook(hook, record)
    return statuses


def _printable(text: str, limit: int = 200) -> str:
    # RFC 6749 §5.2: error_description is %x20-21 / %x23-5B / %x5D-7E; dropping anything else
    # keeps control characters (log injection) out of our messages.
    return "".join(ch for ch in text if " " <= ch <= "~")[:limit]


def _redact(text: str, sensitive: tuple[str, ...]) -> str:
    for value in sensitive:
        if value:
            text = text.replace(value, "<redacted>")
    return text


def _error_field(value: Any) -> str | None:
    # RFC 6749 §5.2: error is a short ASCII code; anything else is not worth repeating.
    if isinstance(value, str) and value and len(value) <= 64 and value == _printable(value):
        return value
    return None


def _token_error(
    manufacturer: Manufacturer,
    action: str,
    exc: Exception,
    statuses: list[int],
    sensitive: tuple[str, ...],
) -> TokenExchangeError:
    where = f"{manufacturer.slug} token endpoint ({action})"
    status = statuses[-1] if statuses else None
    oauth_error: str | None
    description = ""
    if isinstance(exc, OAuthError):
        # RFC 6749 §5.2: a JSON error response (usually HTTP 400 or 401).
        oauth_error = _error_field(exc.error) or "invalid_response"
        if isinstance(exc.description, str) and exc.description:
            description = _printable(exc.description)
    elif isinstance(exc, httpx.HTTPStatusError):
        # Authlib raises this for any 5xx and for error responses whose body is not JSON.
        status = exc.response.status_code
        oauth_error = "http_error"
        try:
            body = exc.response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and _error_field(body.get("error")):
            oauth_error = str(body["error"])
    elif isinstance(exc, httpx.RequestError):
        # Timeouts, refused connections, TLS failures: no response at all.
        oauth_error = "network_error"
        status = None
        description = type(exc).__name__
    elif isinstance(exc, ValueError | TypeError | KeyError):
        # A 2xx body that is not a JSON object, or a malformed expires_in/expires_at.
        oauth_error = "invalid_response"
        description = "the response is not a valid token response"
    else:
        oauth_error = "unexpected_error"
        description = type(exc).__name__
    message = f"{where} failed"
    if status is not None:
        message += f" with HTTP {status}"
    message += f": {oauth_error}"
    if description:
        message += f" ({description})"
    message = _redact(message, sensitive)
    oauth_error = _redact(oauth_error, sensitive)
    error_class = InvalidGrant if oauth_error == "invalid_grant" else TokenExchangeError
    return error_class(message, oauth_error=oauth_error, status=status)


def _token_set(
    manufacturer: Manufacturer, token: Mapping[str, Any], default_scope: str
) -> TokenSet:
    def malformed(what: str) -> TokenExchangeError:
        return TokenExchangeError(
            f"{manufacturer.slug} token endpoint answered a malformed token response: {what}",
            oauth_error="invalid_response",
            status=200,
        )

    # RFC 6749 §5.1: access_token and token_type are REQUIRED.
    access_token = token.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise malformed("no access_token")
    token_type = token.get("token_type", "Bearer")  # a few manufacturers omit it
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        # RFC 6749 §7.1: a client must not use a token whose type it does not understand;
        # we only speak RFC 6750 bearer tokens.
        raise malformed("token_type is not Bearer")
    refresh_token = token.get("refresh_token")
    if refresh_token is not None and (not isinstance(refresh_token, str) or not refresh_token):
        raise malformed("refresh_token is not a string")
    # RFC 6749 §5.1: scope may be omitted when it is the scope that was requested.
    scope = token.get("scope")
    if scope is None:
        scope = default_scope
    elif isinstance(scope, list):  # some manufacturers send a JSON list
        scope = " ".join(str(s) for s in scope)
    elif not isinstance(scope, str):
        raise malformed("scope is not a string")
    # Authlib turns expires_in (RFC 6749 §5.1, seconds from now) into expires_at (Unix time).
    expires_at = None
    raw_expires = token.get("expires_at")
    if raw_expires is not None:
        if isinstance(raw_expires, bool) or not isinstance(raw_expires, int | float):
            raise malformed("expires_in/expires_at is not a number")
        try:
            expires_at = datetime.fromtimestamp(raw_expires, UTC)
        except (OverflowError, OSError, ValueError):
            raise malformed("expires_in/expires_at is out of range") from None
    return TokenSet(
        access_token=access_token,
        refresh_token=refresh_token,
        expires_at=expires_at,
        scope=scope,
        token_type=token_type,
    )
