"""Customer and site resolution (seed: "customerId", "siteId", "Automatic Data Resolution",
"Headless Connect / Prerequisites").

The storage adapter looks up the candidates; these functions decide. Customer priority:
``customerId`` > the owner of ``siteId`` > an existing customer with the same email
(case-insensitive) > one with the same ``referenceId`` > a new customer. Site priority in
standard mode: ``siteId`` > the first site of a customer named by ``customerId`` > a site
of the resolved customer at the same normalized address as ``customerInfo.location`` >
a new site at that location > the resolved customer's first site > none yet (the hosted
form collects it). Headless mode allows only the three documented combinations, which
``connect_request`` has already enforced.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from texture_connect.domain.addresses import Address, normalized_address_key
from texture_connect.domain.connect_request import ConnectionRequest, Contact, Mode
from texture_connect.domain.errors import FieldViolation, fail, invalid
from texture_connect.domain.ids import generated_reference_id
from texture_connect.domain.records import Customer, Site


@dataclass(frozen=True)
class CustomerChoice:
    # The customer to reuse, already carrying any contact updates; None: create one.
    existing: Customer | None
    # True when ``existing`` differs from what is stored and must be written back.
    changed: bool
    # The contact details a new customer starts with.
    contact: Contact
    # The referenceId the session (and a new customer) carries.
    reference_id: str


@dataclass(frozen=True)
class SiteChoice:
    existing: Site | None
    # An address to create a new site at; None with ``existing`` None: no site yet.
    create_at: Address | None


def _merge_contact(customer: Customer, contact: Contact) -> Customer:
    """Fields the caller supplied overwrite the stored ones; empty fields keep them."""
    return replace(
        customer,
        first_name=contact.first_name or customer.first_name,
        last_name=contact.last_name or customer.last_name,
        email=contact.email or customer.email,
        phone=contact.phone or customer.phone,
    )


def choose_customer(
    request: ConnectionRequest,
    *,
    by_id: Customer | None,
    site_owner: Customer | None,
    by_email: Customer | None,
    by_reference: Customer | None,
) -> CustomerChoice:
    """Pick the session's customer. ``by_id`` must already be checked to exist when
    ``request.customer_id`` is set (a foreign or unknown id is NOT_FOUND)."""
    if request.customer_id:
        if by_id is None:
            raise fail("CUSTOMER_NOT_FOUND")
        # customerId takes priority over customerInfo: the stored contact is kept as is.
        reference = request.reference_id or by_id.reference_id or generated_reference_id()
        return CustomerChoice(by_id, False, Contact(), reference)
    found = site_owner or by_email or by_reference
    if found is not None:
        merged = _merge_contact(found, request.contact)
        reference = request.reference_id or found.reference_id or generated_reference_id()
        return CustomerChoice(merged, merged != found, request.contact, reference)
    reference = request.reference_id or generated_reference_id()
    return CustomerChoice(None, False, request.contact, reference)


def choose_site(
    request: ConnectionRequest,
    *,
    customer: Customer | None,
    explicit: Site | None,
    customer_sites: list[Site],
) -> SiteChoice:
    """Pick the session's site. ``customer_sites`` are the resolved customer's sites in
    the order they were created (the first is "the first associated site")."""
    if request.site_id:
        if explicit is None:
            raise fail("SITE_NOT_FOUND")
        if customer is not None and explicit.customer_id != customer.id:
            raise invalid([FieldViolation("siteId", "belongs to a different customer")])
        return SiteChoice(explicit, None)
    if request.customer_id:
        if customer_sites:
            return SiteChoice(customer_sites[0], None)
        if request.mode is Mode.HEADLESS:
            raise fail("CUSTOMER_HAS_NO_SITE")
    if request.address is not None:
        key = normalized_address_key(request.address)
        for site in customer_sites:
            if site.address_key == key:
                return SiteChoice(site, None)
        return SiteChoice(None, request.address)
    if customer_sites:
        return SiteChoice(customer_sites[0], None)
    return SiteChoice(None, None)
