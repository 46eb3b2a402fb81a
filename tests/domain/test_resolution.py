"""Customer and site resolution (seed: "customerId", "siteId", "Automatic Data Resolution",
"Headless Connect / Prerequisites")."""

from __future__ import annotations

import re
import uuid
from dataclasses import replace

import pytest

from texture_connect.domain.addresses import Address, normalized_address_key
from texture_connect.domain.catalog import AuthKind, Manufacturer
from texture_connect.domain.connect_request import ConnectionRequest, Contact, Mode
from texture_connect.domain.errors import Code, ServiceError
from texture_connect.domain.records import Customer, Site
from texture_connect.domain.resolution import (
    CustomerChoice,
    SiteChoice,
    choose_customer,
    choose_site,
)

ORG = "org_1"
GENERATED = re.compile(
    r"^texture-generated:[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
)
TESLA = Manufacturer("tesla", "Tesla", ("battery",), AuthKind.OAUTH2, "sandbox")

WHITE_HOUSE = Address("1600 Pennsylvania Avenue NW", "Washington", "DC", "20500", "US")
WHITE_HOUSE_SPELT_OTHERWISE = Address(
    "1600 pennsylvania ave. nw", "washington", "dc", "20500", "us"
)
AUSTIN = Address("123 Main St", "Austin", "TX", "78701", "US")


def request(
    *,
    customer_id: str = "",
    site_id: str = "",
    reference_id: str = "",
    mode: Mode = Mode.STANDARD,
    contact: Contact = Contact(),  # noqa: B008 (frozen dataclass)
    address: Address | None = None,
) -> ConnectionRequest:
    return ConnectionRequest(
        redirect_url="https://mycompany.com/app",
        reference_id=reference_id,
        tags=(),
        client_name="Energy Coffee",
        customer_id=customer_id,
        site_id=site_id,
        mode=mode,
        manufacturers=("tesla",),
        device_types=(),
        contact=contact,
        address=address,
        customer_form_bypassed=False,
        offered=(TESLA,),
        request_id="",
    )


def customer(customer_id: str, reference_id: str = "", **contact: str) -> Customer:
    return Customer(customer_id, ORG, reference_id, **contact)


def site(site_id: str, customer_id: str, address: Address = AUSTIN) -> Site:
    return Site(site_id, ORG, customer_id, address, normalized_address_key(address))


def pick_customer(
    req: ConnectionRequest,
    *,
    by_id: Customer | None = None,
    site_owner: Customer | None = None,
    by_email: Customer | None = None,
    by_reference: Customer | None = None,
) -> CustomerChoice:
    return choose_customer(
        req, by_id=by_id, site_owner=site_owner, by_email=by_email, by_reference=by_reference
    )


def pick_site(
    req: ConnectionRequest,
    *,
    customer: Customer | None = None,
    explicit: Site | None = None,
    customer_sites: tuple[Site, ...] = (),
) -> SiteChoice:
    return choose_site(
        req, customer=customer, explicit=explicit, customer_sites=list(customer_sites)
    )


BY_ID = customer("c_id", "ref-id")
OWNER = customer("c_owner", "ref-owner")
BY_EMAIL = customer("c_email", "ref-email", email="jane@example.com")
BY_REFERENCE = customer("c_ref", "ref-ref")


# --- customer priority ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("candidates", "winner"),
    [
        (
            {
                "by_id": BY_ID,
                "site_owner": OWNER,
                "by_email": BY_EMAIL,
                "by_reference": BY_REFERENCE,
            },
            BY_ID,
        ),
        ({"site_owner": OWNER, "by_email": BY_EMAIL, "by_reference": BY_REFERENCE}, OWNER),
        ({"by_email": BY_EMAIL, "by_reference": BY_REFERENCE}, BY_EMAIL),
        ({"by_reference": BY_REFERENCE}, BY_REFERENCE),
    ],
)
def test_customer_priority_is_id_then_site_owner_then_email_then_reference(
    candidates: dict[str, Customer], winner: Customer
) -> None:
    customer_id = "c_id" if "by_id" in candidates else ""
    choice = pick_customer(request(customer_id=customer_id), **candidates)
    assert choice.existing is not None
    assert choice.existing.id == winner.id


def test_no_candidate_means_a_new_customer() -> None:
    contact = Contact("Jane", "Smith", "jane@example.com", "555-555-0100")
    choice = pick_customer(request(contact=contact, reference_id="user-42"))
    assert choice == CustomerChoice(None, False, contact, "user-42")


def test_unknown_customer_id_is_not_found() -> None:
    with pytest.raises(ServiceError) as caught:
        pick_customer(request(customer_id="c_missing"), by_email=BY_EMAIL)
    assert caught.value.reason.name == "CUSTOMER_NOT_FOUND"
    assert caught.value.code is Code.NOT_FOUND


def test_customer_id_keeps_the_stored_contact_over_customer_info() -> None:
    stored = customer("c_id", "ref-id", first_name="John", email="john@example.com")
    contact = Contact("Jane", "Smith", "jane@example.com", "555-555-0100")
    choice = pick_customer(request(customer_id="c_id", contact=contact), by_id=stored)
    assert choice.existing == stored
    assert choice.changed is False
    assert choice.contact == Contact()


# --- contact merge --------------------------------------------------------------------


def test_supplied_contact_fields_overwrite_and_empty_ones_keep() -> None:
    stored = customer(
        "c_email", "ref", first_name="Jon", last_name="Doe", email="john@example.com", phone="1"
    )
    supplied = Contact(first_name="John", last_name="", email="", phone="555-555-0100")
    choice = pick_customer(request(contact=supplied), by_email=stored)
    assert choice.existing == customer(
        "c_email",
        "ref",
        first_name="John",
        last_name="Doe",
        email="john@example.com",
        phone="555-555-0100",
    )
    assert choice.changed is True
    assert choice.contact == supplied


def test_merge_that_changes_nothing_is_not_written_back() -> None:
    stored = customer("c_email", "ref", first_name="John", email="john@example.com")
    choice = pick_customer(
        request(contact=Contact(first_name="John", email="john@example.com")), by_email=stored
    )
    assert choice.existing == stored
    assert choice.changed is False


def test_empty_contact_keeps_every_stored_field() -> None:
    stored = customer("c_ref", "ref", first_name="A", last_name="B", email="a@b.co", phone="123")
    choice = pick_customer(request(), by_reference=stored)
    assert choice.existing == stored
    assert choice.changed is False


def test_contact_is_merged_into_the_site_owner() -> None:
    choice = pick_customer(request(contact=Contact(phone="555-555-0100")), site_owner=OWNER)
    assert choice.existing == replace(OWNER, phone="555-555-0100")
    assert choice.changed is True


# --- referenceId ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "candidates",
    [
        {"by_id": BY_ID},
        {"site_owner": OWNER},
        {"by_email": BY_EMAIL},
        {"by_reference": BY_REFERENCE},
        {},
    ],
)
def test_supplied_reference_id_is_carried(candidates: dict[str, Customer]) -> None:
    customer_id = "c_id" if "by_id" in candidates else ""
    choice = pick_customer(request(customer_id=customer_id, reference_id="user-42"), **candidates)
    assert choice.reference_id == "user-42"


@pytest.mark.parametrize(
    ("candidates", "reference"),
    [
        ({"by_id": BY_ID}, "ref-id"),
        ({"site_owner": OWNER}, "ref-owner"),
        ({"by_email": BY_EMAIL}, "ref-email"),
    ],
)
def test_existing_customer_reference_id_is_reused(
    candidates: dict[str, Customer], reference: str
) -> None:
    customer_id = "c_id" if "by_id" in candidates else ""
    assert pick_customer(request(customer_id=customer_id), **candidates).reference_id == reference


def test_new_customer_without_reference_id_gets_a_generated_one() -> None:
    reference = pick_customer(request()).reference_id
    assert GENERATED.match(reference), reference
    assert uuid.UUID(reference.removeprefix("texture-generated:")).version == 7


def test_generated_reference_ids_differ() -> None:
    assert pick_customer(request()).reference_id != pick_customer(request()).reference_id


@pytest.mark.parametrize("kind", ["by_id", "by_email"])
def test_existing_customer_without_reference_gets_a_generated_one(kind: str) -> None:
    bare = customer("c_id", "")
    customer_id = "c_id" if kind == "by_id" else ""
    choice = pick_customer(request(customer_id=customer_id), **{kind: bare})
    assert GENERATED.match(choice.reference_id)


# --- site priority --------------------------------------------------------------------


def test_site_id_takes_priority_over_everything() -> None:
    explicit = site("s_explicit", "c_id")
    first = site("s_first", "c_id", WHITE_HOUSE)
    choice = pick_site(
        request(customer_id="c_id", site_id="s_explicit", address=WHITE_HOUSE),
        customer=BY_ID,
        explicit=explicit,
        customer_sites=(first, explicit),
    )
    assert choice == SiteChoice(explicit, None)


def test_site_id_alone_resolves_to_that_site_of_its_owner() -> None:
    explicit = site("s_1", "c_owner")
    choice = pick_site(request(site_id="s_1"), customer=OWNER, explicit=explicit)
    assert choice == SiteChoice(explicit, None)


def test_unknown_site_id_is_not_found() -> None:
    with pytest.raises(ServiceError) as caught:
        pick_site(request(site_id="s_missing"), customer=BY_ID)
    assert caught.value.reason.name == "SITE_NOT_FOUND"
    assert caught.value.code is Code.NOT_FOUND


@pytest.mark.parametrize("mode", [Mode.STANDARD, Mode.HEADLESS])
def test_site_of_another_customer_is_an_invalid_site_id(mode: Mode) -> None:
    foreign = site("s_foreign", "c_other")
    with pytest.raises(ServiceError) as caught:
        pick_site(
            request(customer_id="c_id", site_id="s_foreign", mode=mode),
            customer=BY_ID,
            explicit=foreign,
        )
    error = caught.value
    assert error.code is Code.INVALID_ARGUMENT
    assert error.reason.name == "INVALID_REQUEST"
    assert [v.field for v in error.violations] == ["siteId"]


@pytest.mark.parametrize("mode", [Mode.STANDARD, Mode.HEADLESS])
def test_customer_id_uses_the_customers_first_site(mode: Mode) -> None:
    first, second = site("s_1", "c_id"), site("s_2", "c_id", WHITE_HOUSE)
    choice = pick_site(
        request(customer_id="c_id", mode=mode), customer=BY_ID, customer_sites=(first, second)
    )
    assert choice == SiteChoice(first, None)


def test_customer_id_first_site_wins_over_location_in_standard_mode() -> None:
    first, second = site("s_1", "c_id"), site("s_2", "c_id", WHITE_HOUSE)
    choice = pick_site(
        request(customer_id="c_id", address=WHITE_HOUSE),
        customer=BY_ID,
        customer_sites=(first, second),
    )
    assert choice == SiteChoice(first, None)


def test_headless_customer_id_without_sites_fails_precondition() -> None:
    with pytest.raises(ServiceError) as caught:
        pick_site(request(customer_id="c_id", mode=Mode.HEADLESS), customer=BY_ID)
    assert caught.value.reason.name == "CUSTOMER_HAS_NO_SITE"
    assert caught.value.code is Code.FAILED_PRECONDITION


def test_standard_customer_id_without_sites_leaves_the_site_to_the_form() -> None:
    choice = pick_site(request(customer_id="c_id"), customer=BY_ID)
    assert choice == SiteChoice(None, None)


def test_standard_customer_id_without_sites_creates_one_at_the_location() -> None:
    choice = pick_site(request(customer_id="c_id", address=AUSTIN), customer=BY_ID)
    assert choice == SiteChoice(None, AUSTIN)


def test_location_matches_an_existing_site_by_normalized_address() -> None:
    other, white_house = site("s_1", "c_email"), site("s_2", "c_email", WHITE_HOUSE)
    choice = pick_site(
        request(address=WHITE_HOUSE_SPELT_OTHERWISE),
        customer=BY_EMAIL,
        customer_sites=(other, white_house),
    )
    assert choice == SiteChoice(white_house, None)


@pytest.mark.parametrize("mode", [Mode.STANDARD, Mode.HEADLESS])
def test_location_without_a_matching_site_creates_a_new_site(mode: Mode) -> None:
    choice = pick_site(
        request(address=WHITE_HOUSE, mode=mode),
        customer=BY_EMAIL,
        customer_sites=(site("s_1", "c_email"),),
    )
    assert choice == SiteChoice(None, WHITE_HOUSE)


def test_location_for_a_new_customer_creates_a_new_site() -> None:
    assert pick_site(request(address=AUSTIN)) == SiteChoice(None, AUSTIN)


def test_without_location_the_resolved_customers_first_site_is_used() -> None:
    first, second = site("s_1", "c_email"), site("s_2", "c_email", WHITE_HOUSE)
    choice = pick_site(request(), customer=BY_EMAIL, customer_sites=(first, second))
    assert choice == SiteChoice(first, None)


def test_nothing_to_go_on_means_no_site_yet() -> None:
    assert pick_site(request()) == SiteChoice(None, None)
