"""One TLS context for every outbound HTTPS call to manufacturers.

Building an ``ssl.SSLContext`` loads the CA bundle, which costs milliseconds of CPU; made
per request it dominated the OAuth callback. Contexts are safe to share between clients."""

from __future__ import annotations

import functools
import ssl

import httpx


@functools.cache
def tls_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()
