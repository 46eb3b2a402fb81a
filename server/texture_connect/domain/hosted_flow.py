"""The hosted Connect flow's steps (seed: "How It Works", "Customer-Confirmed Information").

welcome → manufacturer (skipped when one remains) → customer information (skipped when
the session recorded complete customerInfo, or the customer already has a site and a
complete contact) → authorize at the manufacturer → device preferences → done.
"""

from __future__ import annotations

from collections.abc import Sequence

from texture_connect.domain.catalog import Manufacturer

WELCOME = "welcome"
MANUFACTURER = "manufacturer"
CUSTOMER_INFO = "customer_info"
AUTHORIZE = "authorize"
ONE_TIME_CODE = "one_time_code"
DEVICES = "devices"
STEPS = (WELCOME, MANUFACTURER, CUSTOMER_INFO, AUTHORIZE, ONE_TIME_CODE, DEVICES)


def customer_form_needed(*, bypassed: bool, has_site: bool, contact_complete: bool) -> bool:
    return not (bypassed or (has_site and contact_complete))


def after_welcome(offered: Sequence[Manufacturer], form_needed: bool) -> tuple[str, str]:
    """(next step, the manufacturer chosen for the customer: the only one, if one)."""
    if len(offered) == 1:
        return after_manufacturer(form_needed), offered[0].slug
    return MANUFACTURER, ""


def after_manufacturer(form_needed: bool) -> str:
    return CUSTOMER_INFO if form_needed else AUTHORIZE
