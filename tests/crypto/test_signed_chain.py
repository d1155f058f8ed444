"""Signed documents (PROTOCOL §3), tagged signatures (§1.2) and the sender-key chain (§4.3)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crypto import (
    ChainKey,
    Purpose,
    SignedDocument,
    SigningKey,
    VerificationFailed,
    message_key_at,
    sign_document,
)
from crypto.chain import MAX_CHAIN_INDEX
from crypto.signed import MAX_DOCUMENT_LENGTH

KEY = SigningKey(bytes([1]) * 32)
OTHER = SigningKey(bytes([2]) * 32)
DOCUMENT_PURPOSES = [
    Purpose.ROSTER_SIGNATURE,
    Purpose.INVITE_SIGNATURE,
    Purpose.RECEIPT_SIGNATURE,
    Purpose.ENROLLMENT_SIGNATURE,
]
BODY = {"o": bytes(16), "n": 3, "m": ["a", "b"]}


@pytest.mark.parametrize("purpose", DOCUMENT_PURPOSES)
def test_document_round_trips(purpose: Purpose) -> None:
    """PROTOCOL §3: sign, serialise, parse and verify returns the body."""
    data = sign_document(purpose, BODY, KEY).to_bytes()
    assert SignedDocument.parse(data, purpose).verify(KEY.verify_key) == BODY


@pytest.mark.parametrize("signed_for", DOCUMENT_PURPOSES)
@pytest.mark.parametrize("read_as", DOCUMENT_PURPOSES)
def test_document_never_verifies_for_another_purpose(signed_for: Purpose, read_as: Purpose) -> None:
    """PROTOCOL §3.1, §1.2: a document signed for one purpose never verifies as another, even
    if an attacker relabels its purpose field."""
    if signed_for is read_as:
        return
    document = sign_document(signed_for, BODY, KEY)
    with pytest.raises(VerificationFailed):
        SignedDocument.parse(document.to_bytes(), read_as)
    relabelled = SignedDocument(read_as, document.body, document.signer, document.signature)
    parsed = SignedDocument.parse(relabelled.to_bytes(), read_as)
    with pytest.raises(VerificationFailed):
        parsed.verify(KEY.verify_key)


def test_document_signer_must_match_verifying_key() -> None:
    """PROTOCOL §3.1: the reader checks signer == key id of the key it verifies with."""
    document = sign_document(Purpose.ROSTER_SIGNATURE, BODY, KEY)
    with pytest.raises(VerificationFailed):
        document.verify(OTHER.verify_key)
    claimed = SignedDocument(
        document.purpose, document.body, OTHER.verify_key.key_id, document.signature
    )
    with pytest.raises(VerificationFailed):
        claimed.verify(OTHER.verify_key)


@given(data=st.data())
def test_document_bit_flip_fails(data: st.DataObject) -> None:
    """PROTOCOL §3.1: any flipped bit fails to parse or verify."""
    raw = bytearray(sign_document(Purpose.INVITE_SIGNATURE, BODY, KEY).to_bytes())
    bit = data.draw(st.integers(0, len(raw) * 8 - 1))
    raw[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(VerificationFailed):
        SignedDocument.parse(bytes(raw), Purpose.INVITE_SIGNATURE).verify(KEY.verify_key)


def test_document_size_limit() -> None:
    """PROTOCOL §3.2: documents over 1 MiB are refused before decoding."""
    with pytest.raises(VerificationFailed):
        SignedDocument.parse(bytes(MAX_DOCUMENT_LENGTH + 1), Purpose.ROSTER_SIGNATURE)


def test_non_document_purpose_cannot_sign_documents() -> None:
    """PROTOCOL §1.2: envelope, chain or key-file tags are not document purposes."""
    with pytest.raises(ValueError):
        sign_document(Purpose.ENVELOPE_SIGNATURE, BODY, KEY)


@given(message=st.binary(max_size=100))
def test_signature_is_bound_to_purpose(message: bytes) -> None:
    """PROTOCOL §1.2: Ed25519 over tag || 0x00 || message; one purpose's signature fails for all
    others, and a raw signature over the message alone never verifies."""
    signature = KEY.sign(Purpose.ENVELOPE_SIGNATURE, message)
    KEY.verify_key.verify(Purpose.ENVELOPE_SIGNATURE, message, signature)
    for purpose in Purpose:
        if purpose is not Purpose.ENVELOPE_SIGNATURE:
            with pytest.raises(VerificationFailed):
                KEY.verify_key.verify(purpose, message, signature)


def test_purpose_tags_are_distinct_and_separator_free() -> None:
    """PROTOCOL §1.2: tags are unique and contain no 0x00, so tag || 0x00 || message can be
    split only one way."""
    tags = [p.value for p in Purpose]
    assert len(set(tags)) == len(tags)
    assert all(t.startswith(b"sealbox/v1/") and b"\x00" not in t for t in tags)


# --- the sender-key chain ---------------------------------------------------------------------


@given(seed=st.binary(min_size=32, max_size=32), index=st.integers(1, 40))
def test_message_key_at_matches_step_by_step_ratchet(seed: bytes, index: int) -> None:
    """PROTOCOL §4.3: a coordinator deriving MK_i from CK0 gets what the device used at step i."""
    chain = ChainKey(seed)
    for _ in range(index - 1):
        chain = chain.advance()[1]
    assert message_key_at(ChainKey(seed), index) == chain.advance()[0]


def test_message_keys_are_distinct_and_differ_from_chain_keys() -> None:
    """PROTOCOL §4.3: every step yields a fresh key; the next chain key is never a message key."""
    chain = ChainKey(bytes(32))
    seen: set[bytes] = {chain.raw}
    for _ in range(200):
        message, chain = chain.advance()
        assert message.raw not in seen and chain.raw not in seen
        seen |= {message.raw, chain.raw}


@pytest.mark.parametrize("index", [0, -1, MAX_CHAIN_INDEX + 1])
def test_chain_index_out_of_range_is_refused(index: int) -> None:
    """PROTOCOL §4.3 rule 4: indexes start at 1 and a reader refuses i > 2^20."""
    with pytest.raises(ValueError):
        message_key_at(ChainKey(bytes(32)), index)


def test_keys_never_print_their_bytes() -> None:
    """Secrets stay out of logs and tracebacks: reprs show no key material."""
    chain = ChainKey(bytes([0xAB]) * 32)
    message = chain.advance()[0]
    for text in (repr(chain), repr(message), repr(KEY)):
        assert "abab" not in text.lower() and "\\xab" not in text


@pytest.mark.parametrize(
    "outer",
    [
        lambda d: [True, "invite", d.body, d.signer, d.signature],
        lambda d: [2, "invite", d.body, d.signer, d.signature],
        lambda d: [1, ["invite"], d.body, d.signer, d.signature],
        lambda d: [1, {"p": "invite"}, d.body, d.signer, d.signature],
        lambda d: [1, b"invite", d.body, d.signer, d.signature],
        lambda d: [1, "invite", d.body.decode("latin-1"), d.signer, d.signature],
        lambda d: [1, "invite", d.body, d.signer[:15], d.signature],
        lambda d: [1, "invite", d.body, d.signer, d.signature[:63]],
        lambda d: {"v": 1},
    ],
    ids=[
        "version-true",
        "version-2",
        "purpose-list",
        "purpose-map",
        "purpose-bytes",
        "body-text",
        "signer-15",
        "signature-63",
        "map",
    ],
)
def test_document_with_wrong_outer_types_fails_opaquely(outer) -> None:
    """PROTOCOL §2, §3: another version (even CBOR `true`, which Python equals to 1) or a field
    of the wrong type fails with VerificationFailed, never another exception."""
    from crypto import encoding

    document = sign_document(Purpose.INVITE_SIGNATURE, BODY, KEY)
    with pytest.raises(VerificationFailed):
        SignedDocument.parse(encoding.encode(outer(document)), Purpose.INVITE_SIGNATURE).verify(
            KEY.verify_key
        )
