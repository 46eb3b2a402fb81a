"""The manufacturer catalog as data and the manufacturerFilters rule."""

from __future__ import annotations

import pytest

from texture_connect.domain.catalog import DEVICE_TYPES, AuthKind, Catalog, Manufacturer


def make(slug: str, *device_types: str) -> Manufacturer:
    return Manufacturer(slug, slug.title(), device_types, AuthKind.CREDENTIALS, "sandbox")


CATALOG = Catalog.of(
    [
        make("tesla", "battery", "vehicle"),
        make("honeywell", "thermostat"),
        make("daikin", "thermostat", "heat_pump"),
    ]
)


def slugs(found: list[Manufacturer]) -> list[str]:
    return [m.slug for m in found]


def test_device_type_vocabulary() -> None:
    assert DEVICE_TYPES == (
        "battery",
        "charger",
        "vehicle",
        "thermostat",
        "inverter",
        "meter",
        "water_heater",
        "heat_pump",
    )


def test_get_by_slug() -> None:
    tesla = CATALOG.get("tesla")
    assert tesla is not None
    assert tesla.slug == "tesla"
    assert CATALOG.get("acme") is None


def test_no_filters_offer_every_manufacturer_in_catalog_order() -> None:
    assert slugs(CATALOG.available()) == ["tesla", "honeywell", "daikin"]


def test_manufacturers_filter_keeps_the_named_ones() -> None:
    assert slugs(CATALOG.available(["daikin", "tesla"])) == ["tesla", "daikin"]


@pytest.mark.parametrize(
    ("device_types", "expected"),
    [
        (["thermostat"], ["honeywell", "daikin"]),
        (["battery", "heat_pump"], ["tesla", "daikin"]),
        (["meter"], []),
    ],
)
def test_device_types_filter_keeps_manufacturers_with_any_type(
    device_types: list[str], expected: list[str]
) -> None:
    assert slugs(CATALOG.available(device_types=device_types)) == expected


def test_filters_intersect() -> None:
    assert slugs(CATALOG.available(["tesla", "honeywell"], ["thermostat"])) == ["honeywell"]
    assert CATALOG.available(["tesla"], ["thermostat"]) == []
