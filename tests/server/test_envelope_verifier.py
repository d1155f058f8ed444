"""The server's fast envelope check equals crypto's `Envelope.verify_signature` (§8.2)."""

from __future__ import annotations

import secrets

from hypothesis import given
from hypothesis import strategies as st

from crypto import ChainKey, SigningKey, VerificationFailed, parse_envelope, seal_revision
from crypto.encoding import encode
from server.services.push import envelope_verifier

KEY = SigningKey(bytes(range(32)))
OTHER = SigningKey(bytes(range(1, 33)))


def _envelope(signing_key: SigningKey = KEY):
    mk, _ = ChainKey(bytes(32)).advance()
    return seal_revision(
        org=bytes(16),
        report=bytes(16),
        parents=[],
        seq=2,
        prev=secrets.token_bytes(32),
        roster_version=1,
        key_seq=1,
        message_key=mk,
        content=b"x",
        signing_key=signing_key,
    )


def _crypto_accepts(env, key) -> bool:
    try:
        env.verify_signature(key.verify_key)
        return True
    except VerificationFailed:
        return False


def test_valid_envelope_and_wrong_device() -> None:
    env = _envelope()
    assert envelope_verifier(KEY.verify_key)(env) is True
    assert envelope_verifier(OTHER.verify_key)(env) is False
    assert _crypto_accepts(env, OTHER) is False


@given(position=st.integers(0, 63), bit=st.integers(0, 7))
def test_any_signature_bit_flip_is_refused_by_both(position: int, bit: int) -> None:
    env = _envelope()
    signature = bytearray(env.signature)
    signature[position] ^= 1 << bit
    tampered = parse_envelope(encode([1, env.header_bytes, env.body, bytes(signature)]))
    assert envelope_verifier(KEY.verify_key)(tampered) is False
    assert _crypto_accepts(tampered, KEY) is False


def test_a_signature_for_another_purpose_is_refused() -> None:
    env = _envelope()
    raw_sig = KEY._key.sign(env.id)  # Ed25519 over the bare id: no purpose tag  # noqa: SLF001
    forged = parse_envelope(encode([1, env.header_bytes, env.body, raw_sig]))
    assert envelope_verifier(KEY.verify_key)(forged) is False
    assert _crypto_accepts(forged, KEY) is False
