"""Building the URL the customer returns to (seed: "Handling the OAuth Callback").

Parameters are appended to redirectUrl's own query, which is kept as it is; this works the
same for https URLs and custom-scheme deep links (``myapp://device/connected``).
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlencode, urlsplit, urlunsplit


def with_query(redirect_url: str, params: Mapping[str, str]) -> str:
    parts = urlsplit(redirect_url)
    extra = urlencode([(k, v) for k, v in params.items() if v])
    query = f"{parts.query}&{extra}" if parts.query and extra else parts.query or extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def success_redirect(
    redirect_url: str, *, scoped_key: str, customer_id: str, existing_devices: bool
) -> str:
    params = {"texture_scoped_key": scoped_key, "texture_customer_id": customer_id}
    if existing_devices:
        params["texture_existing_devices"] = "true"
    return with_query(redirect_url, params)


def error_redirect(redirect_url: str, texture_error: str, raw: str | None = None) -> str:
    """``texture_error_raw`` accompanies only ``unknown_error``, as the seed specifies."""
    params = {"texture_error": texture_error}
    if texture_error == "unknown_error" and raw:
        params["texture_error_raw"] = raw[:200]
    return with_query(redirect_url, params)
