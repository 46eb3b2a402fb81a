"""The built-in sandbox manufacturer: a real OAuth 2.0 authorization server and a device API.

It impersonates any manufacturer whose slug appears in the URL path (``/tesla/...``,
``/enphase/...``), the way Plaid, Smartcar or Enode offer sandbox vendors. Everything lives in
memory: this is a fake vendor that Texture Connect talks to in development, tests and benchmarks,
not part of our own service.

It also speaks a direct-credentials API, the way manufacturers without OAuth do:
``POST /{M}/api/login`` with a customer's username and password (and, for ``user_otp``,
``POST /{M}/api/login/otp`` with a one-time code) answers the same tokens as the token
endpoint, usable at the device API and refreshable at ``/{M}/oauth/token``.

Mount it with ``Mount("/sandbox", app=create_sandbox_app(base_url=".../sandbox", ...))``. The
issuer of manufacturer ``M`` is ``f"{base_url}/{M}"``.

Never log codes, tokens, verifiers, secrets or passwords from this module.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import math
import re
import secrets
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

import jinja2
from starlette.applications import Starlette
from starlette.datastructures import FormData, ImmutableMultiDict, QueryParams
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

__all__ = [
    "AUTHORIZATION_CODE_TTL_SECONDS",
    "OTP_CHALLENGE_TTL_SECONDS",
    "OTP_DELIVERY",
    "OTP_MAX_FAILURES",
    "SANDBOX_ONE_TIME_CODE",
    "SANDBOX_PASSWORD",
    "SANDBOX_USERS",
    "SandboxDevice",
    "SandboxUser",
    "create_sandbox_app",
]

logger = logging.getLogger(__name__)

SANDBOX_PASSWORD: Final = "pass_good"
AUTHORIZATION_CODE_TTL_SECONDS: Final = 60
DEFAULT_SCOPE: Final = "devices:read"
WRONG_CREDENTIALS_MESSAGE: Final = "Wrong username or password"
# The credential login API's one-time-code step (user_otp).
SANDBOX_ONE_TIME_CODE: Final = "123456"
OTP_DELIVERY: Final = "sms to \u2022\u2022\u2022\u2022 0100"
OTP_CHALLENGE_TTL_SECONDS: Final = 300
# Wrong codes a challenge allows; the last of them ends it (after that: challenge_expired).
OTP_MAX_FAILURES: Final = 3
# Scripted authorization errors that the credential login API answers as HTTP failures.
_LOGIN_FAILURE_STATUS: Final[Mapping[str, int]] = MappingProxyType(
    {"server_error": 500, "temporarily_unavailable": 503}
)

_MANUFACTURER_RE: Final = re.compile(r"[a-z0-9_-]{1,64}")
# RFC 7636 §4.2: S256 challenge = BASE64URL(SHA256(verifier)) without padding = 43 characters.
_S256_CHALLENGE_RE: Final = re.compile(r"[A-Za-z0-9_-]{43}")
# RFC 7636 §4.1: code-verifier = 43*128unreserved.
_CODE_VERIFIER_RE: Final = re.compile(r"[A-Za-z0-9._~-]{43,128}")
# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
_SCOPE_TOKEN_RE: Final = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
_AUTHORIZATION_PARAMS: Final = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "login_hint",
)
_NO_STORE: Final = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# RFC 6749 §10.13: the consent page must not be framed (clickjacking).
_HTML_HEADERS: Final = {
    **_NO_STORE,
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self' http: https:; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}


# --------------------------------------------------------------------------------------------
# Sandbox users and their devices
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SandboxDevice:
    """A device template: every (manufacturer, user) pair gets its own stable instance."""

    type: str
    model: str
    name: str


@dataclass(frozen=True, slots=True)
class SandboxUser:
    """A scripted sandbox account. All accounts sign in with ``SANDBOX_PASSWORD``."""

    username: str
    description: str
    devices: tuple[SandboxDevice, ...] = ()
    # Error code sent to redirect_uri instead of a code, even when the user clicks Allow.
    authorization_error: str | None = None
    # The token endpoint answers HTTP 500 for codes issued to this user.
    token_exchange_fails: bool = False
    # The device API answers 403 {"error": "subscription_required"}.
    subscription_required: bool = False
    # The user revoked access at the manufacturer: every refresh grant is invalid_grant.
    refresh_revoked: bool = False
    # The credential login API asks for SANDBOX_ONE_TIME_CODE before it answers tokens.
    one_time_code_required: bool = False


_BATTERY = SandboxDevice("battery", "SBX-BAT-13", "Home Battery")
_THERMOSTAT = SandboxDevice("thermostat", "SBX-TSTAT-2", "Hallway Thermostat")
_VEHICLE = SandboxDevice("vehicle", "SBX-EV-75", "Family Car")
_CHARGER = SandboxDevice("charger", "SBX-EVSE-48", "Garage Charger")
_INVERTER = SandboxDevice("inverter", "SBX-INV-7.6", "Rooftop Inverter")
_GADGET = SandboxDevice("unknown_gadget", "SBX-GADGET-0", "Mystery Gadget")


def _users(*users: SandboxUser) -> Mapping[str, SandboxUser]:
    return MappingProxyType({user.username: user for user in users})


SANDBOX_USERS: Final[Mapping[str, SandboxUser]] = _users(
    SandboxUser("user_good", "A battery and a thermostat", (_BATTERY, _THERMOSTAT)),
    SandboxUser("user_ev", "A vehicle and a charger", (_VEHICLE, _CHARGER)),
    SandboxUser("user_solar", "An inverter and a battery", (_INVERTER, _BATTERY)),
    SandboxUser(
        "user_otp",
        "A battery and an inverter; the credential login API asks for the one-time code "
        f"{SANDBOX_ONE_TIME_CODE}",
        (_BATTERY, _INVERTER),
        one_time_code_required=True,
    ),
    SandboxUser(
        "user_denied",
        "Answers error=access_denied even on Allow",
        (_BATTERY,),
        authorization_error="access_denied",
    ),
    SandboxUser(
        "user_vendor_denied",
        "Answers the vendor-specific error=login_cancelled",
        (_BATTERY,),
        authorization_error="login_cancelled",
    ),
    SandboxUser(
        "user_incompatible",
        "Only owns a device of a type nobody supports (unknown_gadget)",
        (_GADGET,),
    ),
    SandboxUser(
        "user_no_subscription",
        "Authorizes fine; the device API answers 403 subscription_required",
        (_BATTERY,),
        subscription_required=True,
    ),
    SandboxUser(
        "user_server_error",
        "Answers error=server_error",
        (_BATTERY,),
        authorization_error="server_error",
    ),
    SandboxUser(
        "user_unavailable",
        "Answers error=temporarily_unavailable",
        (_BATTERY,),
        authorization_error="temporarily_unavailable",
    ),
    SandboxUser(
        "user_weird",
        "Answers the unrecognised error=quantum_flux_detected",
        (_BATTERY,),
        authorization_error="quantum_flux_detected",
    ),
    SandboxUser(
        "user_refresh_revoked",
        "A battery and a thermostat; every refresh answers invalid_grant (access revoked)",
        (_BATTERY, _THERMOSTAT),
        refresh_revoked=True,
    ),
    SandboxUser(
        "user_token_fail",
        "Gets a code, but the token endpoint answers HTTP 500 for it",
        (_BATTERY,),
        token_exchange_fails=True,
    ),
)

# RFC 6749 §4.1.2.1: error_description is limited to %x20-21 / %x23-5B / %x5D-7E.
_ERROR_DESCRIPTIONS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "access_denied": "The resource owner denied the request",
        "login_cancelled": "The user cancelled the login",
        "server_error": "The sandbox authorization server encountered an unexpected error",
        "temporarily_unavailable": "The sandbox authorization server is down for maintenance",
        "quantum_flux_detected": "The flux capacitor is misaligned",
    }
)


# --------------------------------------------------------------------------------------------
# In-memory grants
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _AuthorizationCode:
    manufacturer: str
    client_id: str
    redirect_uri: str
    code_challenge: str
    scope: str
    username: str
    issued_at: float
    # All tokens descending from this code share a family, so a replayed code can revoke them.
    family: str
    used: bool = False


@dataclass(frozen=True, slots=True)
class _AccessToken:
    manufacturer: str
    client_id: str
    username: str
    scope: str
    expires_at: float
    family: str


@dataclass(frozen=True, slots=True)
class _RefreshToken:
    manufacturer: str
    client_id: str
    username: str
    scope: str
    family: str


@dataclass(frozen=True, slots=True)
class _AuthorizationRequest:
    manufacturer: str
    client_id: str
    redirect_uri: str
    state: str | None
    scope: str
    code_challenge: str
    login_hint: str
    # The validated parameters, echoed into the consent form.
    params: tuple[tuple[str, str], ...]


@dataclass(slots=True)
class _OtpChallenge:
    manufacturer: str
    client_id: str
    username: str
    issued_at: float
    failures: int = 0


@dataclass(slots=True)
class _Stats:
    token_requests: Counter[str] = field(default_factory=Counter)
    authorization_code_grants: Counter[str] = field(default_factory=Counter)
    refresh_grants: Counter[str] = field(default_factory=Counter)
    # Requests to POST /{M}/api/login, whatever their outcome.
    credential_logins: Counter[str] = field(default_factory=Counter)


# --------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------

_JINJA = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)

_SIGN_IN_TEMPLATE = _JINJA.from_string(
    """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Sign in to {{ manufacturer }} (sandbox)</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 28rem; margin: 2rem auto; padding: 0 1rem; }
label { display: block; margin-top: 1rem; }
input[type=text], input[type=password] { width: 100%; padding: .4rem; box-sizing: border-box; }
.error { color: #a00; font-weight: bold; }
.buttons { margin-top: 1.5rem; display: flex; gap: 1rem; }
table { font-size: .85rem; border-collapse: collapse; margin-top: 2rem; }
td, th { text-align: left; padding: .15rem .5rem; border-bottom: 1px solid #ddd; }
</style>
</head>
<body>
<main>
<h1>{{ manufacturer }} <small>(sandbox)</small></h1>
<p><strong>{{ client_id }}</strong> wants to read your {{ manufacturer }} devices
(scope: <code>{{ scope }}</code>).</p>
{% if error %}<p class="error" role="alert">{{ error }}</p>{% endif %}
<form method="post" action="{{ action }}">
{% for name, value in hidden %}<input type="hidden" name="{{ name }}" value="{{ value }}">
{% endfor %}
<label for="username">Username</label>
<input type="text" id="username" name="username" value="{{ username }}"
 autocomplete="username" required autofocus>
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password" required>
<div class="buttons">
<button type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="deny" formnovalidate>Deny</button>
</div>
</form>
<table>
<caption>Sandbox accounts (password <code>{{ password }}</code>)</caption>
<tr><th scope="col">Username</th><th scope="col">Scenario</th></tr>
{% for user in users %}<tr><td><code>{{ user.username }}</code></td>
<td>{{ user.description }}</td></tr>
{% endfor %}
</table>
</main>
</body>
</html>
"""
)

_ERROR_TEMPLATE = _JINJA.from_string(
    """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="referrer" content="no-referrer">
<title>Invalid authorization request (sandbox)</title>
</head>
<body>
<main>
<h1>Invalid authorization request</h1>
<p role="alert">{{ message }}</p>
<p>The application that sent you here is misconfigured, so you were not redirected back
to it.</p>
</main>
</body>
</html>
"""
)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _s256(verifier: str) -> str:
    """RFC 7636 §4.2: code_challenge = BASE64URL-ENCODE(SHA256(ASCII(code_verifier)))."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _constant_time_equals(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def _valid_redirect_uri(uri: str) -> bool:
    # RFC 6749 §3.1.2: absolute URI, no fragment. The sandbox only speaks http(s).
    try:
        parts = urlsplit(uri)
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and "#" not in uri
        and not any(ch.isspace() for ch in uri)
    )


def _with_query(uri: str, params: Sequence[tuple[str, str]]) -> str:
    # RFC 6749 §3.1.2: keep the redirect URI's own query component when adding parameters.
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True)
    return urlunsplit(parts._replace(query=urlencode([*query, *params])))


def _single(params: ImmutableMultiDict[str, Any], name: str) -> str | None:
    """The one string value of ``name``; None if absent. Raises ValueError if repeated."""
    values = params.getlist(name)
    if not values:
        return None
    # RFC 6749 §3.1 and §3.2: parameters MUST NOT be included more than once.
    if len(values) > 1 or not isinstance(values[0], str):
        raise ValueError(name)
    return values[0]


def _form_str(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _rfc3339(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, UTC).replace(microsecond=0)
    return moment.isoformat().replace("+00:00", "Z")


def _json_error(
    error: str,
    description: str,
    status_code: int = 400,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    # RFC 6749 §5.2: error responses are JSON with error and error_description.
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=status_code,
        headers={**_NO_STORE, **(headers or {})},
    )


async def _read_params(request: Request, *, json_allowed: bool = False) -> FormData | Response:
    """The request's parameters: an application/x-www-form-urlencoded body (each parameter at
    most once), or, when ``json_allowed``, a JSON object whose values are strings."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if json_allowed and content_type == "application/json":
        try:
            body = await request.json()
        except ValueError:
            return _json_error("invalid_request", "The body is not valid JSON")
        if not isinstance(body, dict) or not all(isinstance(v, str) for v in body.values()):
            return _json_error("invalid_request", "The body must be a JSON object of strings")
        return FormData(list(body.items()))
    if content_type != "application/x-www-form-urlencoded":
        if json_allowed:
            return _json_error(
                "invalid_request", "Use application/json or application/x-www-form-urlencoded"
            )
        return _json_error("invalid_request", "Use application/x-www-form-urlencoded")
    form = await request.form()
    repeated = sorted({key for key, _ in form.multi_items() if len(form.getlist(key)) > 1})
    if repeated:  # RFC 6749 §3.2: parameters MUST NOT be included more than once.
        return _json_error("invalid_request", f"Repeated parameter: {repeated[0]}")
    return form


def _not_found() -> JSONResponse:
    return JSONResponse({"error": "not_found"}, status_code=404)


def _scope_is_valid(scope: str) -> bool:
    # RFC 6749 §3.3: space-delimited, case-sensitive scope tokens.
    tokens = scope.split(" ")
    return bool(tokens) and all(_SCOPE_TOKEN_RE.fullmatch(token) for token in tokens)


def _device_id(manufacturer: str, username: str, index: int) -> str:
    # Stable per (manufacturer, user), so reconnecting the same account yields the same ids.
    digest = hashlib.sha256(f"{manufacturer}/{username}/{index}".encode()).hexdigest()
    return f"dev_{digest[:24]}"


def _serial_number(manufacturer: str, username: str, index: int) -> str:
    digest = hashlib.sha256(f"serial/{manufacturer}/{username}/{index}".encode()).hexdigest()
    return f"SBX{digest[:12].upper()}"


def _wave(now: float, device_id: str, period_seconds: float) -> float:
    """A deterministic value in [-1, 1] that drifts with time; each device has its own phase."""
    phase = int(device_id[4:12], 16) / 0xFFFFFFFF * 2 * math.pi
    return math.sin(2 * math.pi * now / period_seconds + phase)


def _device_state(device_type: str, device_id: str, now: float) -> dict[str, Any]:
    wave = _wave(now, device_id, 6 * 3600)
    state: dict[str, Any]
    if device_type == "battery":
        power = round(300 * _wave(now, device_id, 90 * 60)) * 10
        state = {
            "chargePercentage": round(55 + 35 * wave),
            "backupReserve": 20,
            "chargingState": "charging" if power > 0 else "discharging" if power < 0 else "idle",
            # Positive: charging (into the battery); negative: discharging.
            "powerW": power,
        }
    elif device_type == "thermostat":
        state = {
            "mode": "heat",
            "heatSetpoint": 20.0,
            "coolSetpoint": 24.0,
            "ambientTemperature": round(20.5 + 1.5 * wave, 1),
            "temperatureUnit": "celsius",
        }
    elif device_type == "vehicle":
        charge = round(60 + 30 * wave)
        state = {
            "chargePercentage": charge,
            "rangeKm": round(charge * 4.8),
            "pluggedIn": True,
            "charging": _wave(now, device_id, 2 * 3600) > 0,
        }
    elif device_type == "charger":
        charging = _wave(now, device_id, 2 * 3600) > 0
        state = {
            "status": "charging" if charging else "idle",
            "powerW": 7200 if charging else 0,
            "sessionEnergyKwh": round(12.5 + 12.5 * wave, 2),
        }
    elif device_type == "inverter":
        state = {
            "powerW": max(0, round(5000 * wave)),
            "energyTodayKwh": round(14 + 10 * wave, 2),
        }
    else:
        state = {"status": "unknown"}
    state["readAt"] = _rfc3339(now)
    return state


def _bearer_challenge(error: str | None = None, description: str | None = None) -> str:
    # RFC 6750 §3: WWW-Authenticate: Bearer realm=..., error=..., error_description=...
    challenge = 'Bearer realm="sandbox"'
    if error:
        challenge += f', error="{error}"'
    if description:
        challenge += f', error_description="{description}"'
    return challenge


# --------------------------------------------------------------------------------------------
# The sandbox authorization server and device API
# --------------------------------------------------------------------------------------------


class _Sandbox:
    def __init__(
        self,
        *,
        base_url: str,
        clients: Mapping[str, str],
        access_token_ttl: int,
        clock: Callable[[], float],
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.clients = dict(clients)
        self.access_token_ttl = access_token_ttl
        self.clock = clock
        self.codes: dict[str, _AuthorizationCode] = {}
        self.access_tokens: dict[str, _AccessToken] = {}
        self.refresh_tokens: dict[str, _RefreshToken] = {}
        self.challenges: dict[str, _OtpChallenge] = {}
        self.counters = _Stats()

    def issuer(self, manufacturer: str) -> str:
        return f"{self.base_url}/{manufacturer}"

    # ----------------------------------------------------------------------------- authorize

    def _invalid_request_page(self, message: str) -> HTMLResponse:
        # RFC 6749 §4.1.2.1: with a bad client_id or redirect_uri, tell the user; never redirect.
        return HTMLResponse(
            _ERROR_TEMPLATE.render(message=message), status_code=400, headers=_HTML_HEADERS
        )

    def _redirect(
        self, manufacturer: str, redirect_uri: str, params: Sequence[tuple[str, str]]
    ) -> RedirectResponse:
        # RFC 9207 §2: iss on every authorization response, success or error.
        params = [*params, ("iss", self.issuer(manufacturer))]
        return RedirectResponse(
            _with_query(redirect_uri, params), status_code=302, headers=_NO_STORE
        )

    def _error_redirect(
        self,
        manufacturer: str,
        redirect_uri: str,
        state: str | None,
        error: str,
        description: str | None = None,
    ) -> RedirectResponse:
        # RFC 6749 §4.1.2.1: error, error_description, and state if the client sent one.
        params = [
            ("error", error),
            ("error_description", description or _ERROR_DESCRIPTIONS.get(error, error)),
        ]
        if state is not None:
            params.append(("state", state))
        return self._redirect(manufacturer, redirect_uri, params)

    def _parse_authorization_request(
        self, manufacturer: str, params: ImmutableMultiDict[str, Any]
    ) -> _AuthorizationRequest | Response:
        try:
            client_id = _single(params, "client_id")
        except ValueError:
            client_id = None
        if client_id is None or client_id not in self.clients:
            return self._invalid_request_page("Unknown or missing client_id.")
        try:
            redirect_uri = _single(params, "redirect_uri")
        except ValueError:
            redirect_uri = None
        # RFC 6749 §3.1.2.4: an invalid redirection URI must not be redirected to.
        if redirect_uri is None or not _valid_redirect_uri(redirect_uri):
            return self._invalid_request_page(
                "Missing or invalid redirect_uri: it must be an absolute http(s) URL "
                "without a fragment."
            )

        raw_states = params.getlist("state")
        state = raw_states[0] if raw_states and isinstance(raw_states[0], str) else None

        def fail(error: str, description: str) -> Response:
            return self._error_redirect(manufacturer, redirect_uri, state, error, description)

        try:
            values = {name: _single(params, name) for name in _AUTHORIZATION_PARAMS}
        except ValueError as repeated:
            # RFC 6749 §3.1: parameters MUST NOT be included more than once.
            return fail("invalid_request", f"Parameter {repeated} is repeated")

        response_type = values["response_type"]
        if response_type is None:
            return fail("invalid_request", "Missing response_type")
        if response_type != "code":  # RFC 6749 §4.1.2.1
            return fail("unsupported_response_type", "Only response_type=code is supported")

        code_challenge = values["code_challenge"]
        if not code_challenge:  # RFC 7636 §4.4.1: PKCE is required
            return fail("invalid_request", "code_challenge is required (PKCE)")
        # RFC 7636 §4.3: a missing method means "plain", which this server does not support.
        if values["code_challenge_method"] != "S256":
            return fail("invalid_request", "code_challenge_method must be S256")
        if not _S256_CHALLENGE_RE.fullmatch(code_challenge):  # RFC 7636 §4.2
            return fail("invalid_request", "code_challenge is not a base64url SHA-256 digest")

        scope = values["scope"]
        if scope is None or scope == "":
            scope = DEFAULT_SCOPE
        elif not _scope_is_valid(scope):  # RFC 6749 §3.3
            return fail("invalid_scope", "Malformed scope")

        echoed = tuple((name, value) for name, value in values.items() if value is not None)
        return _AuthorizationRequest(
            manufacturer=manufacturer,
            client_id=client_id,
            redirect_uri=redirect_uri,
            state=state,
            scope=scope,
            code_challenge=code_challenge,
            login_hint=values["login_hint"] or "",
            params=echoed,
        )

    def _sign_in_page(
        self,
        authz: _AuthorizationRequest,
        *,
        error: str | None = None,
        username: str | None = None,
        status_code: int = 200,
    ) -> HTMLResponse:
        action = f"{self.issuer(authz.manufacturer)}/oauth/authorize?{urlencode(authz.params)}"
        html = _SIGN_IN_TEMPLATE.render(
            manufacturer=authz.manufacturer,
            client_id=authz.client_id,
            scope=authz.scope,
            error=error,
            action=action,
            hidden=authz.params,
            username=authz.login_hint if username is None else username,
            password=SANDBOX_PASSWORD,
            users=SANDBOX_USERS.values(),
        )
        return HTMLResponse(html, status_code=status_code, headers=_HTML_HEADERS)

    async def authorize_get(self, request: Request) -> Response:
        manufacturer = _manufacturer(request)
        if manufacturer is None:
            return _not_found()
        authz = self._parse_authorization_request(manufacturer, request.query_params)
        if isinstance(authz, Response):
            return authz
        return self._sign_in_page(authz)

    async def authorize_post(self, request: Request) -> Response:
        manufacturer = _manufacturer(request)
        if manufacturer is None:
            return _not_found()
        form = await request.form()
        # The query string carries the authorization request; a form that lost it (e.g. posted
        # to the bare URL) still carries the same parameters as hidden inputs.
        source: QueryParams | FormData = (
            request.query_params if "client_id" in request.query_params else form
        )
        authz = self._parse_authorization_request(manufacturer, source)
        if isinstance(authz, Response):
            return authz

        decision = _form_str(form, "decision")
        username = _form_str(form, "username")
        if decision == "deny":
            # RFC 6749 §4.1.2.1: the resource owner denied the request.
            return self._error_redirect(
                manufacturer, authz.redirect_uri, authz.state, "access_denied"
            )
        if decision != "allow":
            return self._sign_in_page(
                authz, error="Choose Allow or Deny.", username=username, status_code=400
            )

        user = SANDBOX_USERS.get(username)
        password_ok = _constant_time_equals(_form_str(form, "password"), SANDBOX_PASSWORD)
        if user is None or not password_ok:
            return self._sign_in_page(authz, error=WRONG_CREDENTIALS_MESSAGE, username=username)

        if user.authorization_error is not None:
            logger.info(
                "sandbox %s: scripted authorization error %s for %s",
                manufacturer,
                user.authorization_error,
                user.username,
            )
            return self._error_redirect(
                manufacturer, authz.redirect_uri, authz.state, user.authorization_error
            )

        now = self.clock()
        self._purge_codes(now)
        code = secrets.token_urlsafe(32)
        self.codes[code] = _AuthorizationCode(
            manufacturer=manufacturer,
            client_id=authz.client_id,
            redirect_uri=authz.redirect_uri,
            code_challenge=authz.code_challenge,
            scope=authz.scope,
            username=user.username,
            issued_at=now,
            family=secrets.token_hex(8),
        )
        logger.info("sandbox %s: issued an authorization code for %s", manufacturer, username)
        params = [("code", code)]
        if authz.state is not None:
            params.append(("state", authz.state))
        return self._redirect(manufacturer, authz.redirect_uri, params)

    def _purge_codes(self, now: float) -> None:
        # Keep used/expired codes around for a while so replays still answer invalid_grant
        # (and revoke descendants) rather than silently looking unknown.
        horizon = now - 10 * AUTHORIZATION_CODE_TTL_SECONDS
        for code in [code for code, grant in self.codes.items() if grant.issued_at < horizon]:
            del self.codes[code]

    # --------------------------------------------------------------------------------- token

    def _authenticate_client(self, request: Request, form: FormData) -> str | Response:
        """RFC 6749 §2.3.1: client_secret_basic or client_secret_post, not both."""

        def invalid_client(description: str) -> Response:
            # RFC 6749 §5.2: 401 with WWW-Authenticate when the client used HTTP auth (we
            # always send it, which is allowed).
            return _json_error(
                "invalid_client",
                description,
                status_code=401,
                headers={"WWW-Authenticate": 'Basic realm="sandbox"'},
            )

        authorization = request.headers.get("authorization")
        form_client_id = _form_str(form, "client_id") or None
        form_secret = _form_str(form, "client_secret") or None
        if authorization is not None:
            scheme, _, credentials = authorization.partition(" ")
            if scheme.lower() != "basic":
                return invalid_client("Unsupported client authentication scheme")
            if form_secret is not None:
                # RFC 6749 §2.3: MUST NOT use more than one authentication method per request.
                return _json_error(
                    "invalid_request", "Use either client_secret_basic or client_secret_post"
                )
            try:
                decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return invalid_client("Malformed Basic credentials")
            raw_id, colon, raw_secret = decoded.partition(":")
            if not colon:
                return invalid_client("Malformed Basic credentials")
            # RFC 6749 §2.3.1: Basic credentials are form-urlencoded before base64.
            client_id, secret = unquote_plus(raw_id), unquote_plus(raw_secret)
            if form_client_id is not None and form_client_id != client_id:
                return _json_error("invalid_request", "client_id does not match Basic credentials")
        elif form_client_id is not None and form_secret is not None:
            client_id, secret = form_client_id, form_secret
        else:
            return invalid_client("Client authentication is required")

        expected = self.clients.get(client_id)
        if expected is None or not _constant_time_equals(secret, expected):
            return invalid_client("Client authentication failed")
        return client_id

    def _token_response(
        self,
        manufacturer: str,
        client_id: str,
        username: str,
        scope: str,
        family: str,
    ) -> JSONResponse:
        now = self.clock()
        access_token = secrets.token_urlsafe(32)
        refresh_token = secrets.token_urlsafe(32)
        self.access_tokens[access_token] = _AccessToken(
            manufacturer=manufacturer,
            client_id=client_id,
            username=username,
            scope=scope,
            expires_at=now + self.access_token_ttl,
            family=family,
        )
        self.refresh_tokens[refresh_token] = _RefreshToken(
            manufacturer=manufacturer,
            client_id=client_id,
            username=username,
            scope=scope,
            family=family,
        )
        # RFC 6749 §5.1: successful response, never cached.
        return JSONResponse(
            {
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": self.access_token_ttl,
                "refresh_token": refresh_token,
                "scope": scope,
            },
            headers=_NO_STORE,
        )

    def _revoke_family(self, family: str) -> None:
        for token in [t for t, grant in self.access_tokens.items() if grant.family == family]:
            del self.access_tokens[token]
        for token in [t for t, grant in self.refresh_tokens.items() if grant.family == family]:
            del self.refresh_tokens[token]

    async def token(self, request: Request) -> Response:
        manufacturer = _manufacturer(request)
        if manufacturer is None:
            return _not_found()
        self.counters.token_requests[manufacturer] += 1

        # RFC 6749 §3.2: parameters are sent application/x-www-form-urlencoded.
        form = await _read_params(request)
        if isinstance(form, Response):
            return form

        client_id = self._authenticate_client(request, form)
        if isinstance(client_id, Response):
            return client_id

        grant_type = _form_str(form, "grant_type")
        if grant_type == "authorization_code":
            return self._authorization_code_grant(manufacturer, client_id, form)
        if grant_type == "refresh_token":
            return self._refresh_token_grant(manufacturer, client_id, form)
        if not grant_type:
            return _json_error("invalid_request", "Missing grant_type")
        return _json_error("unsupported_grant_type", "Unsupported grant_type")  # RFC 6749 §5.2

    def _authorization_code_grant(
        self, manufacturer: str, client_id: str, form: FormData
    ) -> Response:
        code = _form_str(form, "code")
        redirect_uri = _form_str(form, "redirect_uri")
        code_verifier = _form_str(form, "code_verifier")
        if not code:
            return _json_error("invalid_request", "Missing code")
        grant = self.codes.get(code)
        # RFC 6749 §4.1.3 / RFC 9207: a code is only valid at the issuer that issued it.
        if grant is None or grant.manufacturer != manufacturer:
            return _json_error("invalid_grant", "Unknown authorization code")
        if grant.client_id != client_id:  # RFC 6749 §4.1.3
            return _json_error("invalid_grant", "The code was issued to another client")
        if grant.used:
            # RFC 6749 §4.1.2: a code is single-use; on replay, revoke what it produced.
            self._revoke_family(grant.family)
            logger.warning("sandbox %s: authorization code replayed", manufacturer)
            return _json_error("invalid_grant", "The authorization code was already used")
        if self.clock() - grant.issued_at >= AUTHORIZATION_CODE_TTL_SECONDS:  # RFC 6749 §4.1.2
            return _json_error("invalid_grant", "The authorization code expired")
        if not _constant_time_equals(redirect_uri, grant.redirect_uri):  # RFC 6749 §4.1.3
            return _json_error("invalid_grant", "redirect_uri does not match the authorization")
        if not code_verifier:  # RFC 7636 §4.5
            return _json_error("invalid_request", "Missing code_verifier")
        if not _CODE_VERIFIER_RE.fullmatch(code_verifier) or not _constant_time_equals(
            _s256(code_verifier), grant.code_challenge
        ):  # RFC 7636 §4.6
            return _json_error("invalid_grant", "code_verifier does not match code_challenge")

        user = SANDBOX_USERS[grant.username]
        if user.token_exchange_fails:
            return _json_error(
                "server_error", "The sandbox token endpoint failed (scripted)", status_code=500
            )

        grant.used = True
        self.counters.authorization_code_grants[manufacturer] += 1
        logger.info("sandbox %s: exchanged a code for %s", manufacturer, grant.username)
        return self._token_response(
            manufacturer, client_id, grant.username, grant.scope, grant.family
        )

    def _refresh_token_grant(self, manufacturer: str, client_id: str, form: FormData) -> Response:
        token = _form_str(form, "refresh_token")
        if not token:
            return _json_error("invalid_request", "Missing refresh_token")
        grant = self.refresh_tokens.get(token)
        if grant is None or grant.manufacturer != manufacturer:
            return _json_error("invalid_grant", "Unknown or rotated refresh token")
        if grant.client_id != client_id:  # RFC 6749 §6: bound to the client it was issued to
            return _json_error("invalid_grant", "The refresh token was issued to another client")
        if SANDBOX_USERS[grant.username].refresh_revoked:
            return _json_error("invalid_grant", "The user revoked this grant")
        scope = grant.scope
        requested = _form_str(form, "scope")
        if requested:
            # RFC 6749 §6: the requested scope MUST NOT include scope not originally granted.
            if not _scope_is_valid(requested) or not set(requested.split()) <= set(scope.split()):
                return _json_error("invalid_scope", "Scope exceeds the original grant")
            scope = requested
        # RFC 6749 §6 / RFC 9700 §4.14.2: rotate refresh tokens; the old one dies now.
        del self.refresh_tokens[token]
        self.counters.refresh_grants[manufacturer] += 1
        return self._token_response(manufacturer, client_id, grant.username, scope, grant.family)

    # ------------------------------------------------------------------ credential login API

    async def _credential_request(
        self, request: Request, fields: tuple[str, str], counter: Counter[str] | None = None
    ) -> tuple[str, str, tuple[str, str]] | Response:
        """(manufacturer, client_id, the two required fields) of a credential API request from
        an authenticated client, or the error response."""
        manufacturer = _manufacturer(request)
        if manufacturer is None:
            return _not_found()
        if counter is not None:
            counter[manufacturer] += 1
        params = await _read_params(request, json_allowed=True)
        if isinstance(params, Response):
            return params
        client_id = self._authenticate_client(request, params)
        if isinstance(client_id, Response):
            return client_id
        first, second = (_form_str(params, name) for name in fields)
        if not first or not second:
            return _json_error("invalid_request", f"{fields[0]} and {fields[1]} are required")
        return manufacturer, client_id, (first, second)

    async def login(self, request: Request) -> Response:
        """POST /{M}/api/login: a customer's username and password, checked once."""
        checked = await self._credential_request(
            request, ("username", "password"), self.counters.credential_logins
        )
        if isinstance(checked, Response):
            return checked
        manufacturer, client_id, (username, password) = checked

        user = SANDBOX_USERS.get(username)
        password_ok = _constant_time_equals(password, SANDBOX_PASSWORD)
        if user is None or not password_ok:
            # Not even the username is logged: people type passwords into the wrong field.
            logger.info("sandbox %s: credential login refused", manufacturer)
            return _json_error("invalid_credentials", WRONG_CREDENTIALS_MESSAGE, status_code=401)

        error = "server_error" if user.token_exchange_fails else user.authorization_error
        if error is not None and error in _LOGIN_FAILURE_STATUS:
            logger.info("sandbox %s: scripted login failure for %s", manufacturer, username)
            return _json_error(
                error,
                _ERROR_DESCRIPTIONS[error],
                status_code=_LOGIN_FAILURE_STATUS[error],
            )

        if user.one_time_code_required:
            now = self.clock()
            self._purge_challenges(now)
            challenge_id = secrets.token_urlsafe(24)
            self.challenges[challenge_id] = _OtpChallenge(manufacturer, client_id, username, now)
            logger.info("sandbox %s: sent a one-time code to %s", manufacturer, username)
            return JSONResponse(
                {"otp_required": True, "challenge_id": challenge_id, "delivery": OTP_DELIVERY},
                headers=_NO_STORE,
            )

        logger.info("sandbox %s: credential login for %s", manufacturer, username)
        return self._token_response(
            manufacturer, client_id, username, DEFAULT_SCOPE, secrets.token_hex(8)
        )

    async def login_otp(self, request: Request) -> Response:
        """POST /{M}/api/login/otp: the one-time code of a challenge from /api/login."""
        checked = await self._credential_request(request, ("challenge_id", "code"))
        if isinstance(checked, Response):
            return checked
        manufacturer, client_id, (challenge_id, code) = checked

        self._purge_challenges(self.clock())
        challenge = self.challenges.get(challenge_id)
        if (
            challenge is None
            or challenge.manufacturer != manufacturer
            or challenge.client_id != client_id
        ):
            # Unknown, expired, used up or someone else's: all the same to the caller.
            return _json_error(
                "challenge_expired", "Sign in again to get a new code", status_code=401
            )
        if not _constant_time_equals(code, SANDBOX_ONE_TIME_CODE):
            challenge.failures += 1
            if challenge.failures >= OTP_MAX_FAILURES:
                del self.challenges[challenge_id]
            logger.info("sandbox %s: wrong one-time code", manufacturer)
            return _json_error("invalid_otp", "Wrong one-time code", status_code=401)

        del self.challenges[challenge_id]  # single use
        logger.info("sandbox %s: one-time code accepted for %s", manufacturer, challenge.username)
        return self._token_response(
            manufacturer, client_id, challenge.username, DEFAULT_SCOPE, secrets.token_hex(8)
        )

    def _purge_challenges(self, now: float) -> None:
        horizon = now - OTP_CHALLENGE_TTL_SECONDS
        for key in [k for k, c in self.challenges.items() if c.issued_at <= horizon]:
            del self.challenges[key]

    # ----------------------------------------------------------------------------- device API

    def _authenticate_bearer(self, request: Request, manufacturer: str) -> _AccessToken | Response:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            # RFC 6750 §3.1: no credentials at all → 401 with a bare challenge.
            return JSONResponse(
                {"error": "unauthorized", "error_description": "Bearer token required"},
                status_code=401,
                headers={"WWW-Authenticate": _bearer_challenge()},
            )
        grant = self.access_tokens.get(token)
        now = self.clock()
        if grant is not None and now >= grant.expires_at:
            del self.access_tokens[token]
            grant = None
        if grant is None or grant.manufacturer != manufacturer:
            # RFC 6750 §3.1: invalid_token for expired, revoked or malformed tokens.
            description = "The access token is invalid or expired"
            return JSONResponse(
                {"error": "invalid_token", "error_description": description},
                status_code=401,
                headers={"WWW-Authenticate": _bearer_challenge("invalid_token", description)},
            )
        if SANDBOX_USERS[grant.username].subscription_required:
            return JSONResponse(
                {
                    "error": "subscription_required",
                    "error_description": "This account has no connected-services subscription",
                },
                status_code=403,
            )
        return grant

    def _devices(self, manufacturer: str, username: str) -> list[dict[str, str]]:
        return [
            {
                "id": _device_id(manufacturer, username, index),
                "type": device.type,
                "manufacturer": manufacturer,
                "model": device.model,
                "serialNumber": _serial_number(manufacturer, username, index),
                "name": device.name,
            }
            for index, device in enumerate(SANDBOX_USERS[username].devices)
        ]

    async def list_devices(self, request: Request) -> Response:
        manufacturer = _manufacturer(request)
        if manufacturer is None:
            return _not_found()
        grant = self._authenticate_bearer(request, manufacturer)
        if isinstance(grant, Response):
            return grant
        return JSONResponse({"devices": self._devices(manufacturer, grant.username)})

    async def device_state(self, request: Request) -> Response:
        manufacturer = _manufacturer(request)
        if manufacturer is None:
            return _not_found()
        grant = self._authenticate_bearer(request, manufacturer)
        if isinstance(grant, Response):
            return grant
        device_id = request.path_params["device_id"]
        for device in self._devices(manufacturer, grant.username):
            if device["id"] == device_id:
                return JSONResponse(_device_state(device["type"], device_id, self.clock()))
        # Someone else's device, or none at all: indistinguishable on purpose.
        return _not_found()

    # ------------------------------------------------------------------------ metadata, stats

    async def metadata(self, request: Request) -> Response:
        manufacturer = _manufacturer(request)
        if manufacturer is None:
            return _not_found()
        issuer = self.issuer(manufacturer)
        # RFC 8414 §2 (+ RFC 9207 §3 for the iss parameter flag).
        return JSONResponse(
            {
                "issuer": issuer,
                "authorization_endpoint": f"{issuer}/oauth/authorize",
                "token_endpoint": f"{issuer}/oauth/token",
                "response_types_supported": ["code"],
                "grant_types_supported": ["authorization_code", "refresh_token"],
                "token_endpoint_auth_methods_supported": [
                    "client_secret_basic",
                    "client_secret_post",
                ],
                "code_challenge_methods_supported": ["S256"],
                "authorization_response_iss_parameter_supported": True,
                "scopes_supported": [DEFAULT_SCOPE],
            }
        )

    async def stats(self, request: Request) -> Response:
        return JSONResponse(
            {
                "token_requests": dict(self.counters.token_requests),
                "authorization_code_grants": dict(self.counters.authorization_code_grants),
                "refresh_grants": dict(self.counters.refresh_grants),
                "credential_logins": dict(self.counters.credential_logins),
            },
            headers={"Cache-Control": "no-store"},
        )


def _manufacturer(request: Request) -> str | None:
    slug = request.path_params.get("manufacturer")
    if isinstance(slug, str) and _MANUFACTURER_RE.fullmatch(slug):
        return slug
    return None


def create_sandbox_app(
    *,
    base_url: str,
    clients: Mapping[str, str],
    access_token_ttl: int = 3600,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """Build the sandbox manufacturer app.

    ``base_url`` is the absolute URL the app is mounted at (e.g.
    ``"http://127.0.0.1:8080/sandbox"``); ``clients`` maps OAuth client_id to client_secret;
    ``clock`` returns Unix seconds and is injectable so tests can expire codes and tokens.
    """
    sandbox = _Sandbox(
        base_url=base_url, clients=clients, access_token_ttl=access_token_ttl, clock=clock
    )
    routes = [
        Route("/_stats", sandbox.stats, methods=["GET"]),
        Route("/{manufacturer}/oauth/authorize", sandbox.authorize_get, methods=["GET"]),
        Route("/{manufacturer}/oauth/authorize", sandbox.authorize_post, methods=["POST"]),
        Route("/{manufacturer}/oauth/token", sandbox.token, methods=["POST"]),
        Route("/{manufacturer}/api/login", sandbox.login, methods=["POST"]),
        Route("/{manufacturer}/api/login/otp", sandbox.login_otp, methods=["POST"]),
        Route(
            "/{manufacturer}/.well-known/oauth-authorization-server",
            sandbox.metadata,
            methods=["GET"],
        ),
        Route("/{manufacturer}/api/devices", sandbox.list_devices, methods=["GET"]),
        Route(
            "/{manufacturer}/api/devices/{device_id}/state", sandbox.device_state, methods=["GET"]
        ),
    ]
    return Starlette(routes=routes, max_body_size=64 * 1024)
