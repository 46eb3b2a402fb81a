"""CreateConnection validation (seed: "Configuration Fields", "manufacturerFilters",
"customerInfo", "Headless Connect / Prerequisites")."""

from __future__ import annotations

from dataclasses import replace

import pytest

from texture_connect.domain.addresses import Address
from texture_connect.domain.catalog import AuthKind, Catalog, Manufacturer, OAuthSettings
from texture_connect.domain.connect_request import (
    MAX_TAG_LENGTH,
    MAX_TAGS,
    ConnectionRequest,
    CreateConnectionInput,
    CustomerInfoInput,
    LocationInput,
    Mode,
    email_problem,
    phone_problem,
    validate_create_connection,
)
from texture_connect.domain.errors import Code, ServiceError

ORG_NAME = "Energy Coffee"
REDIRECT = "https://mycompany.com/app"


def _oauth(slug: str) -> OAuthSettings:
    return OAuthSettings(
        authorization_endpoint=f"https://sandbox.test/{slug}/oauth/authorize",
        token_endpoint=f"https://sandbox.test/{slug}/oauth/token",
        client_id="texture-dev",
        client_secret_env="TEXTURE_SANDBOX_CLIENT_SECRET",
    )


def _oauth2(slug: str, *device_types: str) -> Manufacturer:
    return Manufacturer(slug, slug.title(), device_types, AuthKind.OAUTH2, "sandbox", _oauth(slug))


# The shape of the development catalog: four OAuth manufacturers and a credential one.
CATALOG = Catalog.of(
    [
        _oauth2("tesla", "battery", "vehicle", "charger", "inverter"),
        _oauth2("enphase", "battery", "inverter"),
        _oauth2("honeywell", "thermostat"),
        _oauth2("daikin", "thermostat", "heat_pump"),
        Manufacturer(
            "generac", "Generac PWRcell", ("battery", "inverter"), AuthKind.CREDENTIALS, "sandbox"
        ),
    ]
)

FULL_LOCATION = LocationInput(
    street_one="1600 Pennsylvania Avenue NW",
    city="Washington",
    state="DC",
    postal_code="20500",
    country="US",
)
FULL_INFO = CustomerInfoInput(
    first_name="John",
    last_name="Doe",
    email="example@example.com",
    phone="555-555-0100",
    location=FULL_LOCATION,
)


def validate(**fields: object) -> ConnectionRequest:
    fields.setdefault("redirect_url", REDIRECT)
    return validate_create_connection(
        CreateConnectionInput(**fields),  # type: ignore[arg-type]
        CATALOG,
        ORG_NAME,
    )


def violations_of(**fields: object) -> dict[str, str]:
    """{JSON field path: description} of the ServiceError the request raises."""
    with pytest.raises(ServiceError) as caught:
        validate(**fields)
    error = caught.value
    assert error.reason.name == "INVALID_REQUEST"
    assert error.code is Code.INVALID_ARGUMENT
    found = {v.field: v.description for v in error.violations}
    assert len(found) == len(error.violations), "each field is reported once"
    for field in found:
        assert field in error.message
    return found


def headless(**fields: object) -> ConnectionRequest:
    fields.setdefault("manufacturers", ("tesla",))
    return validate(mode=Mode.HEADLESS, **fields)


def headless_violations(**fields: object) -> dict[str, str]:
    fields.setdefault("manufacturers", ("tesla",))
    return violations_of(mode=Mode.HEADLESS, **fields)


# --- the minimal request --------------------------------------------------------------


def test_only_redirect_url_is_required() -> None:
    request = validate()
    assert request.redirect_url == REDIRECT
    assert request.mode is Mode.STANDARD
    assert request.reference_id == ""
    assert request.tags == ()
    assert request.address is None
    assert request.customer_form_bypassed is False
    assert [m.slug for m in request.offered] == [
        "tesla",
        "enphase",
        "honeywell",
        "daikin",
        "generac",
    ]


def test_missing_redirect_url_is_a_violation() -> None:
    assert violations_of(redirect_url="") == {"redirectUrl": "is required"}


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", "http://example.com/cb", "https://x.com/#f", "file:///etc"]
)
def test_redirect_url_policy_is_applied(url: str) -> None:
    assert set(violations_of(redirect_url=url)) == {"redirectUrl"}


def test_deep_link_redirect_url_is_accepted() -> None:
    assert validate(redirect_url="myapp://device/connected").redirect_url == (
        "myapp://device/connected"
    )


# --- every violation at once ----------------------------------------------------------


def test_every_violation_is_collected_at_once_with_json_paths() -> None:
    found = violations_of(
        redirect_url="javascript:alert(1)",
        reference_id="r" * 256,
        client_name="c" * 101,
        tags=("ok", "", " lead", "x" * 65),
        manufacturers=("tesla", "acme"),
        device_types=("battery", "toaster"),
        customer_info=CustomerInfoInput(
            first_name="John",
            email="not-an-email",
            phone="12",
            location=LocationInput(street_one="1 Main St", city="Austin", country="XX"),
        ),
    )
    assert set(found) == {
        "redirectUrl",
        "referenceId",
        "clientName",
        "tags[1]",
        "tags[2]",
        "tags[3]",
        "manufacturerFilters.manufacturers[1]",
        "manufacturerFilters.deviceTypes[1]",
        "customerInfo.email",
        "customerInfo.phone",
        "customerInfo.location.state",
        "customerInfo.location.postalCode",
        "customerInfo.location.country",
    }


# --- text fields ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "json", "limit"),
    [
        ("reference_id", "referenceId", 255),
        ("client_name", "clientName", 100),
        ("customer_id", "customerId", 64),
        ("site_id", "siteId", 64),
        ("request_id", "requestId", 128),
    ],
)
def test_text_fields_have_a_maximum_length(field: str, json: str, limit: int) -> None:
    assert getattr(validate(**{field: "a" * limit}), field) == "a" * limit
    found = violations_of(**{field: "a" * (limit + 1)})
    assert found == {json: f"must be at most {limit} characters"}


@pytest.mark.parametrize(
    ("field", "json"),
    [("reference_id", "referenceId"), ("client_name", "clientName"), ("site_id", "siteId")],
)
@pytest.mark.parametrize("char", ["\x00", "\n", "\x1b", "\x7f"])
def test_text_fields_refuse_control_characters(field: str, json: str, char: str) -> None:
    assert violations_of(**{field: f"a{char}b"}) == {json: "must not contain control characters"}


# --- clientName -----------------------------------------------------------------------


def test_client_name_defaults_to_the_organization_name() -> None:
    assert validate().client_name == ORG_NAME


def test_blank_client_name_defaults_to_the_organization_name() -> None:
    assert validate(client_name="   ").client_name == ORG_NAME


def test_supplied_client_name_is_used_trimmed() -> None:
    assert validate(client_name="  Acme Energy ").client_name == "Acme Energy"


# --- tags -----------------------------------------------------------------------------


def test_up_to_twenty_tags_are_accepted() -> None:
    tags = tuple(f"tag{i}" for i in range(MAX_TAGS))
    assert MAX_TAGS == 20
    assert validate(tags=tags).tags == tags


def test_more_than_twenty_tags_is_a_violation() -> None:
    tags = tuple(f"tag{i}" for i in range(21))
    assert violations_of(tags=tags) == {"tags": "must have at most 20 tags"}


@pytest.mark.parametrize("length", [1, MAX_TAG_LENGTH])
def test_tags_of_one_to_sixty_four_characters_are_accepted(length: int) -> None:
    assert MAX_TAG_LENGTH == 64
    assert validate(tags=("x" * length,)).tags == ("x" * length,)


@pytest.mark.parametrize(
    ("tag", "description"),
    [
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        (" boston", "must not start or end with whitespace"),
        ("boston ", "must not start or end with whitespace"),
        ("\tboston", "must not start or end with whitespace"),
        ("x" * 65, "must be at most 64 characters"),
        ("bad\x00tag", "must not contain control characters"),
    ],
)
def test_bad_tags_are_named_by_index(tag: str, description: str) -> None:
    assert violations_of(tags=("boston", "flatiron", "ct", tag)) == {"tags[3]": description}


def test_inner_whitespace_in_a_tag_is_fine() -> None:
    assert validate(tags=("new york",)).tags == ("new york",)


def test_duplicate_tags_are_removed_keeping_first_order() -> None:
    assert validate(tags=("b", "a", "b", "c", "a")).tags == ("b", "a", "c")


def test_tags_are_case_sensitive_when_deduplicating() -> None:
    assert validate(tags=("Boston", "boston")).tags == ("Boston", "boston")


# --- manufacturerFilters --------------------------------------------------------------


def test_manufacturers_filter_restricts_the_offer() -> None:
    request = validate(manufacturers=("honeywell", "daikin"))
    assert request.manufacturers == ("honeywell", "daikin")
    assert {m.slug for m in request.offered} == {"honeywell", "daikin"}


def test_unknown_manufacturer_slug_is_named_by_index() -> None:
    found = violations_of(manufacturers=("tesla", "enphase", "acme"))
    assert found == {"manufacturerFilters.manufacturers[2]": "is not a manufacturer in the catalog"}


@pytest.mark.parametrize("slug", ["Tesla", "TESLA", " tesla", ""])
def test_manufacturer_slugs_match_exactly(slug: str) -> None:
    assert set(violations_of(manufacturers=(slug,))) == {"manufacturerFilters.manufacturers[0]"}


def test_duplicate_manufacturers_are_removed() -> None:
    request = validate(manufacturers=("tesla", "tesla", "enphase"))
    assert request.manufacturers == ("tesla", "enphase")
    assert [m.slug for m in request.offered] == ["tesla", "enphase"]


def test_device_types_filter_keeps_manufacturers_with_any_of_the_types() -> None:
    request = validate(device_types=("thermostat",))
    assert {m.slug for m in request.offered} == {"honeywell", "daikin"}
    request = validate(device_types=("heat_pump", "vehicle"))
    assert {m.slug for m in request.offered} == {"daikin", "tesla"}


def test_duplicate_device_types_are_removed() -> None:
    assert validate(device_types=("battery", "battery")).device_types == ("battery",)


@pytest.mark.parametrize("device_type", ["toaster", "Battery", "batteries", ""])
def test_unknown_device_type_is_named_by_index(device_type: str) -> None:
    found = violations_of(device_types=("battery", device_type))
    assert list(found) == ["manufacturerFilters.deviceTypes[1]"]
    assert found["manufacturerFilters.deviceTypes[1]"].startswith("must be one of battery,")


def test_both_filters_combine() -> None:
    request = validate(manufacturers=("tesla", "honeywell"), device_types=("thermostat",))
    assert [m.slug for m in request.offered] == ["honeywell"]


def test_filters_that_leave_no_manufacturer_are_a_violation() -> None:
    found = violations_of(manufacturers=("honeywell",), device_types=("battery",))
    assert found == {"manufacturerFilters": "no manufacturer in the catalog matches these filters"}


def test_device_type_that_no_manufacturer_has_is_a_violation() -> None:
    assert set(violations_of(device_types=("water_heater",))) == {"manufacturerFilters"}


# --- customerInfo: contact ------------------------------------------------------------


def test_contact_fields_are_trimmed() -> None:
    request = validate(
        customer_info=CustomerInfoInput(
            first_name=" John ", last_name=" Doe ", email=" a@b.co ", phone=" 555-555-0100 "
        )
    )
    assert request.contact.first_name == "John"
    assert request.contact.last_name == "Doe"
    assert request.contact.email == "a@b.co"
    assert request.contact.phone == "555-555-0100"


@pytest.mark.parametrize(
    "email",
    [
        "example@example.com",
        "john.doe+tag@mail.example.co.uk",
        "A@B.CO",
        "x@localhost.localdomain",
    ],
)
def test_valid_emails(email: str) -> None:
    assert email_problem(email) is None
    assert validate(customer_info=CustomerInfoInput(email=email)).contact.email == email


@pytest.mark.parametrize(
    "email",
    [
        "plainaddress",
        "@example.com",
        "john@",
        "john@example",
        "john@@example.com",
        "john@exa mple.com",
        "jo hn@example.com",
        "john@example..com",
        "john@.example.com",
        "john@example.com.",
        "a" * 65 + "@example.com",
        "a@" + "b" * 250 + ".com",
    ],
)
def test_invalid_emails(email: str) -> None:
    assert email_problem(email) is not None
    found = violations_of(customer_info=CustomerInfoInput(email=email))
    assert found == {"customerInfo.email": "must be an email address like name@example.com"}


@pytest.mark.parametrize(
    "phone",
    ["555-555-0100", "+1 (555) 555-0100", "5555550100", "555.555.0100", "1234567", "+" + "1" * 15],
)
def test_valid_phones(phone: str) -> None:
    assert phone_problem(phone) is None
    assert validate(customer_info=CustomerInfoInput(phone=phone)).contact.phone == phone


@pytest.mark.parametrize(
    "phone", ["123456", "1" * 16, "555-CALL-NOW", "555 555 0100 ext 5", "++15555550100", "phone"]
)
def test_invalid_phones(phone: str) -> None:
    assert phone_problem(phone) is not None
    found = violations_of(customer_info=CustomerInfoInput(phone=phone))
    assert set(found) == {"customerInfo.phone"}


def test_empty_email_and_phone_are_not_checked() -> None:
    request = validate(customer_info=CustomerInfoInput(email="  ", phone=""))
    assert request.contact.email == ""
    assert request.contact.phone == ""


@pytest.mark.parametrize(
    ("field", "json"), [("first_name", "firstName"), ("last_name", "lastName")]
)
def test_names_are_at_most_100_characters(field: str, json: str) -> None:
    validate(customer_info=CustomerInfoInput(**{field: "n" * 100}))
    found = violations_of(customer_info=CustomerInfoInput(**{field: "n" * 101}))
    assert found == {f"customerInfo.{json}": "must be at most 100 characters"}


# --- customerInfo.location ------------------------------------------------------------


def test_full_location_becomes_an_address() -> None:
    request = validate(customer_info=CustomerInfoInput(location=FULL_LOCATION))
    assert request.address == Address(
        street_one="1600 Pennsylvania Avenue NW",
        city="Washington",
        state="DC",
        postal_code="20500",
        country="US",
    )


def test_location_fields_are_trimmed() -> None:
    location = LocationInput(" 1 Main St ", " Apt 2 ", " Austin ", " TX ", " 78701 ", " us ")
    request = validate(customer_info=CustomerInfoInput(location=location))
    assert request.address == Address("1 Main St", "Austin", "TX", "78701", "US", "Apt 2")


def test_street_two_is_optional() -> None:
    request = validate(customer_info=CustomerInfoInput(location=FULL_LOCATION))
    assert request.address is not None
    assert request.address.street_two == ""


@pytest.mark.parametrize(
    ("missing", "json"),
    [
        ("street_one", "streetOne"),
        ("city", "city"),
        ("state", "state"),
        ("postal_code", "postalCode"),
        ("country", "country"),
    ],
)
def test_each_missing_location_field_is_named(missing: str, json: str) -> None:
    location = replace(FULL_LOCATION, **{missing: ""})
    found = violations_of(customer_info=CustomerInfoInput(location=location))
    assert found == {f"customerInfo.location.{json}": "is required when a location is given"}


def test_blank_location_field_counts_as_missing() -> None:
    location = replace(FULL_LOCATION, city="   ")
    assert set(violations_of(customer_info=CustomerInfoInput(location=location))) == {
        "customerInfo.location.city"
    }


def test_partial_location_names_every_missing_field() -> None:
    location = LocationInput(street_one="1 Main St", postal_code="78701")
    found = violations_of(customer_info=CustomerInfoInput(location=location))
    assert set(found) == {
        "customerInfo.location.city",
        "customerInfo.location.state",
        "customerInfo.location.country",
    }


def test_empty_location_names_all_five_required_fields() -> None:
    found = violations_of(customer_info=CustomerInfoInput(location=LocationInput()))
    assert set(found) == {
        "customerInfo.location.streetOne",
        "customerInfo.location.city",
        "customerInfo.location.state",
        "customerInfo.location.postalCode",
        "customerInfo.location.country",
    }


@pytest.mark.parametrize(("country", "stored"), [("US", "US"), ("us", "US"), ("Gb", "GB")])
def test_country_is_iso_alpha2_normalized_to_upper_case(country: str, stored: str) -> None:
    location = replace(FULL_LOCATION, country=country)
    request = validate(customer_info=CustomerInfoInput(location=location))
    assert request.address is not None
    assert request.address.country == stored


@pytest.mark.parametrize("country", ["XX", "xx", "USA", "UK", "U", "840", "ZZ"])
def test_country_that_is_not_iso_alpha2_is_a_violation(country: str) -> None:
    location = replace(FULL_LOCATION, country=country)
    found = violations_of(customer_info=CustomerInfoInput(location=location))
    assert found == {
        "customerInfo.location.country": "must be an ISO 3166-1 alpha-2 country code, e.g. US"
    }


@pytest.mark.parametrize(
    ("field", "json"),
    [("street_one", "streetOne"), ("street_two", "streetTwo"), ("city", "city")],
)
def test_location_fields_are_at_most_200_characters(field: str, json: str) -> None:
    location = replace(FULL_LOCATION, **{field: "s" * 201})
    found = violations_of(customer_info=CustomerInfoInput(location=location))
    assert found == {f"customerInfo.location.{json}": "must be at most 200 characters"}


# --- customer form bypass -------------------------------------------------------------


def test_customer_form_is_bypassed_with_first_last_email_and_location() -> None:
    assert validate(customer_info=FULL_INFO).customer_form_bypassed is True


def test_phone_is_not_needed_to_bypass_the_customer_form() -> None:
    info = replace(FULL_INFO, phone="")
    assert validate(customer_info=info).customer_form_bypassed is True


@pytest.mark.parametrize(
    "change",
    [
        {"first_name": ""},
        {"last_name": ""},
        {"email": ""},
        {"first_name": "   "},
        {"location": None},
    ],
)
def test_customer_form_is_not_bypassed_when_anything_is_missing(change: dict[str, object]) -> None:
    info = replace(FULL_INFO, **change)  # type: ignore[arg-type]
    assert validate(customer_info=info).customer_form_bypassed is False


def test_customer_form_is_not_bypassed_without_customer_info() -> None:
    assert validate().customer_form_bypassed is False


def test_invalid_location_never_yields_a_bypass() -> None:
    info = replace(FULL_INFO, location=replace(FULL_LOCATION, country="XX"))
    assert set(violations_of(customer_info=info)) == {"customerInfo.location.country"}


# --- headless -------------------------------------------------------------------------


def test_headless_with_customer_id_is_allowed() -> None:
    request = headless(customer_id="cust_1")
    assert request.mode is Mode.HEADLESS
    assert request.headless_manufacturer.slug == "tesla"


def test_headless_with_customer_id_and_site_id_is_allowed() -> None:
    request = headless(customer_id="cust_1", site_id="site_1")
    assert (request.customer_id, request.site_id) == ("cust_1", "site_1")


def test_headless_with_full_customer_info_is_allowed() -> None:
    request = headless(customer_info=replace(FULL_INFO, phone=""))
    assert request.address is not None
    assert request.customer_form_bypassed is True


@pytest.mark.parametrize("slug", ["tesla", "enphase", "honeywell", "daikin"])
def test_headless_accepts_each_oauth_manufacturer(slug: str) -> None:
    assert headless(manufacturers=(slug,), customer_id="c").headless_manufacturer.slug == slug


def test_headless_refuses_a_credentials_manufacturer() -> None:
    found = headless_violations(manufacturers=("generac",), customer_id="cust_1")
    assert set(found) == {"manufacturerFilters.manufacturers[0]"}
    assert "OAuth" in found["manufacturerFilters.manufacturers[0]"]


@pytest.mark.parametrize("manufacturers", [(), ("tesla", "enphase")])
def test_headless_requires_exactly_one_manufacturer(manufacturers: tuple[str, ...]) -> None:
    found = headless_violations(manufacturers=manufacturers, customer_id="cust_1")
    assert found == {
        "manufacturerFilters.manufacturers": "headless mode requires exactly one manufacturer"
    }


def test_headless_with_unknown_manufacturer_reports_the_slug() -> None:
    found = headless_violations(manufacturers=("acme",), customer_id="cust_1")
    assert set(found) == {"manufacturerFilters.manufacturers[0]"}


def test_headless_site_id_alone_is_refused() -> None:
    found = headless_violations(site_id="site_1")
    assert found["siteId"] == "requires customerId in headless mode"
    assert set(found) == {"siteId", "customerId"}


def test_headless_site_id_with_full_customer_info_is_refused() -> None:
    found = headless_violations(site_id="site_1", customer_info=FULL_INFO)
    assert set(found) == {"siteId"}


def test_headless_with_nothing_is_refused() -> None:
    found = headless_violations()
    assert set(found) == {"customerId"}
    assert "customerInfo" in found["customerId"]


def test_headless_customer_id_with_customer_info_is_refused() -> None:
    found = headless_violations(customer_id="cust_1", customer_info=FULL_INFO)
    assert set(found) == {"customerInfo"}


def test_headless_customer_id_site_id_with_customer_info_is_refused() -> None:
    found = headless_violations(customer_id="c", site_id="s", customer_info=FULL_INFO)
    assert set(found) == {"customerInfo"}


@pytest.mark.parametrize(
    ("change", "fields"),
    [
        ({"first_name": ""}, {"customerInfo.firstName"}),
        ({"last_name": " "}, {"customerInfo.lastName"}),
        ({"email": ""}, {"customerInfo.email"}),
        ({"location": None}, {"customerInfo.location"}),
        (
            {"location": replace(FULL_LOCATION, postal_code="", state="")},
            {"customerInfo.location.postalCode", "customerInfo.location.state"},
        ),
        (
            {"first_name": "", "last_name": "", "email": "", "location": None},
            {
                "customerInfo.firstName",
                "customerInfo.lastName",
                "customerInfo.email",
                "customerInfo.location",
            },
        ),
    ],
)
def test_headless_partial_customer_info_is_refused(
    change: dict[str, object], fields: set[str]
) -> None:
    info = replace(FULL_INFO, **change)  # type: ignore[arg-type]
    assert set(headless_violations(customer_info=info)) == fields


def test_headless_empty_customer_info_names_each_required_field() -> None:
    found = headless_violations(customer_info=CustomerInfoInput())
    assert set(found) == {
        "customerInfo.firstName",
        "customerInfo.lastName",
        "customerInfo.email",
        "customerInfo.location",
    }


def test_headless_problems_are_reported_together() -> None:
    found = headless_violations(manufacturers=("generac",), site_id="site_1")
    assert set(found) == {"manufacturerFilters.manufacturers[0]", "siteId", "customerId"}


@pytest.mark.parametrize(
    "fields",
    [
        {"site_id": "site_1"},
        {},
        {"customer_id": "c", "customer_info": FULL_INFO},
        {"manufacturers": ("generac",)},
        {"manufacturers": ("tesla", "enphase")},
        {"customer_info": CustomerInfoInput(first_name="Jane")},
    ],
)
def test_standard_mode_does_not_apply_the_headless_rules(fields: dict[str, object]) -> None:
    assert validate(**fields).mode is Mode.STANDARD
