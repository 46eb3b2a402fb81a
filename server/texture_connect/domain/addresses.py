"""Postal addresses: ISO 3166-1 country codes and the normalized form used to match sites."""

from __future__ import annotations

import re
from dataclasses import dataclass

# ISO 3166-1 alpha-2, officially assigned codes.
ISO_3166_ALPHA2 = frozenset(
    """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO
    BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ
    DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP
    GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG
    KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML
    MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE
    PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL
    SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM
    US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW
    """.split()  # noqa: SIM905 (a compact table reads better than 249 lines)
)

# Required location fields, by JSON name, in the order a form shows them.
REQUIRED_LOCATION_FIELDS = ("streetOne", "city", "state", "postalCode", "country")

_ABBREVIATIONS = {
    "street": "st",
    "avenue": "ave",
    "boulevard": "blvd",
    "road": "rd",
    "drive": "dr",
    "lane": "ln",
    "court": "ct",
    "place": "pl",
    "terrace": "ter",
    "highway": "hwy",
    "parkway": "pkwy",
    "suite": "ste",
    "apartment": "apt",
    "north": "n",
    "south": "s",
    "east": "e",
    "west": "w",
    "northeast": "ne",
    "northwest": "nw",
    "southeast": "se",
    "southwest": "sw",
}
_WORD = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class Address:
    street_one: str
    city: str
    state: str
    postal_code: str
    country: str
    street_two: str = ""


def _normalize_text(value: str) -> str:
    # "N.W." and "D.C." are the same words as "NW" and "DC".
    words = _WORD.findall(value.lower().replace(".", ""))
    return " ".join(_ABBREVIATIONS.get(word, word) for word in words)


def normalized_address_key(address: Address) -> str:
    """Two spellings of one address share a key: case, punctuation, spacing and common
    street-word abbreviations ("Avenue" / "Ave.") do not matter."""
    return "|".join(
        (
            _normalize_text(address.street_one),
            _normalize_text(address.street_two),
            _normalize_text(address.city),
            _normalize_text(address.state),
            re.sub(r"[^A-Z0-9]", "", address.postal_code.upper()),
            address.country.strip().upper(),
        )
    )
