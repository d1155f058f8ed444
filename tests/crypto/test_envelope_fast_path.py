"""`parse_envelope`'s fast path gives the general canonical decoder's verdict, always.

The push path parses every envelope, so `crypto.envelope` first tries a byte-level split of
``[1, header, body, signature]`` and a header check that skips the canonical re-encoding
(`_split_canonical`, `_canonical_header_fields`).  A parser with two paths is only safe if
the paths never disagree: these tests hold every input against `_parse_general` (the
decode, check and re-encode of `crypto.encoding`), which stays the definition.  The same
envelope on both paths, or the same `MalformedEnvelope` reason.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crypto import (
    ChainKey,
    KemPrivateKey,
    MalformedEnvelope,
    SigningKey,
    encoding,
    parse_envelope,
    seal_revision,
    seal_sender_key,
)
from crypto import envelope as envelope_module

DEVICE = SigningKey(bytes([7]) * 32)
ORG = bytes(range(16))


def _revision(content: bytes = b"x" * 300, parents: int = 1) -> bytes:
    message_key, _ = ChainKey(bytes([3]) * 32).advance()
    return seal_revision(
        org=ORG,
        report=bytes([9]) * 16,
        parents=sorted(secrets.token_bytes(32) for _ in range(parents)),
        seq=5,
        prev=bytes([1]) * 32,
        roster_version=2,
        key_seq=1,
        message_key=message_key,
        content=content,
        signing_key=DEVICE,
    ).to_bytes()


def _sender_key() -> bytes:
    kem = KemPrivateKey.generate()
    return seal_sender_key(
        org=ORG,
        seq=1,
        prev=bytes(32),
        roster_version=1,
        chain_key=ChainKey(bytes([3]) * 32),
        recipients=[kem.public_key],
        signing_key=DEVICE,
    ).to_bytes()


VALID = [_revision(), _revision(b"", 0), _revision(os.urandom(70_000), 3), _sender_key()]


def _verdict(parse: Any, data: bytes) -> Any:
    try:
        return parse(data)
    except MalformedEnvelope as exc:
        return ("malformed", exc.reason)


def _same_verdict(data: bytes) -> None:
    assert _verdict(parse_envelope, data) == _verdict(envelope_module._parse_general, data)


@pytest.mark.parametrize("data", VALID, ids=["rev", "rev-no-parents", "rev-70k", "key"])
def test_valid_envelopes_parse_on_the_fast_path(data: bytes) -> None:
    """Real envelopes (one-byte, two-byte and four-byte length heads) take the fast path
    and give what the general path gives."""
    assert envelope_module._split_canonical(data) is not None
    parsed = parse_envelope(data)
    assert parsed == envelope_module._parse_general(data)
    assert parsed.to_bytes() == data


def _outer(header: bytes, body: bytes, signature: bytes) -> list[Any]:
    return [1, header, body, signature]


def _non_canonical_head(value: bytes) -> bytes:
    """``value`` as a CBOR byte string with a longer length head than needed."""
    return b"\x59" + len(value).to_bytes(2, "big") + value


def _header_map(data: bytes) -> dict[str, Any]:
    header: dict[str, Any] = cbor2.loads(cbor2.loads(data)[1])
    return header


def _with_header(data: bytes, header_bytes: bytes) -> bytes:
    _, _, body, signature = cbor2.loads(data)
    return encoding.encode(_outer(header_bytes, body, signature))


def _cases() -> list[bytes]:
    rev = VALID[0]
    version, header, body, signature = cbor2.loads(rev)
    fields = _header_map(rev)
    reordered = dict(reversed(list(fields.items())))
    out = [
        rev + b"\x00",  # trailing byte
        rev[:-1],  # truncated signature
        b"\x85" + rev[1:] + b"\x40",  # five items
        b"\x9f" + rev[1:] + b"\xff",  # indefinite-length array
        b"\x84\x02" + rev[2:],  # version 2
        b"\x84\xf5" + rev[2:],  # true for the version
        b"\x84\x18\x01" + rev[2:],  # version 1 with a non-shortest head
        b"\x84\x01" + _non_canonical_head(header) + cbor2.dumps(body) + cbor2.dumps(signature),
        b"\x84\x01" + cbor2.dumps(header) + _non_canonical_head(body) + cbor2.dumps(signature),
        b"\x84\x01" + cbor2.dumps(header) + cbor2.dumps(body) + b"\x59\x00\x40" + signature,
        encoding.encode(_outer(header, body, signature[:63])),
        encoding.encode(_outer(header, body, signature + b"\x00")),
        encoding.encode([1, header, body, "text signature"]),
        encoding.encode([1, "text header", body, signature]),
        _with_header(rev, cbor2.dumps(reordered)),  # keys out of canonical order
        _with_header(rev, cbor2.dumps({**fields, "zz": 1})),
        _with_header(rev, cbor2.dumps({**fields, "n": 5.0})),  # a float where an int belongs
        _with_header(rev, cbor2.dumps({**fields, "e": True})),
        _with_header(rev, cbor2.dumps({k: v for k, v in fields.items() if k != "w"})),
        _with_header(rev, cbor2.dumps(dict(sorted({**fields, "n": 2**64}.items())))),
        _with_header(rev, cbor2.dumps(dict(sorted({**fields, "p": [b"short"]}.items())))),
        _with_header(rev, cbor2.dumps(list(fields.items()))),
        _with_header(rev, cbor2.dumps(fields) + b"\x00"),  # trailing byte in the header
        _with_header(rev, b"\xbf" + cbor2.dumps(fields)[1:] + b"\xff"),  # indefinite map
        _with_header(rev, cbor2.dumps(fields).replace(b"\x61n\x05", b"\x61n\x18\x05", 1)),
        _with_header(rev, cbor2.dumps({1: 1})),
        b"",
        b"\x84",
        b"\x84\x01",
        b"\x84\x01\x58",
        b"\x84\x01\x58\x05",
        b"\x84\x01\x5b" + bytes(8),
    ]
    assert version == 1
    return out


@pytest.mark.parametrize("data", _cases())
def test_each_malformation_gets_the_general_paths_verdict(data: bytes) -> None:
    """Every way of bending the canonical encoding that the fast path must notice."""
    _same_verdict(data)


@given(
    base=st.sampled_from(VALID),
    edits=st.lists(
        st.tuples(st.integers(0, 2**16), st.integers(0, 255), st.sampled_from("sid")),
        min_size=1,
        max_size=4,
    ),
)
def test_mutated_envelopes_get_the_general_paths_verdict(
    base: bytes, edits: list[tuple[int, int, str]]
) -> None:
    """Byte substitutions, insertions and deletions anywhere in a valid envelope."""
    data = bytearray(base)
    for position, value, kind in edits:
        at = position % (len(data) + 1)
        if kind == "s" and at < len(data):
            data[at] = value
        elif kind == "i":
            data.insert(at, value)
        elif kind == "d" and at < len(data):
            del data[at]
    _same_verdict(bytes(data))


@given(
    fields=st.dictionaries(
        st.sampled_from(list("vskodnhercxpwtm") + ["zz", "V"]),
        st.integers(-2, 2**64 - 1)
        | st.binary(max_size=40)
        | st.sampled_from(["rev", "key", b"\x00" * 16, b"\x00" * 32, bytes(40)])
        | st.lists(st.binary(min_size=32, max_size=32), max_size=3),
        max_size=14,
    ),
    canonical=st.booleans(),
)
def test_header_maps_get_the_general_paths_verdict(fields: dict[str, Any], canonical: bool) -> None:
    """Header maps of any keys and value types, in canonical or in drawn key order."""
    header = cbor2.dumps(fields, canonical=canonical)
    _same_verdict(_with_header(VALID[0], header))
