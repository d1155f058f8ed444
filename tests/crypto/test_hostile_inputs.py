"""Structured hostile inputs: well-formed canonical CBOR of the right outer shape but with
arbitrary field values must fail with the one opaque failure, never another exception
(PROTOCOL §2, §3, §4.5, §12).  Random bytes rarely reach past the CBOR decoder; these do.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crypto import (
    MalformedEnvelope,
    Purpose,
    SignedDocument,
    SigningKey,
    VerificationFailed,
    encoding,
    parse_envelope,
    unwrap_keyfile,
)

KEY = SigningKey(bytes([1]) * 32)

leaves = (
    st.integers(-(2**63), 2**64 - 1)
    | st.binary(max_size=70)
    | st.text(max_size=8)
    | st.booleans()
    | st.none()
    | st.sampled_from([1, 0, True, "rev", "key", "keyfile", "invite", bytes(16), bytes(32)])
)
values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=2), inner, max_size=4)
    ),
    max_leaves=12,
)
header_keys = st.sampled_from(list("vskodnhercxpt") + ["zz"])
headers = st.dictionaries(header_keys, values, max_size=13)


@given(header=headers, body=values, signature=values, version=st.sampled_from([1, True, 2]))
def test_parse_envelope_structured_garbage(
    header: dict[str, Any], body: Any, signature: Any, version: Any
) -> None:
    """PROTOCOL §4.1, §4.5: any header map, body and signature value -> MalformedEnvelope."""
    data = encoding.encode([version, encoding.encode(header), body, signature])
    try:
        envelope = parse_envelope(data)
    except MalformedEnvelope:
        return
    # A structurally valid envelope may be drawn; it can never carry a valid signature.
    with pytest.raises(VerificationFailed):
        envelope.verify_signature(KEY.verify_key)


@given(
    name=values | st.sampled_from(["roster", "invite", "receipt", "enrollment"]),
    body=values,
    signer=values | st.just(KEY.verify_key.key_id),
    signature=values,
    version=st.sampled_from([1, True, 0]),
    purpose=st.sampled_from(
        [
            Purpose.ROSTER_SIGNATURE,
            Purpose.INVITE_SIGNATURE,
            Purpose.RECEIPT_SIGNATURE,
            Purpose.ENROLLMENT_SIGNATURE,
        ]
    ),
)
def test_signed_document_structured_garbage(
    name: Any, body: Any, signer: Any, signature: Any, version: Any, purpose: Purpose
) -> None:
    """PROTOCOL §3.1: a forged document of any shape fails with VerificationFailed."""
    data = encoding.encode([version, name, body, signer, signature])
    with pytest.raises(VerificationFailed):
        SignedDocument.parse(data, purpose).verify(KEY.verify_key)


@given(
    kind=values | st.just("keyfile"),
    params=values | st.fixed_dictionaries({"m": values, "t": values, "p": values}),
    salt=values,
    nonce=values,
    ciphertext=values,
    version=st.sampled_from([1, True]),
)
def test_keyfile_structured_garbage(
    kind: Any, params: Any, salt: Any, nonce: Any, ciphertext: Any, version: Any
) -> None:
    """PROTOCOL §12: a crafted key file fails with VerificationFailed without running Argon2id
    on out-of-range parameters (an in-range draw is astronomically unlikely here)."""
    data = encoding.encode([version, kind, params, salt, nonce, ciphertext])
    with pytest.raises(VerificationFailed):
        unwrap_keyfile(data, b"passphrase")
