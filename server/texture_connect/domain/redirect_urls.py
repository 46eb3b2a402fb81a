"""The redirect-URL policy for ``redirectUrl``.

Allowed: absolute https URLs; http only on a loopback host (local development); and
custom-scheme deep links such as ``myapp://device/connected`` for mobile apps. Refused:
schemes that execute or read locally (javascript:, data:, file:, vbscript:, blob:,
about:), credentials in the URL, fragments (RFC 6749 §3.1.2: the redirection endpoint
URI MUST NOT include a fragment component) and anything over ``MAX_LENGTH``.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from urllib.parse import urlsplit

MAX_LENGTH = 2048
FORBIDDEN_SCHEMES = frozenset(
    {"javascript", "data", "file", "vbscript", "blob", "about", "filesystem", "view-source"}
)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.\-]*$")
_LOOPBACK_NAMES = frozenset({"localhost"})


def is_loopback_host(host: str) -> bool:
    host = host.strip("[]").lower()
    if host in _LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def redirect_url_problem(url: str) -> str | None:
    """Why ``url`` may not be a redirect URL, in words for a developer; None when it may."""
    if not url:
        return "is required"
    if len(url) > MAX_LENGTH:
        return f"must be at most {MAX_LENGTH} characters"
    if any(ch.isspace() or unicodedata.category(ch) == "Cc" for ch in url):
        return "must not contain whitespace or control characters"
    scheme, colon, rest = url.partition(":")
    if not colon or not rest or not _SCHEME.match(scheme):
        return "must be an absolute URL with a scheme, e.g. https://example.com/done"
    scheme = scheme.lower()
    if scheme in FORBIDDEN_SCHEMES:
        return f"must not use the {scheme}: scheme"
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a malformed port
    except ValueError:
        return "is not a valid URL"
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        return "must not contain credentials (user:password@)"
    if parts.fragment or url.endswith("#"):
        return "must not contain a fragment (#...)"
    if scheme == "https":
        if not parts.hostname:
            return "must name a host"
        return None
    if scheme == "http":
        if not parts.hostname:
            return "must name a host"
        if not is_loopback_host(parts.hostname):
            return "must use https (http is allowed only for localhost and loopback addresses)"
        return None
    # A bare app scheme ("example://", as the seed's React Native example uses) is fine;
    # "myapp:" with nothing after it is not a URL.
    if not rest.lstrip("/") and not rest.startswith("//"):
        return "must be a deep link such as myapp://device/connected"
    return None
