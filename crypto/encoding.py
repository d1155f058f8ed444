"""Canonical CBOR (RFC 8949 §4.2.1, core deterministic encoding) for signed bytes.

Rules: integers, byte strings, text strings, arrays, maps with text keys,
booleans and null only.  No floats, no tags, no indefinite lengths.  A decoder
accepts an encoding only if re-encoding it gives the identical bytes, so one
value has exactly one accepted encoding and a signature over bytes is a
signature over the value.
"""

from __future__ import annotations

from typing import Any

import cbor2

__all__ = ["CanonicalError", "decode", "encode"]

MAX_DEPTH = 16


class CanonicalError(ValueError):
    """The bytes are not the canonical encoding of an allowed value."""


def _check(value: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise CanonicalError("nesting too deep")
    if value is None or isinstance(value, (bool, bytes, str)):
        return
    if isinstance(value, int):
        if not -(2**63) <= value < 2**64:
            raise CanonicalError("integer out of range")
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            _check(item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise CanonicalError("map keys must be text")
            _check(item, depth + 1)
        return
    raise CanonicalError(f"type {type(value).__name__} is not allowed in signed data")


def encode(value: Any) -> bytes:
    """Encode ``value`` canonically. Raises CanonicalError for disallowed types."""
    _check(value, 0)
    return cbor2.dumps(value, canonical=True)


def decode(data: bytes) -> Any:
    """Decode canonical CBOR. Raises CanonicalError on anything else."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError("data must be bytes")
    data = bytes(data)
    try:
        value = cbor2.loads(
            data, max_depth=MAX_DEPTH, allow_indefinite=False, allow_duplicate_keys=False
        )
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise CanonicalError("not valid CBOR") from exc
    _check(value, 0)
    if cbor2.dumps(value, canonical=True) != data:
        raise CanonicalError("not the canonical encoding")
    return value
