"""Pagination per AIP-158: ``page_size`` and an opaque ``page_token``.

Lists are ordered newest first by (creation time, id); a token is the position of the last
item returned, bound to the list and its filters, so it cannot be replayed against another
query. Tokens are opaque to callers but not secret: they hold an id and a time.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from texture_connect.domain.errors import FieldViolation, invalid

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100


@dataclass(frozen=True)
class Page:
    size: int
    after: tuple[datetime, str] | None


def _binding(query: str) -> str:
    return hashlib.sha256(query.encode()).hexdigest()[:16]


def read_page(page_size: int, page_token: str, query: str) -> Page:
    """``query`` names the list and its filters (anything that must not change between
    pages). AIP-158: a negative size is invalid, 0 means the default, larger than the
    maximum is coerced down."""
    if page_size < 0:
        raise invalid([FieldViolation("pageSize", "must not be negative")])
    size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    if not page_token:
        return Page(size, None)
    try:
        data = json.loads(base64.urlsafe_b64decode(page_token.encode() + b"=="))
        if data["q"] != _binding(query):
            raise ValueError("token of another query")
        after = (datetime.fromtimestamp(data["t"] / 1_000_000, UTC), str(data["i"]))
    except (ValueError, KeyError, TypeError, OverflowError, OSError):
        raise invalid(
            [FieldViolation("pageToken", "is not a token from this list with these filters")]
        ) from None
    return Page(size, after)


def next_page_token(last_created_at: datetime, last_id: str, query: str) -> str:
    micros = int(last_created_at.timestamp() * 1_000_000)
    data = {"q": _binding(query), "t": micros, "i": last_id}
    return (
        base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode())
        .decode()
        .rstrip("=")
    )
