"""The direct-credentials sign-in, client side: for a credential-based manufacturer (the
catalog's ``auth = "credentials"``), the customer's username and password are sent once to
the manufacturer's login API, which answers tokens or asks for a one-time code.

The API (the sandbox manufacturer speaks it; see ``CredentialSettings``)::

    POST {login_url}   {"username": ..., "password": ...}
      200 {"access_token", "token_type": "Bearer", "expires_in", "refresh_token", "scope"}
      200 {"otp_required": true, "challenge_id": ..., "delivery": "sms to •••• 0100"}
      401 {"error": "invalid_credentials"}
    POST {otp_url}     {"challenge_id": ..., "code": ...}
      200 tokens as above
      401 {"error": "invalid_otp"}          (the challenge may still be retried)
      401 {"error": "challenge_expired"}    (sign in again)

Both authenticate us as a client with HTTP Basic (RFC 6749 §2.3.1, like the token endpoint).
Anything else (other errors, HTTP 5xx, a network failure, a malformed answer) is the reason
``"unavailable"``.

Refresh: when the catalog gives the manufacturer a ``credentials.token_endpoint``, its refresh
tokens are refreshed there with an ordinary RFC 6749 §6 refresh grant
(``refresh_credential_tokens``, which is ``tokens.refresh_tokens`` on that endpoint). Without
one, a connection must be authorized again (the customer signs in again) when its access token
expires.

Passwords and codes are used for one request and kept nowhere: nothing in this module logs,
and no exception message contains a password, a code, a challenge id, a token or a secret.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import quote_plus

import httpx
from authlib.oauth2.rfc6749 import OAuth2Token

from texture_connect.domain.catalog import CredentialSettings, Manufacturer, OAuthSettings
from texture_connect.manufacturers.tls import tls_context
from texture_connect.manufacturers.tokens import (
    TokenExchangeError,
    TokenSet,
    _error_field,
    _token_set,
    client_secret_for,
    refresh_tokens,
)

__all__ = [
    "CredentialSignInError",
    "OtpChallenge",
    "SignInFailure",
    "credential_client_secret",
    "refresh_credential_tokens",
    "sign_in",
    "submit_one_time_code",
]

SignInFailure = Literal["invalid_credentials", "invalid_otp", "challenge_expired", "unavailable"]


@dataclass(frozen=True, repr=False)
class OtpChallenge:
    """The manufacturer wants a one-time code: it sent one to the customer (``delivery`` says
    where, for showing them) and expects it with ``challenge_id`` at ``submit_one_time_code``.
    """

    challenge_id: str
    delivery: str

    def __repr__(self) -> str:
        # Not a secret, but a handle on someone's half-finished sign-in: keep it out of logs.
        return f"OtpChallenge(challenge_id=<redacted>, delivery={self.delivery!r})"


class CredentialSignInError(Exception):
    """The manufacturer gave us no tokens.

    ``reason``: ``"invalid_credentials"`` (wrong username or password), ``"invalid_otp"``
    (wrong code; the challenge may be retried), ``"challenge_expired"`` (the challenge is used
    up or expired: sign in again) or ``"unavailable"`` (anything else; worth a retry later).
    ``status`` is the HTTP status (None without a response) and ``manufacturer_error`` the
    ``error`` code the manufacturer sent, if any."""

    def __init__(
        self,
        message: str,
        *,
        reason: SignInFailure,
        status: int | None = None,
        manufacturer_error: str | None = None,
    ) -> None:
        super().__init__(message)
        self.reason: SignInFailure = reason
        self.status = status
        self.manufacturer_error = manufacturer_error


def credential_client_secret(manufacturer: Manufacturer, env: Mapping[str, str]) -> str:
    """The client secret from ``env[manufacturer.credentials.client_secret_env]``; raises
    ``tokens.ClientSecretMissing`` (naming the variable, never a value) when it is unset."""
    return client_secret_for(_as_token_client(manufacturer), env)


async def sign_in(
    manufacturer: Manufacturer,
    *,
    username: str,
    password: str,
    client_secret: str,
    timeout: float = 10.0,
) -> TokenSet | OtpChallenge:
    """Checks the customer's username and password with the manufacturer, once.

    Returns their tokens, or an ``OtpChallenge`` when the manufacturer wants a one-time code
    first. Raises ``CredentialSignInError``."""
    payload = {"username": username, "password": password}
    body = await _post(manufacturer, _LOGIN, payload, client_secret, timeout)
    if body.get("otp_required") is True:
        challenge_id = body.get("challenge_id")
        delivery = body.get("delivery", "")
        if not isinstance(challenge_id, str) or not challenge_id or not isinstance(delivery, str):
            raise _malformed(manufacturer, _LOGIN, "a one-time-code answer without challenge_id")
        return OtpChallenge(challenge_id=challenge_id, delivery=delivery)
    return _tokens(manufacturer, _LOGIN, body)


async def submit_one_time_code(
    manufacturer: Manufacturer,
    *,
    challenge_id: str,
    code: str,
    client_secret: str,
    timeout: float = 10.0,
) -> TokenSet:
    """Sends the one-time code the customer received for ``challenge_id``; returns their
    tokens. Raises ``CredentialSignInError``."""
    payload = {"challenge_id": challenge_id, "code": code}
    body = await _post(manufacturer, _ONE_TIME_CODE, payload, client_secret, timeout)
    return _tokens(manufacturer, _ONE_TIME_CODE, body)


async def refresh_credential_tokens(
    manufacturer: Manufacturer,
    *,
    refresh_token: str,
    client_secret: str,
    timeout: float = 10.0,
) -> TokenSet:
    """Refreshes a credential connection's tokens at ``credentials.token_endpoint`` (RFC 6749
    §6), exactly as ``tokens.refresh_tokens`` does for OAuth manufacturers, and raises what it
    raises (``InvalidGrant`` when the customer must sign in again). A ValueError when the
    manufacturer has no token endpoint: then the connection needs a new sign-in instead."""
    if not _settings(manufacturer).token_endpoint:
        raise ValueError(f"{manufacturer.slug} has no token endpoint: sign in again to refresh")
    return await refresh_tokens(
        _as_token_client(manufacturer),
        refresh_token=refresh_token,
        client_secret=client_secret,
        timeout=timeout,
    )


# --------------------------------------------------------------------------------- internals


def _settings(manufacturer: Manufacturer) -> CredentialSettings:
    if manufacturer.credentials is None:
        raise ValueError(f"{manufacturer.slug} does not sign in with credentials")
    return manufacturer.credentials


def _as_token_client(manufacturer: Manufacturer) -> Manufacturer:
    """The manufacturer as tokens.py sees an OAuth client: the same client id and secret,
    and the refresh endpoint (possibly empty) as its token endpoint. Never used to authorize,
    and never handed out: code that sees ``manufacturer.oauth`` must keep seeing None."""
    settings = _settings(manufacturer)
    oauth = OAuthSettings(
        authorization_endpoint="",
        token_endpoint=settings.token_endpoint,
        client_id=settings.client_id,
        client_secret_env=settings.client_secret_env,
        pkce=False,
    )
    return dataclasses.replace(manufacturer, oauth=oauth)


@dataclass(frozen=True)
class _Step:
    action: str  # for messages
    url: Callable[[CredentialSettings], str]
    expected_errors: tuple[SignInFailure, ...]
    # Payload fields never repeated in a message (nor is the client secret).
    secret_fields: tuple[str, ...]

    def where(self, manufacturer: Manufacturer) -> str:
        return f"{manufacturer.slug} credential sign-in ({self.action})"


_LOGIN: Final = _Step("login", lambda s: s.login_url, ("invalid_credentials",), ("password",))
_ONE_TIME_CODE: Final = _Step(
    "one-time code",
    lambda s: s.otp_url,
    ("invalid_otp", "challenge_expired"),
    ("challenge_id", "code"),
)


async def _post(
    manufacturer: Manufacturer,
    step: _Step,
    payload: Mapping[str, str],
    client_secret: str,
    timeout: float,
) -> Mapping[str, Any]:
    """POSTs ``payload`` as JSON; the JSON object of an HTTP 200 answer, else raises
    CredentialSignInError."""
    settings = _settings(manufacturer)
    where = step.where(manufacturer)
    sensitive = (*(payload[name] for name in step.secret_fields), client_secret)
    # RFC 6749 §2.3.1: the client id and secret are form-urlencoded before HTTP Basic.
    auth = httpx.BasicAuth(quote_plus(settings.client_id), quote_plus(client_secret))
    try:
        async with httpx.AsyncClient(
            timeout=timeout, follow_redirects=False, verify=tls_context()
        ) as client:
            response = await client.post(
                step.url(settings),
                json=dict(payload),
                auth=auth,
                headers={"Accept": "application/json"},
            )
    except httpx.HTTPError as exc:
        raise CredentialSignInError(
            f"{where} failed: network_error ({type(exc).__name__})", reason="unavailable"
        ) from None

    try:
        body = response.json()
    except ValueError:
        body = None
    status = response.status_code
    if status == 200:
        if not isinstance(body, dict):
            raise _malformed(manufacturer, step, "the answer is not a JSON object")
        return body

    error = _error_field(body.get("error")) if isinstance(body, dict) else None
    reason: SignInFailure = "unavailable"
    for expected in step.expected_errors:
        if error == expected:
            reason = expected
    # The error code is the only text of theirs we repeat; never when it echoes a secret.
    if error is not None and any(value and value in error for value in sensitive):
        error = None
    raise CredentialSignInError(
        f"{where} failed with HTTP {status}: {error or 'http_error'}",
        reason=reason,
        status=status,
        manufacturer_error=error,
    )


def _malformed(manufacturer: Manufacturer, step: _Step, what: str) -> CredentialSignInError:
    return CredentialSignInError(
        f"{step.where(manufacturer)} answered HTTP 200 with a malformed body: {what}",
        reason="unavailable",
        status=200,
    )


def _tokens(manufacturer: Manufacturer, step: _Step, body: Mapping[str, Any]) -> TokenSet:
    """The token response, read exactly as tokens.py reads a token endpoint's answer."""
    try:
        # Authlib's own conversion of expires_in to expires_at, as in tokens.py.
        token = OAuth2Token.from_dict(dict(body))
        return _token_set(manufacturer, token, default_scope="")
    except TokenExchangeError as exc:
        # "... answered a malformed token response: <what>": keep the what.
        raise _malformed(manufacturer, step, str(exc).rpartition(": ")[2]) from None
    except (ValueError, TypeError, OverflowError):
        raise _malformed(manufacturer, step, "expires_in/expires_at is not a number") from None
