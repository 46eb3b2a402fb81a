"""CreateConnection: the request as submitted, and the rules that validate it.

Every rule of the seed's "Configuration Fields", "manufacturerFilters", "customerInfo" and
"Headless Connect" sections that can be checked without storage lives here. All
violations are collected and reported together, each under its JSON field path.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from texture_connect.domain.addresses import ISO_3166_ALPHA2, REQUIRED_LOCATION_FIELDS, Address
from texture_connect.domain.catalog import DEVICE_TYPES, AuthKind, Catalog, Manufacturer
from texture_connect.domain.errors import Violations
from texture_connect.domain.redirect_urls import redirect_url_problem

MAX_TAGS = 20
MAX_TAG_LENGTH = 64
MAX_REFERENCE_ID_LENGTH = 255
MAX_CLIENT_NAME_LENGTH = 100
MAX_NAME_LENGTH = 100
MAX_ADDRESS_FIELD_LENGTH = 200
MAX_ID_LENGTH = 64
MAX_REQUEST_ID_LENGTH = 128

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+$")
_PHONE_CHARS = re.compile(r"^\+?[0-9 ()\-.]+$")


class Mode(enum.Enum):
    STANDARD = "standard"
    HEADLESS = "headless"


@dataclass(frozen=True)
class LocationInput:
    street_one: str = ""
    street_two: str = ""
    city: str = ""
    state: str = ""
    postal_code: str = ""
    country: str = ""

    def by_json_name(self) -> dict[str, str]:
        return {
            "streetOne": self.street_one,
            "streetTwo": self.street_two,
            "city": self.city,
            "state": self.state,
            "postalCode": self.postal_code,
            "country": self.country,
        }


@dataclass(frozen=True)
class CustomerInfoInput:
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    phone: str = ""
    location: LocationInput | None = None


@dataclass(frozen=True)
class CreateConnectionInput:
    """The request as the caller sent it, before any rule is applied."""

    redirect_url: str
    reference_id: str = ""
    tags: tuple[str, ...] = ()
    client_name: str = ""
    customer_id: str = ""
    site_id: str = ""
    mode: Mode = Mode.STANDARD
    manufacturers: tuple[str, ...] = ()
    device_types: tuple[str, ...] = ()
    customer_info: CustomerInfoInput | None = None
    request_id: str = ""


@dataclass(frozen=True)
class Contact:
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    phone: str = ""


@dataclass(frozen=True)
class ConnectionRequest:
    """A CreateConnection request that passed every rule that needs no storage."""

    redirect_url: str
    reference_id: str
    tags: tuple[str, ...]
    client_name: str
    customer_id: str
    site_id: str
    mode: Mode
    manufacturers: tuple[str, ...]
    device_types: tuple[str, ...]
    contact: Contact
    address: Address | None
    # First name, last name, email and location all valid: the hosted form is skipped.
    customer_form_bypassed: bool
    # The manufacturers the session offers after filtering (never empty).
    offered: tuple[Manufacturer, ...]
    request_id: str

    @property
    def headless_manufacturer(self) -> Manufacturer:
        return self.offered[0]


def customer_info_document(
    contact: Contact, address: Address | None, *, omit_empty: bool
) -> dict[str, Any]:
    """customerInfo as its JSON document (the seed's names), as sessions keep it for the
    hosted customer form."""
    document: dict[str, Any] = {
        "firstName": contact.first_name,
        "lastName": contact.last_name,
        "email": contact.email,
        "phone": contact.phone,
    }
    if omit_empty:
        document = {k: v for k, v in document.items() if v}
    if address is not None:
        document["location"] = {
            "streetOne": address.street_one,
            "streetTwo": address.street_two,
            "city": address.city,
            "state": address.state,
            "postalCode": address.postal_code,
            "country": address.country,
        }
    return document


def _bad_text(value: str, max_length: int) -> str | None:
    if len(value) > max_length:
        return f"must be at most {max_length} characters"
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        return "must not contain control characters"
    return None


def email_problem(email: str) -> str | None:
    if len(email) > 254 or not _EMAIL.match(email):
        return "must be an email address like name@example.com"
    return None


def phone_problem(phone: str) -> str | None:
    digits = sum(ch.isdigit() for ch in phone)
    if not _PHONE_CHARS.match(phone) or not 7 <= digits <= 15:
        return "must be a phone number of 7 to 15 digits, e.g. 555-555-0100"
    return None


def _check_text(violations: Violations, path: str, value: str, max_length: int) -> None:
    problem = _bad_text(value, max_length)
    if problem:
        violations.add(path, problem)


def _unique(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def validate_location(
    violations: Violations, location: LocationInput, prefix: str
) -> Address | None:
    """The location rule: all-or-nothing, each missing field named; country ISO 3166-1."""
    fields = location.by_json_name()
    for name in REQUIRED_LOCATION_FIELDS:
        if not fields[name].strip():
            violations.add(f"{prefix}.{name}", "is required when a location is given")
    for name, value in fields.items():
        _check_text(violations, f"{prefix}.{name}", value, MAX_ADDRESS_FIELD_LENGTH)
    country = location.country.strip().upper()
    if country and country not in ISO_3166_ALPHA2:
        violations.add(f"{prefix}.country", "must be an ISO 3166-1 alpha-2 country code, e.g. US")
    if violations:
        return None
    return Address(
        street_one=location.street_one.strip(),
        street_two=location.street_two.strip(),
        city=location.city.strip(),
        state=location.state.strip(),
        postal_code=location.postal_code.strip(),
        country=country,
    )


def validate_contact(violations: Violations, info: CustomerInfoInput, prefix: str) -> Contact:
    _check_text(violations, f"{prefix}.firstName", info.first_name, MAX_NAME_LENGTH)
    _check_text(violations, f"{prefix}.lastName", info.last_name, MAX_NAME_LENGTH)
    email = info.email.strip()
    if email:
        problem = email_problem(email)
        if problem:
            violations.add(f"{prefix}.email", problem)
    phone = info.phone.strip()
    if phone:
        problem = phone_problem(phone)
        if problem:
            violations.add(f"{prefix}.phone", problem)
    return Contact(info.first_name.strip(), info.last_name.strip(), email, phone)


def _check_headless(
    violations: Violations, request: CreateConnectionInput, offered: list[Manufacturer]
) -> None:
    """Headless Connect prerequisites (seed: "Prerequisites")."""
    if len(request.manufacturers) != 1:
        violations.add(
            "manufacturerFilters.manufacturers",
            "headless mode requires exactly one manufacturer",
        )
    elif offered and offered[0].auth_kind is not AuthKind.OAUTH2:
        violations.add(
            "manufacturerFilters.manufacturers[0]",
            "headless mode requires a manufacturer that uses OAuth; "
            f"{offered[0].slug} uses credential sign-in",
        )
    info = request.customer_info
    if request.customer_id:
        # customerId, or customerId + siteId.
        if info is not None:
            violations.add(
                "customerInfo",
                "must not be combined with customerId in headless mode; "
                "send customerId (and siteId), or full customerInfo",
            )
        return
    if request.site_id:
        violations.add("siteId", "requires customerId in headless mode")
    if info is None:
        violations.add(
            "customerId",
            "headless mode requires customerId, customerId and siteId, "
            "or full customerInfo with a location",
        )
        return
    missing = [
        name
        for name, value in (
            ("firstName", info.first_name),
            ("lastName", info.last_name),
            ("email", info.email),
        )
        if not value.strip()
    ]
    for name in missing:
        violations.add(f"customerInfo.{name}", "is required in headless mode without customerId")
    if info.location is None:
        violations.add("customerInfo.location", "is required in headless mode without customerId")


def validate_create_connection(
    request: CreateConnectionInput, catalog: Catalog, default_client_name: str
) -> ConnectionRequest:
    """Apply every storage-free rule; raise ``ServiceError`` listing each violation."""
    violations = Violations()

    problem = redirect_url_problem(request.redirect_url)
    if problem:
        violations.add("redirectUrl", problem)
    _check_text(violations, "referenceId", request.reference_id, MAX_REFERENCE_ID_LENGTH)
    _check_text(violations, "clientName", request.client_name, MAX_CLIENT_NAME_LENGTH)
    _check_text(violations, "customerId", request.customer_id, MAX_ID_LENGTH)
    _check_text(violations, "siteId", request.site_id, MAX_ID_LENGTH)
    _check_text(violations, "requestId", request.request_id, MAX_REQUEST_ID_LENGTH)

    if len(request.tags) > MAX_TAGS:
        violations.add("tags", f"must have at most {MAX_TAGS} tags")
    for index, tag in enumerate(request.tags):
        if not tag.strip():
            violations.add(f"tags[{index}]", "must not be empty")
        elif tag != tag.strip():
            violations.add(f"tags[{index}]", "must not start or end with whitespace")
        else:
            _check_text(violations, f"tags[{index}]", tag, MAX_TAG_LENGTH)

    for index, slug in enumerate(request.manufacturers):
        if catalog.get(slug) is None:
            violations.add(
                f"manufacturerFilters.manufacturers[{index}]",
                "is not a manufacturer in the catalog",
            )
    for index, device_type in enumerate(request.device_types):
        if device_type not in DEVICE_TYPES:
            violations.add(
                f"manufacturerFilters.deviceTypes[{index}]",
                "must be one of " + ", ".join(DEVICE_TYPES),
            )
    manufacturers = _unique(request.manufacturers)
    device_types = _unique(request.device_types)
    offered: list[Manufacturer] = []
    if not violations:
        offered = catalog.available(manufacturers, device_types)
        if not offered:
            violations.add(
                "manufacturerFilters",
                "no manufacturer in the catalog matches these filters",
            )

    contact = Contact()
    address: Address | None = None
    info = request.customer_info
    if info is not None:
        contact = validate_contact(violations, info, "customerInfo")
        if info.location is not None:
            location_violations = Violations()
            address = validate_location(location_violations, info.location, "customerInfo.location")
            violations.items.extend(location_violations.items)

    if request.mode is Mode.HEADLESS:
        _check_headless(violations, request, offered)

    violations.raise_if_any()
    bypassed = bool(contact.first_name and contact.last_name and contact.email and address)
    return ConnectionRequest(
        redirect_url=request.redirect_url,
        reference_id=request.reference_id,
        tags=_unique(request.tags),
        client_name=request.client_name.strip() or default_client_name,
        customer_id=request.customer_id,
        site_id=request.site_id,
        mode=request.mode,
        manufacturers=manufacturers,
        device_types=device_types,
        contact=contact,
        address=address,
        customer_form_bypassed=bypassed,
        offered=tuple(offered),
        request_id=request.request_id,
    )
