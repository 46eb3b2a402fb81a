"""Page helpers for the hosted Connect flow tests in a real browser (issue 4).

Playwright drives Debian's Chromium (``/usr/bin/chromium``): Playwright's own browser download
cannot work here. Nothing here sleeps to wait for a page: Playwright's locators and
``expect`` wait for what they assert.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from e2e_support import OrgKeys, Server
from google.protobuf import json_format
from playwright.async_api import (
    Browser,
    ConsoleMessage,
    Page,
    Playwright,
    Response,
    async_playwright,
    expect,
)

from texture.connect.v1 import (
    connection_pb2,
    connection_pb2_grpc,
    customers_pb2,
    customers_pb2_grpc,
    devices_pb2,
    devices_pb2_grpc,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# The narrowest phone the pages must stay readable on (issue 4: "readable at 360 px wide").
MOBILE = {"width": 360, "height": 780}
TOUR_DIR = Path(__file__).with_name("tour")
RPC_TIMEOUT = 10.0
# Playwright's waits (expect, wait_for_url): generous for a loaded CI machine, never slept.
WAIT_MS = 20_000

EXPIRED = connection_pb2.CONNECT_SESSION_STATUS_EXPIRED
COMPLETED = connection_pb2.CONNECT_SESSION_STATUS_COMPLETED
FAILED = connection_pb2.CONNECT_SESSION_STATUS_FAILED
PENDING = connection_pb2.CONNECT_SESSION_STATUS_PENDING

expect.set_options(timeout=WAIT_MS)


# ------------------------------------------------------------------------------ the browser


def require_chromium() -> None:
    """Skips without Debian's Chromium locally; under CI=true its absence is a failure."""
    if CHROMIUM.exists():
        return
    reason = f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run installs it)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    require_chromium()
    async with async_playwright() as playwright:
        browser = await launch(playwright)
        try:
            yield browser
        finally:
            await browser.close()


async def launch(playwright: Playwright) -> Browser:
    return await playwright.chromium.launch(
        executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
    )


@asynccontextmanager
async def mobile_page(browser: Browser) -> AsyncIterator[Page]:
    """A fresh context (no shared cookies) with a 360 x 780 viewport. Script errors, console
    errors (a CSP violation is one) and failed subresources (a missing stylesheet, script or
    icon) are collected in ``page.problems``; a page answering 4xx on purpose (a form with
    errors, an expired link) is not a problem."""
    context = await browser.new_context(viewport=MOBILE, java_script_enabled=True)
    context.set_default_timeout(WAIT_MS)
    context.set_default_navigation_timeout(WAIT_MS)
    page = await context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"pageerror at {page.url}: {exc}"))
    page.on("console", lambda msg: _console(problems, page, msg))
    page.on("response", lambda response: _subresource(problems, response))
    page.problems = problems  # type: ignore[attr-defined]
    try:
        yield page
    finally:
        await context.close()


def _console(problems: list[str], page: Page, message: ConsoleMessage) -> None:
    # Chromium logs every 4xx/5xx response, documents included, as "Failed to load
    # resource"; failed subresources are recorded with their URL by _subresource.
    if message.type == "error" and not message.text.startswith("Failed to load resource"):
        problems.append(f"console error at {page.url}: {message.text}")


def _subresource(problems: list[str], response: Response) -> None:
    if response.status >= 400 and response.request.resource_type != "document":
        problems.append(f"{response.status} for {response.request.resource_type} {response.url}")


def problems_of(page: Page) -> list[str]:
    return list(page.problems)  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------- the API


def unique_email() -> str:
    return f"ada+{secrets.token_hex(6)}@example.com"


def new_reference() -> str:
    return "hosted-" + secrets.token_hex(6)


def standard_body(redirect_url: str, **changes: Any) -> dict[str, Any]:
    """A standard-mode body (no "mode": standard is the default), as the SDKs send it."""
    return {
        "referenceId": new_reference(),
        "clientName": "Energy Coffee",
        "redirectUrl": redirect_url,
        **changes,
    }


def complete_info(**changes: Any) -> dict[str, Any]:
    """customerInfo complete enough to bypass the hosted customer form."""
    return {
        "firstName": "Jane",
        "lastName": "Smith",
        "email": unique_email(),
        "location": {
            "streetOne": "123 Main St",
            "city": "Austin",
            "state": "TX",
            "postalCode": "78701",
            "country": "US",
        },
        **changes,
    }


def metadata(key: str) -> tuple[tuple[str, str]]:
    return (("texture-api-key", key),)


async def create_link(
    server: Server, key: str, body: Mapping[str, Any]
) -> connection_pb2.CreateConnectionResponse:
    """CreateConnection with any key (a connect key for standard mode, as the SDKs do)."""
    request = json_format.ParseDict(dict(body), connection_pb2.CreateConnectionRequest())
    async with server.channel() as channel:
        stub = connection_pb2_grpc.ConnectionServiceStub(channel)
        reply: connection_pb2.CreateConnectionResponse = await stub.CreateConnection(
            request, metadata=metadata(key), timeout=RPC_TIMEOUT
        )
    return reply


async def get_session(
    server: Server, org: OrgKeys, link_session_id: str
) -> connection_pb2.ConnectSession:
    async with server.channel() as channel:
        stub = connection_pb2_grpc.ConnectionServiceStub(channel)
        reply = await stub.GetConnection(
            connection_pb2.GetConnectionRequest(link_session_id=link_session_id),
            metadata=org.metadata,
            timeout=RPC_TIMEOUT,
        )
    session: connection_pb2.ConnectSession = reply.session
    return session


async def wait_for_status(
    server: Server, org: OrgKeys, link_session_id: str, status: int, within: float = 20.0
) -> connection_pb2.ConnectSession:
    """Polls GetConnection until the session has ``status`` (a bounded condition wait)."""
    deadline = time.monotonic() + within
    while True:
        session = await get_session(server, org, link_session_id)
        if session.status == status:
            return session
        assert time.monotonic() < deadline, f"session still {session.status}, wanted {status}"
        await asyncio.sleep(0.1)


async def list_devices(server: Server, org: OrgKeys, customer_id: str) -> list[Any]:
    async with server.channel() as channel:
        stub = devices_pb2_grpc.DeviceServiceStub(channel)
        reply = await stub.ListDevices(
            devices_pb2.ListDevicesRequest(customer_id=customer_id, page_size=100),
            metadata=org.metadata,
            timeout=RPC_TIMEOUT,
        )
    assert not reply.next_page_token
    return list(reply.devices)


async def get_customer(server: Server, org: OrgKeys, customer_id: str) -> Any:
    async with server.channel() as channel:
        stub = customers_pb2_grpc.CustomerServiceStub(channel)
        reply = await stub.GetCustomer(
            customers_pb2.GetCustomerRequest(customer_id=customer_id),
            metadata=org.metadata,
            timeout=RPC_TIMEOUT,
        )
    return reply.customer


# ------------------------------------------------------------------------------ the pages


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def field(page: Page, name: str) -> Any:
    """An input by its form field name (names such as ``location.city`` contain dots)."""
    return page.locator(f'[name="{name}"]')


def field_error(page: Page, name: str) -> Any:
    return page.locator(f'[id="{name}-error"]')


def button(page: Page, name: str) -> Any:
    return page.get_by_role("button", name=name, exact=True)


async def heading(page: Page, text: str) -> None:
    await expect(page.get_by_role("heading", level=1)).to_contain_text(text)


async def assert_readable_and_labelled(page: Page) -> None:
    """No horizontal scrolling at 360 px, and every visible input has a label (or is named
    by aria-label/aria-labelledby)."""
    widths = await page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert widths[0] <= widths[1], f"{page.url}: {widths[0]} px wide content in {widths[1]} px"
    unlabelled = await page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea')]
            .filter(el => el.type !== 'hidden' && !el.hidden)
            .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                          && !el.getAttribute('aria-labelledby'))
            .map(el => el.name || el.id)"""
    )
    assert unlabelled == [], f"{page.url}: inputs without a label: {unlabelled}"


async def snap(page: Page, name: str, *, ours: bool = True) -> Path:
    """A full-page screenshot at 360 px, kept as tests/e2e/tour/<name>.png (overwritten each
    run). Our own pages are also checked for width and labels."""
    if ours:
        await assert_readable_and_labelled(page)
    TOUR_DIR.mkdir(exist_ok=True)
    path = TOUR_DIR / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True, animations="disabled")
    assert path.stat().st_size > 0
    return path


async def sandbox_sign_in(
    page: Page, manufacturer: str, user: str, decision: str = "allow", *, tour: str = ""
) -> None:
    """At the sandbox manufacturer's sign-in and consent page (a plain form)."""
    await page.wait_for_url(f"**/sandbox/{manufacturer}/oauth/authorize?**")
    await page.locator("#username").fill(user)
    await page.locator("#password").fill("pass_good")
    if tour:
        await snap(page, tour, ours=False)
    await page.locator(f"button[name=decision][value={decision}]").click()


async def focused(page: Page, selector: str) -> bool:
    return bool(
        await page.evaluate(
            "s => !!document.activeElement && document.activeElement.matches(s)", selector
        )
    )


async def tab_to(page: Page, selector: str, *, backwards: bool = False, limit: int = 30) -> None:
    """Presses Tab (or Shift+Tab) until the focused element matches ``selector``."""
    key = "Shift+Tab" if backwards else "Tab"
    for _ in range(limit):
        await page.keyboard.press(key)
        if await focused(page, selector):
            return
    raise AssertionError(f"{selector} never got the focus with {key} on {page.url}")
