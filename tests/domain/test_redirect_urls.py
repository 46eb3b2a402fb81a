"""The redirectUrl policy (seed: "Configuration Fields / redirectUrl")."""

from __future__ import annotations

import pytest

from texture_connect.domain.redirect_urls import (
    FORBIDDEN_SCHEMES,
    MAX_LENGTH,
    is_loopback_host,
    redirect_url_problem,
)


@pytest.mark.parametrize(
    "url",
    [
        "https://mycompany.com/app",
        "https://your-application.com/redirect",
        "https://yourapp.com/oauth/callback?flow=headless&x=1",
        "https://example.com",
        "https://example.com:8443/done",
        "HTTPS://EXAMPLE.COM/done",
        "https://[2001:db8::1]/done",
    ],
)
def test_https_urls_are_allowed(url: str) -> None:
    assert redirect_url_problem(url) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost/cb",
        "http://localhost:3000/cb",
        "HTTP://LOCALHOST:3000/cb",
        "http://127.0.0.1/cb",
        "http://127.0.0.1:8080/cb?x=1",
        "http://127.1.2.3/cb",
        "http://[::1]/cb",
        "http://[::1]:8080/cb",
        "http://app.localhost/cb",
    ],
)
def test_http_is_allowed_on_loopback_hosts(url: str) -> None:
    assert redirect_url_problem(url) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/cb",
        "http://mycompany.com",
        "http://0.0.0.0/cb",
        "http://10.0.0.1/cb",
        "http://192.168.1.1/cb",
        "http://localhost.evil.com/cb",
        "http://127.0.0.1.nip.io/cb",
        "http://[2001:db8::1]/cb",
    ],
)
def test_http_is_refused_on_non_loopback_hosts(url: str) -> None:
    problem = redirect_url_problem(url)
    assert problem is not None
    assert "https" in problem


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST", True),
        ("127.0.0.1", True),
        ("127.255.255.254", True),
        ("[::1]", True),
        ("::1", True),
        ("dev.localhost", True),
        ("localhost.example.com", False),
        ("example.com", False),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.1", False),
    ],
)
def test_is_loopback_host(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


@pytest.mark.parametrize(
    "url",
    [
        "myapp://device/connected",
        "com.example.app://oauth/done",
        "my-app+dev.v2://callback",
        "myapp:/device/connected",
        "MyApp://device/connected?ok=1",
    ],
)
def test_custom_scheme_deep_links_are_allowed(url: str) -> None:
    assert redirect_url_problem(url) is None


@pytest.mark.parametrize("url", ["example://", "facebook://"])
def test_bare_custom_scheme_from_the_seed_is_allowed(url: str) -> None:
    assert redirect_url_problem(url) is None


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "javascript://example.com/%0Aalert(1)",
        "JaVaScRiPt:alert(1)",
        "JAVASCRIPT:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "DATA:text/html;base64,PHNjcmlwdD4=",
        "file:///etc/passwd",
        "FiLe://localhost/etc/passwd",
        "vbscript:msgbox(1)",
        "VBScript:msgbox(1)",
        "blob:https://example.com/uuid",
        "about:blank",
        "view-source:https://example.com",
        "filesystem:https://example.com/temporary/x",
    ],
)
def test_dangerous_schemes_are_refused_in_any_case(url: str) -> None:
    problem = redirect_url_problem(url)
    assert problem is not None
    assert "scheme" in problem


def test_forbidden_schemes_include_the_script_and_local_ones() -> None:
    assert {"javascript", "data", "file", "vbscript"} <= FORBIDDEN_SCHEMES


@pytest.mark.parametrize(
    "url",
    [
        "https://user:password@example.com/cb",
        "https://user@example.com/cb",
        "https://:password@example.com/cb",
        "https://example.com@evil.com/cb",
        "http://user:pw@localhost/cb",
        "myapp://user:pw@device/connected",
    ],
)
def test_credentials_in_the_url_are_refused(url: str) -> None:
    assert redirect_url_problem(url) == "must not contain credentials (user:password@)"


def test_url_of_exactly_max_length_is_allowed() -> None:
    base = "https://example.com/"
    url = base + "a" * (MAX_LENGTH - len(base))
    assert len(url) == MAX_LENGTH == 2048
    assert redirect_url_problem(url) is None


def test_over_long_url_is_refused() -> None:
    base = "https://example.com/"
    url = base + "a" * (MAX_LENGTH + 1 - len(base))
    assert len(url) == 2049
    assert redirect_url_problem(url) == "must be at most 2048 characters"


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/cb#frag",
        "https://example.com/cb#",
        "https://example.com/cb?x=1#",
        "https://example.com/#/route",
        "http://localhost/cb#x",
        "myapp://device/connected#x",
    ],
)
def test_fragments_are_refused(url: str) -> None:
    assert redirect_url_problem(url) == "must not contain a fragment (#...)"


@pytest.mark.parametrize(
    "url",
    [
        " https://example.com/cb",
        "https://example.com/cb ",
        "https://example.com/c b",
        "https://example.com/cb\n",
        "https://example.com/\r\nSet-Cookie:x",
        "https://example.com/\tcb",
        "java\tscript:alert(1)",
        "https://example.com/\x00",
        "https://example.com/\x1f",
        "https://example.com/\x7f",
        "https://example.com/\u00a0",
        "https://example.com/\u2028",
        "https://example.com/\x85",
    ],
)
def test_whitespace_and_control_characters_are_refused(url: str) -> None:
    assert redirect_url_problem(url) == "must not contain whitespace or control characters"


@pytest.mark.parametrize("char", ["\x80", "\x9b", "\x9f"])
def test_c1_control_characters_are_refused(char: str) -> None:
    assert redirect_url_problem(f"https://example.com/{char}") is not None


def test_empty_url_is_required() -> None:
    assert redirect_url_problem("") == "is required"


@pytest.mark.parametrize(
    "url",
    [
        "example.com/cb",
        "/relative/path",
        "//example.com/cb",
        "myapp:",
        "1app://device",
        "-app://device",
    ],
)
def test_urls_without_a_valid_scheme_are_refused(url: str) -> None:
    problem = redirect_url_problem(url)
    assert problem is not None
    assert "absolute URL with a scheme" in problem


@pytest.mark.parametrize(
    "url",
    ["https://", "https:///cb", "https:example.com", "http://", "http:///cb"],
)
def test_http_and_https_must_name_a_host(url: str) -> None:
    assert redirect_url_problem(url) == "must name a host"


@pytest.mark.parametrize("url", ["https://example.com:99999/cb", "https://[::1/cb"])
def test_malformed_urls_are_refused(url: str) -> None:
    assert redirect_url_problem(url) == "is not a valid URL"


@pytest.mark.parametrize("url", ["myapp:", "myapp:/"])
def test_custom_scheme_needs_more_than_the_scheme(url: str) -> None:
    assert redirect_url_problem(url) is not None
