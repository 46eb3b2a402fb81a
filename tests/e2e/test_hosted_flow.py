"""The hosted Connect flow (standard mode) in a real browser (issue 4, "Tests in a real
browser").

Playwright drives Debian's Chromium against the real ``texture-connect serve --sandbox``
process: the welcome page, manufacturer selection with its search box, the customer form with
inline errors, the sandbox manufacturer's OAuth sign-in, a credential-based manufacturer with
a one-time code, device choice, the final redirect, error pages with "Try again", cancel, an
expired link, a keyboard-only run, the security headers and CSRF. Every page kind is
screenshotted 360 px wide into tests/e2e/tour/.

The app's redirectUrl is the server's own ``/healthz`` (it answers 200), so the browser
really lands there and the test reads the query it carries. One server is shared by the
module (each test creates customers of its own); the expired-link test starts its own with a
one-second session lifetime. Nothing sleeps to synchronise: Playwright waits for what it
asserts, and expiry is a bounded condition loop over GetConnection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e.hosted_support import (
    COMPLETED,
    EXPIRED,
    FAILED,
    PENDING,
    button,
    chromium,
    complete_info,
    create_link,
    field,
    field_error,
    focused,
    get_customer,
    get_session,
    heading,
    list_devices,
    mobile_page,
    problems_of,
    query_of,
    require_chromium,
    sandbox_sign_in,
    snap,
    standard_body,
    tab_to,
    unique_email,
    wait_for_status,
)
from e2e_support import OrgKeys, Server, cli, make_org, server_env
from playwright.async_api import Page, expect

CLIENT = "Energy Coffee"  # the sessions' clientName
ORG_NAME = "Energy Coffee Inc."  # the organization's name, shown without a clientName
CUSTOMER_FIELDS = (
    "firstName",
    "lastName",
    "email",
    "phone",
    "location.streetOne",
    "location.streetTwo",
    "location.city",
    "location.state",
    "location.postalCode",
    "location.country",
)


# --------------------------------------------------------------------------------- fixtures


@dataclass
class Shared:
    server: Server
    org: OrgKeys

    @property
    def app_url(self) -> str:
        """The app's redirectUrl: somewhere the browser can really land (200 "ok")."""
        return f"{self.server.http_url}/healthz"

    def landed(self, page: Page) -> dict[str, list[str]]:
        assert page.url.startswith(self.app_url + "?"), page.url
        return query_of(page.url)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    require_chromium()
    tmp = tmp_path_factory.mktemp("hosted-flow")
    env, grpc_addr, http_url = server_env(tmp)
    cli(env, "migrate")
    server = Server(env, grpc_addr, http_url, tmp / "server.log").start()
    try:
        yield Shared(server, make_org(server.env, ORG_NAME, headless=False))
    finally:
        assert server.stop() == 0, server.logs()


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    async with chromium() as browser, mobile_page(browser) as tab:
        yield tab


def customer_values() -> dict[str, str]:
    return {
        "firstName": "Ada",
        "lastName": "Lovelace",
        "email": unique_email(),
        "phone": "555-555-0100",
        "location.streetOne": "1 Analytical Way",
        "location.streetTwo": "Apt 2",
        "location.city": "Austin",
        "location.state": "TX",
        "location.postalCode": "78701",
        "location.country": "US",
    }


async def values_of(page: Page) -> dict[str, str]:
    return {name: await field(page, name).input_value() for name in CUSTOMER_FIELDS}


def assert_record_holds(customer: Any, typed: dict[str, str]) -> None:
    """The Contact and the Site hold what the customer confirmed in the form."""
    contact = {
        "firstName": customer.first_name,
        "lastName": customer.last_name,
        "email": customer.email,
        "phone": customer.phone,
    }
    assert contact == {k: typed[k] for k in contact}
    assert len(customer.sites) == 1, customer.sites
    loc = customer.sites[0].location
    assert {
        "location.streetOne": loc.street_one,
        "location.streetTwo": loc.street_two,
        "location.city": loc.city,
        "location.state": loc.state,
        "location.postalCode": loc.postal_code,
        "location.country": loc.country,
    } == {k: v for k, v in typed.items() if k.startswith("location.")}


def files_containing(directory: Path, secret: str) -> list[Path]:
    """Files under ``directory`` (the database and its journals) holding ``secret``."""
    return [p for p in directory.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def assert_no_page_problems(page: Page) -> None:
    """No script error and no console error (a CSP violation, a missing asset) anywhere."""
    assert problems_of(page) == []


# ------------------------------------------------------------------- the standard flow


async def test_standard_flow_search_form_sign_in_and_one_of_two_devices(
    shared: Shared, page: Page
) -> None:
    """A standard session created with the publishable connect key, every manufacturer of
    the catalog: search, the customer form (an inline error first), the sandbox's OAuth
    sign-in, one of two devices, and the redirect with the scoped key. Over gRPC, exactly
    the chosen device is connected and the records hold what was confirmed."""
    created = await create_link(
        shared.server, shared.org.connect_key, standard_body(shared.app_url)
    )
    assert created.link_url == f"{shared.server.http_url}/{created.link_token}"
    response = await page.goto(created.link_url)
    assert response is not None and response.status == 200

    # 1. Welcome: names the client and says what will be shared.
    await heading(page, f"{CLIENT} wants to connect to your energy devices")
    await expect(page.locator("main")).to_contain_text("contact and site details you confirm")
    await snap(page, "welcome")
    await button(page, "Continue").click()

    # 2. Manufacturers: the whole catalog, each with its device types; the search narrows it.
    await heading(page, "Who made your device?")
    choices = page.locator("button[name=manufacturer]")
    visible = page.locator("button[name=manufacturer]:visible")
    await expect(choices).to_have_count(9)
    await expect(visible).to_have_count(9)
    await expect(page.locator("button[name=manufacturer][value=tesla]")).to_contain_text(
        "battery, vehicle, charger, inverter"
    )
    await expect(page.locator("button[name=manufacturer][value=daikin]")).to_contain_text(
        "thermostat, heat pump"
    )
    await snap(page, "manufacturers")
    search = page.get_by_label("Search companies")
    await search.fill("thermostat")
    await expect(visible).to_have_count(3)
    await expect(page.locator("#search-status")).to_have_text("3 companies")
    assert sorted(await visible.evaluate_all("els => els.map(e => e.value)")) == [
        "daikin",
        "ecobee",
        "honeywell",
    ]
    await search.fill("ECOB")
    await expect(visible).to_have_count(1)
    await expect(page.locator("#search-status")).to_have_text("1 company")
    await search.fill("no such company")
    await expect(visible).to_have_count(0)
    await search.fill("")
    await expect(visible).to_have_count(9)
    await search.fill("ecobee")
    await expect(visible).to_have_count(1)
    await page.locator("button[name=manufacturer][value=ecobee]").click()

    # 3. The customer form: a missing field is named inline; nothing typed is lost.
    await heading(page, "Confirm your details")
    await snap(page, "customer")
    typed = customer_values()
    for name, value in typed.items():
        if name != "location.city":
            await field(page, name).fill(value)
    await button(page, "Continue").click()
    await expect(field_error(page, "location.city")).to_have_text("Please enter your city.")
    await expect(page.locator(".field-error")).to_have_count(1)
    await expect(page.get_by_role("alert")).to_contain_text("check the highlighted fields")
    city = field(page, "location.city")
    await expect(city).to_have_attribute("aria-invalid", "true")
    await expect(city).to_have_attribute("aria-describedby", "location.city-error")
    # Next to the field: the error immediately follows its input.
    assert await city.evaluate("el => el.nextElementSibling && el.nextElementSibling.id") == (
        "location.city-error"
    )
    assert await values_of(page) == {**typed, "location.city": ""}
    await snap(page, "customer-errors")
    await city.fill(typed["location.city"])
    await button(page, "Continue").click()

    # 4. Authorization at the manufacturer (OAuth): the sandbox's sign-in page.
    await heading(page, "Sign in at ecobee")
    await button(page, "Continue to ecobee").click()
    await sandbox_sign_in(page, "ecobee", "user_good", tour="sandbox-sign-in")

    # 5. Device preferences: both devices, ticked by default; untick the second.
    await page.wait_for_url(created.link_url)
    await heading(page, f"Which devices may {CLIENT} access?")
    boxes = page.locator("input[type=checkbox][name=device]")
    await expect(boxes).to_have_count(2)
    await expect(page.locator("#device-1")).to_be_checked()
    await expect(page.locator("#device-2")).to_be_checked()
    await snap(page, "devices")
    kept = (await page.locator("label[for=device-1]").inner_text()).strip()
    dropped = (await page.locator("label[for=device-2]").inner_text()).strip()
    await page.locator("#device-2").uncheck()
    await button(page, "Connect selected devices").click()

    # 6. Done: the app's redirectUrl with the scoped key and the customer.
    await page.wait_for_url(f"{shared.app_url}?**")
    query = shared.landed(page)
    assert query["texture_scoped_key"][0].startswith("tx_scoped_"), query
    assert query["texture_customer_id"] == [created.customer_id], query
    assert "texture_existing_devices" not in query, query  # omitted: none before
    assert "texture_error" not in query
    await expect(page.locator("body")).to_have_text("ok")

    devices = await list_devices(shared.server, shared.org, created.customer_id)
    assert len(devices) == 1, devices
    (device,) = devices
    assert device.manufacturer == "ecobee"
    assert device.name and device.name in kept, (device, kept)
    assert device.type.replace("_", " ") in kept, (device, kept)
    assert device.name not in dropped, (device, dropped)
    customer = await get_customer(shared.server, shared.org, created.customer_id)
    assert_record_holds(customer, typed)
    assert customer.sites[0].id == device.site_id
    session = await get_session(shared.server, shared.org, created.link_session_id)
    assert session.status == COMPLETED
    assert session.site_id == device.site_id

    # The used link now has its own page.
    response = await page.goto(created.link_url)
    assert response is not None and response.status == 200
    await heading(page, "You're all set")
    await expect(button(page, "Continue")).to_have_count(0)
    await snap(page, "completed")

    # An existing customer with a site and a complete contact skips the form too.
    again = await create_link(
        shared.server,
        shared.org.secret_key,
        standard_body(
            shared.app_url,
            customerId=created.customer_id,
            manufacturerFilters={"manufacturers": ["honeywell", "daikin"]},
        ),
    )
    await page.goto(again.link_url)
    await button(page, "Continue").click()
    await page.locator("button[name=manufacturer][value=honeywell]").click()
    await heading(page, "Sign in at Honeywell Home")
    await expect(field(page, "firstName")).to_have_count(0)
    await button(page, "Continue to Honeywell Home").click()
    await sandbox_sign_in(page, "honeywell", "user_good")
    await button(page, "Connect selected devices").click()
    await page.wait_for_url(f"{shared.app_url}?**")
    query = shared.landed(page)
    assert query["texture_customer_id"] == [created.customer_id], query
    assert query["texture_existing_devices"] == ["true"], query
    assert len(await list_devices(shared.server, shared.org, created.customer_id)) == 3
    assert_no_page_problems(page)


async def test_one_manufacturer_and_complete_customer_info_skip_both_pages(
    shared: Shared, page: Page
) -> None:
    info = complete_info()
    created = await create_link(
        shared.server,
        shared.org.connect_key,
        standard_body(
            shared.app_url,
            manufacturerFilters={"manufacturers": ["tesla"]},
            customerInfo=info,
        ),
    )
    await page.goto(created.link_url)
    await heading(page, f"{CLIENT} wants to connect")
    await button(page, "Continue").click()
    # Straight to authorization: no manufacturer list, no customer form.
    await heading(page, "Sign in at Tesla")
    await expect(page.locator("button[name=manufacturer]")).to_have_count(0)
    await expect(field(page, "firstName")).to_have_count(0)
    await button(page, "Continue to Tesla").click()
    await sandbox_sign_in(page, "tesla", "user_ev")
    await page.wait_for_url(created.link_url)
    await expect(page.locator("input[name=device]")).to_have_count(2)
    await button(page, "Connect selected devices").click()
    await page.wait_for_url(f"{shared.app_url}?**")
    query = shared.landed(page)
    assert query["texture_scoped_key"][0].startswith("tx_scoped_")
    assert query["texture_customer_id"] == [created.customer_id]
    devices = await list_devices(shared.server, shared.org, created.customer_id)
    assert sorted(d.type for d in devices) == ["charger", "vehicle"]
    customer = await get_customer(shared.server, shared.org, created.customer_id)
    assert (customer.first_name, customer.last_name, customer.email) == (
        info["firstName"],
        info["lastName"],
        info["email"],
    )
    assert [s.location.street_one for s in customer.sites] == ["123 Main St"]
    assert_no_page_problems(page)


async def test_device_type_filter_leaving_one_manufacturer_skips_selection(
    shared: Shared, page: Page
) -> None:
    """manufacturerFilters.deviceTypes alone can leave one manufacturer: Rheem, which signs
    in with credentials on our own page."""
    created = await create_link(
        shared.server,
        shared.org.connect_key,
        standard_body(
            shared.app_url,
            manufacturerFilters={"deviceTypes": ["water_heater"]},
            customerInfo=complete_info(),
        ),
    )
    await page.goto(created.link_url)
    await button(page, "Continue").click()
    await heading(page, "Sign in to your Rheem account")
    await expect(page.locator("button[name=manufacturer]")).to_have_count(0)
    await expect(page.get_by_label("Rheem username or email")).to_be_visible()


async def test_partial_customer_info_prefills_the_form(shared: Shared, page: Page) -> None:
    email = unique_email()
    created = await create_link(
        shared.server,
        shared.org.connect_key,
        standard_body(
            shared.app_url,
            manufacturerFilters={"manufacturers": ["honeywell"]},
            customerInfo={
                "firstName": "John",
                "lastName": "Doe",
                "email": email,
                "phone": "555-555-0100",
            },
        ),
    )
    await page.goto(created.link_url)
    await button(page, "Continue").click()
    await heading(page, "Confirm your details")
    prefilled = await values_of(page)
    assert prefilled == {
        "firstName": "John",
        "lastName": "Doe",
        "email": email,
        "phone": "555-555-0100",
        "location.streetOne": "",
        "location.streetTwo": "",
        "location.city": "",
        "location.state": "",
        "location.postalCode": "",
        "location.country": "",
    }
    typed = {
        **prefilled,
        "firstName": "Johnny",
        "location.streetOne": "9 Elm St",
        "location.city": "Portland",
        "location.state": "OR",
        "location.postalCode": "97201",
        "location.country": "US",
    }
    # Invalid values first: the errors are in plain words, and what was typed stays.
    mistyped = {**typed, "phone": "12", "location.country": "USA"}
    for name, value in mistyped.items():
        await field(page, name).fill(value)
    await button(page, "Continue").click()
    await expect(field_error(page, "location.country")).to_have_text(
        "Enter a two-letter country code, like US or CA."
    )
    await expect(field_error(page, "phone")).to_have_text(
        "Enter a phone number with 7 to 15 digits, like 555-555-0100."
    )
    await expect(page.locator(".field-error")).to_have_count(2)
    assert await values_of(page) == mistyped
    await field(page, "phone").fill(typed["phone"])
    await field(page, "location.country").fill(typed["location.country"])
    await button(page, "Continue").click()
    await heading(page, "Sign in at Honeywell Home")
    # Confirmed, so the records already hold it (before any sign-in).
    customer = await get_customer(shared.server, shared.org, created.customer_id)
    assert_record_holds(customer, typed)


# ---------------------------------------------------------- a credential-based manufacturer


async def test_credential_manufacturer_wrong_password_then_one_time_code(
    shared: Shared, page: Page
) -> None:
    created = await create_link(
        shared.server,
        shared.org.connect_key,
        standard_body(
            shared.app_url,
            manufacturerFilters={"manufacturers": ["generac"]},
            customerInfo=complete_info(),
        ),
    )
    wrong_password = "wrong-" + unique_email().split("@")[0]
    await page.goto(created.link_url)
    await button(page, "Continue").click()

    # Our own sign-in form for the manufacturer.
    await heading(page, "Sign in to your Generac PWRcell account")
    await snap(page, "credential-sign-in")
    username = page.get_by_label("Generac PWRcell username or email")
    password = page.get_by_label("Password")
    await username.fill("user_good")
    await password.fill(wrong_password)
    await button(page, "Sign in").click()
    await expect(page.get_by_role("alert")).to_contain_text(
        "That username and password did not work"
    )
    await expect(field_error(page, "password")).to_contain_text("did not work")
    await expect(password).to_have_attribute("aria-invalid", "true")
    await expect(username).to_have_value("user_good")  # kept
    await expect(password).to_have_value("")  # never echoed
    assert wrong_password not in await page.content()
    await snap(page, "credential-sign-in-error")

    # user_otp: the manufacturer asks for a one-time code.
    await username.fill("user_otp")
    await password.fill("pass_good")
    await button(page, "Sign in").click()
    await heading(page, "Enter the code Generac PWRcell sent you")
    await expect(page.locator("main")).to_contain_text("sms to •••• 0100")
    await snap(page, "one-time-code")
    code = page.get_by_label("One-time code")
    await code.fill("000000")
    await button(page, "Verify").click()
    await expect(page.get_by_role("alert")).to_contain_text("That code is not right")
    await expect(field_error(page, "code")).to_contain_text("not right")
    await code.fill("123456")
    await button(page, "Verify").click()

    await heading(page, f"Which devices may {CLIENT} access?")
    await expect(page.locator("input[name=device]:checked")).to_have_count(2)
    await button(page, "Connect selected devices").click()
    await page.wait_for_url(f"{shared.app_url}?**")
    query = shared.landed(page)
    assert query["texture_scoped_key"][0].startswith("tx_scoped_")
    assert query["texture_customer_id"] == [created.customer_id]
    devices = await list_devices(shared.server, shared.org, created.customer_id)
    assert sorted(d.type for d in devices) == ["battery", "inverter"]
    assert {d.manufacturer for d in devices} == {"generac"}

    # Credentials are used once and never stored or logged.
    assert wrong_password not in shared.server.logs()
    assert files_containing(Path(shared.server.env["TEXTURE_DATA_DIR"]), wrong_password) == []
    assert_no_page_problems(page)


async def test_credential_manufacturer_server_error_offers_try_again(
    shared: Shared, page: Page
) -> None:
    created = await create_link(
        shared.server,
        shared.org.connect_key,
        standard_body(
            shared.app_url,
            manufacturerFilters={"manufacturers": ["generac"]},
            customerInfo=complete_info(),
        ),
    )
    await page.goto(created.link_url)
    await button(page, "Continue").click()
    await page.get_by_label("Generac PWRcell username or email").fill("user_server_error")
    await page.get_by_label("Password").fill("pass_good")
    async with page.expect_navigation() as navigation:
        await button(page, "Sign in").click()
    response = await navigation.value
    assert response is not None and response.status < 500, response and response.status
    await expect(button(page, "Try again")).to_be_visible(timeout=2_000)
    await button(page, "Try again").click()
    await page.get_by_label("Generac PWRcell username or email").fill("user_good")
    await page.get_by_label("Password").fill("pass_good")
    await button(page, "Sign in").click()
    await button(page, "Connect selected devices").click()
    await page.wait_for_url(f"{shared.app_url}?**")
    assert shared.landed(page)["texture_scoped_key"][0].startswith("tx_scoped_")


# ---------------------------------------------------------------------------- errors


async def test_deny_at_the_manufacturer_then_return_to_the_client(
    shared: Shared, page: Page
) -> None:
    created = await create_link(
        shared.server,
        shared.org.connect_key,
        standard_body(
            shared.app_url,
            manufacturerFilters={"manufacturers": ["tesla"]},
            customerInfo=complete_info(),
        ),
    )
    await page.goto(created.link_url)
    await button(page, "Continue").click()
    await button(page, "Continue to Tesla").click()
    await sandbox_sign_in(page, "tesla", "user_good", decision="deny")

    await page.wait_for_url(created.link_url)
    await heading(page, "Access was not allowed")
    await expect(button(page, "Try again")).to_have_count(0)  # not retryable
    await snap(page, "access-denied")
    await button(page, f"Return to {CLIENT}").click()
    await page.wait_for_url(f"{shared.app_url}?**")
    assert shared.landed(page) == {"texture_error": ["access_denied"]}
    session = await get_session(shared.server, shared.org, created.link_session_id)
    assert (session.status, session.error) == (FAILED, "access_denied")
    assert await list_devices(shared.server, shared.org, created.customer_id) == []


async def test_cancel_on_an_early_step_returns_access_denied(shared: Shared, page: Page) -> None:
    """Without clientName the pages name the organization."""
    body = standard_body(shared.app_url)
    del body["clientName"]
    created = await create_link(shared.server, shared.org.connect_key, body)
    await page.goto(created.link_url)
    await heading(page, f"{ORG_NAME} wants to connect")
    await button(page, "Continue").click()
    await heading(page, "Who made your device?")
    await button(page, f"Cancel and return to {ORG_NAME}").click()
    await page.wait_for_url(f"{shared.app_url}?**")
    assert shared.landed(page) == {"texture_error": ["access_denied"]}
    session = await get_session(shared.server, shared.org, created.link_session_id)
    assert (session.status, session.error) == (FAILED, "access_denied")
    # The link now explains itself instead of restarting the flow.
    await page.goto(created.link_url)
    await heading(page, "Access was not allowed")
    await expect(page.locator("button[name=manufacturer]")).to_have_count(0)


@pytest.mark.parametrize(
    ("user", "error", "title", "tour"),
    [
        ("user_server_error", "server_error", "The manufacturer had a problem", "error"),
        ("user_token_fail", "connection_failed", "We couldn't finish connecting", ""),
    ],
)
async def test_retryable_error_then_try_again_in_the_same_session(
    shared: Shared, page: Page, user: str, error: str, title: str, tour: str
) -> None:
    created = await create_link(
        shared.server,
        shared.org.connect_key,
        standard_body(
            shared.app_url,
            manufacturerFilters={"manufacturers": ["enphase"]},
            customerInfo=complete_info(),
        ),
    )
    await page.goto(created.link_url)
    await button(page, "Continue").click()
    await button(page, "Continue to Enphase").click()
    await sandbox_sign_in(page, "enphase", user)

    await page.wait_for_url(created.link_url)
    await heading(page, title)
    await expect(button(page, f"Return to {CLIENT}")).to_be_visible()
    if tour:
        await snap(page, tour)
    session = await get_session(shared.server, shared.org, created.link_session_id)
    assert session.status == PENDING  # a retry may succeed: the session stays open

    await button(page, "Try again").click()
    await sandbox_sign_in(page, "enphase", "user_good")
    await page.wait_for_url(created.link_url)
    await heading(page, f"Which devices may {CLIENT} access?")
    await button(page, "Connect selected devices").click()
    await page.wait_for_url(f"{shared.app_url}?**")
    query = shared.landed(page)
    assert query["texture_scoped_key"][0].startswith("tx_scoped_")
    assert query["texture_customer_id"] == [created.customer_id]
    session = await get_session(shared.server, shared.org, created.link_session_id)
    assert session.status == COMPLETED
    assert_no_page_problems(page)


async def test_an_error_in_the_query_does_not_override_a_fresh_session(
    shared: Shared, page: Page
) -> None:
    created = await create_link(
        shared.server, shared.org.connect_key, standard_body(shared.app_url)
    )
    for error in ("connect_session_expired", "access_denied"):
        response = await page.goto(f"{created.link_url}?error={error}")
        assert response is not None and response.status == 200
        # The page has loaded: no need to wait for a heading that may never come.
        assert "wants to connect" in await page.locator("h1").inner_text(), error


async def test_expired_link_shows_its_own_page(serve: Any) -> None:
    require_chromium()
    server = serve(TEXTURE_SESSION_TTL="1")
    org = make_org(server.env, headless=False)
    app_url = f"{server.http_url}/healthz"
    created = await create_link(server, org.connect_key, standard_body(app_url))
    await wait_for_status(server, org, created.link_session_id, EXPIRED)
    async with chromium() as browser, mobile_page(browser) as page:
        response = await page.goto(created.link_url)
        assert response is not None and response.status == 410
        await heading(page, "This link has expired")
        await expect(page.locator("main")).to_contain_text("expired")
        await expect(page.locator("main")).not_to_contain_text("Traceback")
        await expect(page.locator("form")).to_have_count(0)
        await snap(page, "expired")
    assert "Traceback" not in server.logs()


async def test_garbage_link_is_not_valid(shared: Shared, page: Page) -> None:
    for path in ("/link_" + "0" * 32, "/link_nothex", "/link_" + "f" * 33):
        response = await page.goto(shared.server.http_url + path)
        assert response is not None and response.status == 404, path
        await heading(page, "This link is not valid")
        await expect(page.locator("main")).not_to_contain_text("Traceback")
    await snap(page, "not-valid")


# ------------------------------------------------------------------ keyboard-only path


async def test_keyboard_only_from_welcome_to_redirect(shared: Shared, page: Page) -> None:
    """Tab, Shift+Tab, Space, Enter and typing only: no clicks, no fills."""
    created = await create_link(
        shared.server, shared.org.connect_key, standard_body(shared.app_url)
    )
    await page.goto(created.link_url)
    await heading(page, f"{CLIENT} wants to connect")
    await tab_to(page, 'form[action$="/continue"] button')
    await page.keyboard.press("Enter")

    await heading(page, "Who made your device?")
    await tab_to(page, "#search")
    await page.keyboard.type("daik")
    await expect(page.locator("#search-status")).to_have_text("1 company")
    await tab_to(page, "button[name=manufacturer][value=daikin]")
    await page.keyboard.press("Space")

    await heading(page, "Confirm your details")
    typed = customer_values()
    for name, value in typed.items():
        await tab_to(page, f'[name="{name}"]')
        await page.keyboard.type(value)
    await page.keyboard.press("Enter")  # implicit submission from the last field

    await heading(page, "Sign in at Daikin")
    await tab_to(page, 'form[action$="/authorize"] button')
    await page.keyboard.press("Enter")

    await page.wait_for_url("**/sandbox/daikin/oauth/authorize?**")
    await tab_to(page, "#username")
    await page.keyboard.type("user_good")
    await tab_to(page, "#password")
    await page.keyboard.type("pass_good")
    await tab_to(page, "button[name=decision][value=allow]")
    await page.keyboard.press("Enter")

    await page.wait_for_url(created.link_url)
    await heading(page, f"Which devices may {CLIENT} access?")
    await tab_to(page, "#device-1")
    await tab_to(page, "#device-2")
    await page.keyboard.press("Space")
    await expect(page.locator("#device-2")).not_to_be_checked()
    await tab_to(page, "#device-1", backwards=True)
    assert await focused(page, "#device-1")
    await expect(page.locator("#device-1")).to_be_checked()
    await tab_to(page, 'form[action$="/devices"] button')
    await page.keyboard.press("Enter")

    await page.wait_for_url(f"{shared.app_url}?**")
    query = shared.landed(page)
    assert query["texture_scoped_key"][0].startswith("tx_scoped_")
    assert query["texture_customer_id"] == [created.customer_id]
    devices = await list_devices(shared.server, shared.org, created.customer_id)
    assert len(devices) == 1, devices
    assert devices[0].manufacturer == "daikin"
    assert_record_holds(await get_customer(shared.server, shared.org, created.customer_id), typed)


# ------------------------------------------------------------------ headers and CSRF


def csp_directives(header: str) -> dict[str, list[str]]:
    directives: dict[str, list[str]] = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            directives[words[0].lower()] = words[1:]
    return directives


async def test_security_headers_and_csrf(shared: Shared, page: Page) -> None:
    created = await create_link(
        shared.server, shared.org.connect_key, standard_body(shared.app_url)
    )
    response = await page.goto(created.link_url)
    assert response is not None
    headers = await response.all_headers()
    csp = csp_directives(headers["content-security-policy"])
    sources = [source for values in csp.values() for source in values]
    # No third-party origin: only keywords, 'self' and data: images.
    assert all(s.startswith("'") or s == "data:" for s in sources), csp
    assert csp["default-src"] == ["'none'"], csp
    assert csp["frame-ancestors"] == ["'none'"], csp
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"

    # A POST without the right csrf field is refused, and the flow does not move.
    continue_url = f"{created.link_url}/continue"
    for form in ({}, {"csrf": "0" * 64}):
        refused = await page.request.post(continue_url, form=form, max_redirects=0)
        assert refused.status == 403, (form, refused.status)
        assert "This form has expired" in await refused.text()
    async with httpx.AsyncClient(follow_redirects=False) as http:
        other = await create_link(
            shared.server, shared.org.connect_key, standard_body(shared.app_url)
        )
        token = await page.locator("input[name=csrf]").first.input_value()
        # Another link's token does not fit this link.
        cross = await http.post(f"{other.link_url}/continue", data={"csrf": token})
        assert cross.status_code == 403
    await page.reload()
    await heading(page, f"{CLIENT} wants to connect")

    # In the browser: a tampered hidden field gets the 403 page.
    await page.locator("form[action$='/continue'] input[name=csrf]").evaluate(
        "el => { el.value = 'tampered'; }"
    )
    async with page.expect_navigation() as navigation:
        await button(page, "Continue").click()
    refused_page = await navigation.value
    assert refused_page is not None and refused_page.status == 403
    await heading(page, "This form has expired")
    session = await get_session(shared.server, shared.org, created.link_session_id)
    assert session.status == PENDING

    # Not framed by another page (X-Frame-Options/frame-ancestors): Chromium refuses it.
    await page.set_content(f'<iframe id="f" src="{created.link_url}"></iframe>', wait_until="load")
    (child,) = page.main_frame.child_frames
    assert "wants to connect" not in await child.content()
