"""Postal addresses: ISO 3166-1 alpha-2 codes and the normalized key used to match sites."""

from __future__ import annotations

import pytest

from texture_connect.domain.addresses import (
    ISO_3166_ALPHA2,
    REQUIRED_LOCATION_FIELDS,
    Address,
    normalized_address_key,
)

BASE = Address("1600 Pennsylvania Avenue NW", "Washington", "DC", "20500", "US")


def key(**fields: str) -> str:
    values = {
        "street_one": BASE.street_one,
        "city": BASE.city,
        "state": BASE.state,
        "postal_code": BASE.postal_code,
        "country": BASE.country,
    }
    values.update(fields)
    return normalized_address_key(Address(**values))


def test_iso_table_has_the_249_assigned_codes() -> None:
    assert len(ISO_3166_ALPHA2) == 249
    assert all(len(code) == 2 and code.isupper() for code in ISO_3166_ALPHA2)


@pytest.mark.parametrize("code", ["US", "GB", "CA", "DE", "FR", "JP", "AU", "MX", "AX", "ZW"])
def test_iso_table_contains_assigned_codes(code: str) -> None:
    assert code in ISO_3166_ALPHA2


@pytest.mark.parametrize("code", ["XX", "UK", "EU", "ZZ", "us", "USA", ""])
def test_iso_table_excludes_other_strings(code: str) -> None:
    assert code not in ISO_3166_ALPHA2


def test_required_location_fields_in_form_order() -> None:
    assert REQUIRED_LOCATION_FIELDS == ("streetOne", "city", "state", "postalCode", "country")


@pytest.mark.parametrize(
    "street",
    [
        "1600 Pennsylvania Avenue NW",
        "1600 pennsylvania ave. nw",
        "1600 PENNSYLVANIA AVE NW",
        "1600  Pennsylvania   Ave,  NW.",
        "1600 Pennsylvania Ave - NW",
        " 1600 Pennsylvania Avenue Northwest ",
    ],
)
def test_street_spellings_share_a_key(street: str) -> None:
    assert key(street_one=street) == key()


@pytest.mark.parametrize(
    ("long", "short"),
    [
        ("123 Main Street", "123 main st."),
        ("9 Sunset Boulevard", "9 sunset blvd"),
        ("5 Ocean Drive", "5 ocean dr"),
        ("7 Elm Road", "7 Elm Rd."),
        ("1 North Main Street", "1 N Main St"),
        ("2 South West Lane", "2 S W Ln"),
        ("3 Park Place", "3 park pl"),
    ],
)
def test_common_street_words_and_their_abbreviations_match(long: str, short: str) -> None:
    assert key(street_one=long) == key(street_one=short)


def test_street_two_is_normalized_too() -> None:
    assert key(street_two="Suite 100") == key(street_two="ste. 100")
    assert key(street_two="Apartment 4B") == key(street_two="apt 4b")


@pytest.mark.parametrize("postal_code", ["20500", " 20500 ", "205 00"])
def test_postal_code_spacing_does_not_matter(postal_code: str) -> None:
    assert key(postal_code=postal_code) == key()


def test_postal_code_case_and_spacing_do_not_matter() -> None:
    uk = {"country": "GB", "city": "London", "state": "London"}
    assert key(postal_code="SW1A 1AA", **uk) == key(postal_code="sw1a1aa", **uk)
    assert key(postal_code="K1A 0B1", country="CA") == key(postal_code="k1a-0b1", country="CA")


@pytest.mark.parametrize("country", ["us", " US ", "Us"])
def test_country_case_does_not_matter(country: str) -> None:
    assert key(country=country) == key()


@pytest.mark.parametrize(("city", "state"), [("WASHINGTON", "dc"), ("washington, ", " DC.")])
def test_city_and_state_case_and_punctuation_do_not_matter(city: str, state: str) -> None:
    assert key(city=city, state=state) == key()


@pytest.mark.parametrize(
    "change",
    [{"street_one": "1600 Pennsylvania Ave. N.W."}, {"state": "D.C."}],
)
def test_punctuation_inside_a_word_does_not_matter(change: dict[str, str]) -> None:
    assert key(**change) == key()


@pytest.mark.parametrize(
    "change",
    [
        {"street_one": "1601 Pennsylvania Avenue NW"},
        {"street_one": "1600 Pennsylvania Avenue SE"},
        {"street_two": "Suite 1"},
        {"city": "Baltimore"},
        {"state": "MD"},
        {"postal_code": "20501"},
        {"country": "CA"},
    ],
)
def test_different_addresses_have_different_keys(change: dict[str, str]) -> None:
    assert key(**change) != key()


def test_fields_cannot_bleed_into_each_other() -> None:
    a = normalized_address_key(Address("1 Main", "St Austin", "TX", "78701", "US"))
    b = normalized_address_key(Address("1 Main St", "Austin", "TX", "78701", "US"))
    assert a != b
