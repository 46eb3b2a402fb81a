"""Identifier formats: cuid-style resource ids, UUIDv7, generated reference ids, link tokens."""

from __future__ import annotations

import re
import time
import uuid

import pytest

from texture_connect.domain.ids import (
    GENERATED_REFERENCE_PREFIX,
    ID_LENGTH,
    LINK_TOKEN_PREFIX,
    generated_reference_id,
    looks_like_id,
    new_id,
    new_link_token,
    uuid7,
)

ID = re.compile(r"^c[0-9a-z]{24}$")
NOW_MS = 1_750_000_000_000  # June 2025


# --- new_id ---------------------------------------------------------------------------


def test_new_id_is_c_then_24_lowercase_base36_characters() -> None:
    value = new_id()
    assert ID_LENGTH == 25
    assert len(value) == 25
    assert ID.match(value), value
    assert looks_like_id(value)


@pytest.mark.parametrize("now_ms", [0, 1, 35, 36, NOW_MS, 36**8 - 1])
def test_new_id_has_the_format_for_any_timestamp(now_ms: int) -> None:
    assert ID.match(new_id(now_ms))


def test_new_id_timestamp_is_the_base36_milliseconds() -> None:
    assert new_id(NOW_MS)[1:9] == "mbxstdz4"
    assert int(new_id(NOW_MS)[1:9], 36) == NOW_MS
    assert new_id(0)[1:9] == "00000000"


def test_ten_thousand_new_ids_are_unique() -> None:
    ids = {new_id() for _ in range(10_000)}
    assert len(ids) == 10_000


def test_ten_thousand_ids_in_one_millisecond_are_unique() -> None:
    ids = {new_id(NOW_MS) for _ in range(10_000)}
    assert len(ids) == 10_000


@pytest.mark.parametrize("step", [1, 35, 36, 1_000, 3_600_000, 86_400_000 * 30])
def test_new_ids_sort_by_creation_millisecond(step: int) -> None:
    stamps = [NOW_MS + i * step for i in range(50)]
    ids = [new_id(stamp) for stamp in stamps]
    assert sorted(ids) == ids
    assert len(set(ids)) == len(ids)


def test_new_id_timestamp_covers_dates_until_2059() -> None:
    last = 36**8 - 1  # 2059-05-25
    assert new_id(last - 1) < new_id(last)


def test_new_ids_sort_across_real_milliseconds() -> None:
    earlier = new_id()
    time.sleep(0.002)
    later = new_id()
    assert earlier < later


@pytest.mark.parametrize(
    "value",
    [
        "",
        "c",
        "c" + "0" * 23,
        "c" + "0" * 25,
        "C" + "0" * 24,
        "d" + "0" * 24,
        "c" + "A" * 24,
        "c" + "-" * 24,
        "c" + "0" * 23 + "_",
        " c" + "0" * 23,
    ],
)
def test_looks_like_id_rejects_other_strings(value: str) -> None:
    assert not looks_like_id(value)


# --- uuid7 ----------------------------------------------------------------------------


def test_uuid7_has_version_7_and_the_rfc_variant() -> None:
    for _ in range(200):
        value = uuid7()
        assert value.version == 7
        assert value.variant == uuid.RFC_4122
        assert (value.int >> 76) & 0xF == 7
        assert (value.int >> 62) & 0b11 == 0b10


def test_uuid7_carries_the_unix_milliseconds_in_the_top_48_bits() -> None:
    assert uuid7(NOW_MS).int >> 80 == NOW_MS
    assert str(uuid7(NOW_MS)).startswith(f"{NOW_MS:012x}"[:8] + "-" + f"{NOW_MS:012x}"[8:])


def test_uuid7_defaults_to_the_current_time() -> None:
    before = time.time_ns() // 1_000_000
    stamp = uuid7().int >> 80
    after = time.time_ns() // 1_000_000
    assert before <= stamp <= after


def test_uuid7_values_are_unique() -> None:
    assert len({uuid7(NOW_MS) for _ in range(10_000)}) == 10_000


def test_uuid7_sorts_by_millisecond() -> None:
    values = [uuid7(NOW_MS + i) for i in range(100)]
    assert sorted(values) == values
    assert sorted(str(v) for v in values) == [str(v) for v in values]


def test_uuid7_fills_all_74_random_bits() -> None:
    random_mask = ((1 << 12) - 1) << 64 | ((1 << 62) - 1)
    seen_ones = 0
    seen_zeros = 0
    for _ in range(500):
        bits = uuid7(NOW_MS).int & random_mask
        seen_ones |= bits
        seen_zeros |= ~bits & random_mask
    assert seen_ones == random_mask
    assert seen_zeros == random_mask


# --- generated reference ids and link tokens ------------------------------------------


def test_generated_reference_id_is_texture_generated_uuidv7() -> None:
    value = generated_reference_id()
    assert GENERATED_REFERENCE_PREFIX == "texture-generated:"
    assert value.startswith("texture-generated:")
    parsed = uuid.UUID(value.removeprefix("texture-generated:"))
    assert str(parsed) == value.removeprefix("texture-generated:")
    assert parsed.version == 7


def test_generated_reference_ids_are_unique() -> None:
    assert len({generated_reference_id() for _ in range(1_000)}) == 1_000


def test_link_token_is_link_underscore_and_32_hex_digits() -> None:
    token = new_link_token()
    assert LINK_TOKEN_PREFIX == "link_"
    assert re.fullmatch(r"link_[0-9a-f]{32}", token), token


def test_link_tokens_are_unique() -> None:
    assert len({new_link_token() for _ in range(10_000)}) == 10_000
