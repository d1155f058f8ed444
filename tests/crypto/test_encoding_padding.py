"""Canonical CBOR (PROTOCOL §2.1) and Padmé padding (PROTOCOL §2.2) as properties."""

from __future__ import annotations

import struct
from typing import Any

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crypto.encoding import CanonicalError, decode, encode
from crypto.padding import MIN_PADDED_LENGTH, pad, padded_length, padme, unpad

# --- canonical CBOR ---------------------------------------------------------------------------

scalars = (
    st.integers(-(2**63), 2**64 - 1)
    | st.binary(max_size=40)
    | st.text(max_size=20)
    | st.booleans()
    | st.none()
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=20,
)


@given(values)
def test_canonical_round_trip(value: Any) -> None:
    """PROTOCOL §2.1: every allowed value has one encoding, and it decodes back to the value."""
    data = encode(value)
    assert decode(data) == value
    assert encode(decode(data)) == data


@given(st.dictionaries(st.text(max_size=6), st.integers(0, 100), min_size=2, max_size=6))
def test_unsorted_map_is_rejected(mapping: dict[str, int]) -> None:
    """PROTOCOL §2.1: map keys must be sorted by their encoded bytes."""
    canonical = encode(mapping)
    reversed_order = list(reversed(mapping.items()))
    by_last_char = sorted(mapping.items(), key=lambda kv: kv[0][::-1])
    for order in (reversed_order, by_last_char):
        loose = cbor2.dumps(dict(order))
        if loose == canonical:
            continue
        with pytest.raises(CanonicalError):
            decode(loose)


def _head(major: int, value: int, width: int) -> bytes:
    """A CBOR head with the argument forced into ``width`` extra bytes (0 = inline)."""
    if width == 0:
        return bytes([major << 5 | value])
    info = {1: 24, 2: 25, 4: 26, 8: 27}[width]
    fmt = {1: ">B", 2: ">H", 4: ">I", 8: ">Q"}[width]
    return bytes([major << 5 | info]) + struct.pack(fmt, value)


def _minimal_width(value: int) -> int:
    if value < 24:
        return 0
    for width in (1, 2, 4, 8):
        if value < 1 << (8 * width):
            return width
    raise AssertionError


@given(
    value=st.integers(0, 2**32),
    major=st.sampled_from([0, 1]),
    width=st.sampled_from([1, 2, 4, 8]),
)
def test_non_minimal_integer_is_rejected(value: int, major: int, width: int) -> None:
    """PROTOCOL §2.1: integers use their shortest form."""
    if value >= 1 << (8 * width):
        return
    data = _head(major, value, width)
    if width == _minimal_width(value):
        decode(data)
    else:
        with pytest.raises(CanonicalError):
            decode(data)


@given(payload=st.binary(max_size=30), width=st.sampled_from([1, 2, 4]))
def test_non_minimal_length_is_rejected(payload: bytes, width: int) -> None:
    """PROTOCOL §2.1: lengths use their shortest form too."""
    data = _head(2, len(payload), width) + payload
    if width == _minimal_width(len(payload)):
        assert decode(data) == payload
    else:
        with pytest.raises(CanonicalError):
            decode(data)


@pytest.mark.parametrize(
    "data",
    [
        b"\x5f\x41\x01\x41\x02\xff",  # indefinite byte string
        b"\x7f\x61a\xff",  # indefinite text string
        b"\x9f\x01\x02\xff",  # indefinite array
        b"\xbf\x61a\x01\xff",  # indefinite map
    ],
)
def test_indefinite_lengths_are_rejected(data: bytes) -> None:
    """PROTOCOL §2.1: definite lengths only."""
    with pytest.raises(CanonicalError):
        decode(data)


@given(st.floats(allow_nan=True) | st.floats(width=16) | st.floats(width=32))
def test_floats_are_rejected_both_ways(value: float) -> None:
    """PROTOCOL §2.1: no floats in signed data, neither encoded nor decoded."""
    with pytest.raises(CanonicalError):
        encode({"x": value})
    with pytest.raises(CanonicalError):
        decode(cbor2.dumps(value, canonical=True))


@given(tag=st.integers(0, 2**16), inner=st.integers(0, 100))
def test_tags_are_rejected(tag: int, inner: int) -> None:
    """PROTOCOL §2.1: no tags (and so no bignums, dates, or self-describe prefixes)."""
    with pytest.raises(CanonicalError):
        decode(cbor2.dumps(cbor2.CBORTag(tag, inner)))


@given(key=st.text(max_size=5), a=st.integers(0, 50), b=st.integers(0, 50))
def test_duplicate_keys_are_rejected(key: str, a: int, b: int) -> None:
    """PROTOCOL §2.1: a map never holds a key twice (one signed value, one meaning)."""
    encoded_key = cbor2.dumps(key)
    data = b"\xa2" + encoded_key + cbor2.dumps(a) + encoded_key + cbor2.dumps(b)
    with pytest.raises(CanonicalError):
        decode(data)


@pytest.mark.parametrize(
    "value",
    [1.5, {1: 2}, {b"k": 1}, {"a", "b"}, 2**64, -(2**63) - 1, object(), "DEEP"],
    ids=["float", "int-key", "bytes-key", "set", "2^64", "below-int64", "object", "too-deep"],
)
def test_disallowed_values_cannot_be_encoded(value: Any) -> None:
    """PROTOCOL §2.1: only ints (64-bit), bytes, text, arrays, text-keyed maps, bools, null."""
    if value == "DEEP":
        for _ in range(20):
            value = [value]
    with pytest.raises(CanonicalError):
        encode(value)


@given(st.binary(max_size=64))
def test_decode_arbitrary_bytes_raises_only_canonical_error(data: bytes) -> None:
    """PROTOCOL §2.1: a decoder never fails with anything but CanonicalError."""
    try:
        value = decode(data)
    except CanonicalError:
        return
    assert encode(value) == data


def test_decode_requires_bytes() -> None:
    """Wrong input types are TypeError."""
    with pytest.raises(TypeError):
        decode("00")  # type: ignore[arg-type]


# --- Padmé --------------------------------------------------------------------------------------


@given(st.binary(max_size=20_000))
def test_pad_round_trips(content: bytes) -> None:
    """PROTOCOL §2.2: unpad(pad(x)) == x."""
    assert unpad(pad(content)) == content


@given(st.integers(0, 10**7))
def test_padded_sizes_are_only_padme_buckets(length: int) -> None:
    """PROTOCOL §2.2: a padded size is max(256, Padmé(L+1)): a fixed point of Padmé, at least
    256, at least L+1, and at most 12 % above L+1."""
    size = padded_length(length)
    assert size >= MIN_PADDED_LENGTH and size >= length + 1
    assert padme(size) == size
    assert size == MIN_PADDED_LENGTH or size <= (length + 1) * 1.12


def test_padme_bucket_count_is_logarithmic() -> None:
    """PROTOCOL §2.2: lengths up to 64 KiB fall into few buckets (O(log log L) bits leak)."""
    buckets = {padded_length(n) for n in range(65_536)}
    assert all(padme(b) == b for b in buckets)
    assert min(buckets) == 256
    assert len(buckets) < 300
    assert len({padded_length(n) for n in range(255)}) == 1  # every small report looks alike


@given(st.integers(1, 10**9))
def test_padme_monotone_and_bounded(length: int) -> None:
    """Padmé (PETS 2019): L <= Padmé(L) <= Padmé(L+1), overhead at most 12 %."""
    assert length <= padme(length) <= padme(length + 1)
    assert padme(length) <= length * 1.12 + 1


@pytest.mark.parametrize(
    "padded",
    [b"", bytes(256), b"abc", b"abc\x00\x00", b"\x80abc"],
)
def test_unpad_rejects_missing_marker(padded: bytes) -> None:
    """PROTOCOL §2.2: a plaintext without the 0x80 marker is rejected."""
    with pytest.raises(ValueError):
        unpad(padded)
