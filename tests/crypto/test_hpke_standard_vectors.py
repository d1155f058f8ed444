"""Our HPKE key handling and suite wiring against the published vectors (PROTOCOL §2).

Vectors come from the `cryptography-vectors` package (pinned to the installed cryptography):
* `HPKE/hpke-pq-test-vectors.json`: hybrid KEM MLKEM768-X25519 (X-Wing, kem_id 0x647a),
  HKDF-SHA256, ChaCha20-Poly1305, base mode: our suite 1.
* `HPKE/test-vectors.json` (RFC 9180 appendix A): DHKEM(X25519), HKDF-SHA256,
  ChaCha20-Poly1305, base mode: the documented lighter option.

Only the first encryption of each vector uses HPKE sequence number 0, which is what a
single-shot API can open; the recorded encryptions also use AAD, which the public API does not
take, so these tests use pyca's private `_decrypt_with_aad` (tests only, never in `crypto/`).
Later encryptions are checked with the recorded key and nonces against the suite's AEAD.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.bindings._rust import openssl as rust_openssl
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography_vectors import open_vector_file

from crypto import KemPrivateKey, KemPublicKey
from crypto.suite import HPKE_ENC_LENGTH, HPKE_SUITE

_decrypt_with_aad = rust_openssl.hpke._decrypt_with_aad

XWING = 0x647A
DHKEM_X25519 = 0x0020
HKDF_SHA256 = 0x0001
CHACHA20_POLY1305 = 0x0003
BASE_MODE = 0


def _load(path: str, kem_id: int) -> list[dict[str, Any]]:
    with open_vector_file(path, "r") as f:
        vectors = json.load(f)
    selected = [
        v
        for v in vectors
        if int(v["kem_id"]) == kem_id
        and int(v["kdf_id"]) == HKDF_SHA256
        and int(v["aead_id"]) == CHACHA20_POLY1305
        and int(v["mode"]) == BASE_MODE
    ]
    assert selected, f"no vectors for kem {kem_id:#06x} in {path}"
    return selected


HYBRID = _load("HPKE/hpke-pq-test-vectors.json", XWING)
RFC9180 = _load("HPKE/test-vectors.json", DHKEM_X25519)
h = bytes.fromhex


def _check_later_encryptions(vector: dict[str, Any]) -> None:
    """Encryptions at sequence number s use nonce = base_nonce XOR s under the suite's AEAD."""
    aead = ChaCha20Poly1305(h(vector["key"]))
    base = int.from_bytes(h(vector["base_nonce"]), "big")
    for seq, encryption in enumerate(vector["encryptions"]):
        nonce = (base ^ seq).to_bytes(12, "big")
        assert nonce.hex() == encryption["nonce"]
        plaintext = aead.decrypt(nonce, h(encryption["ct"]), h(encryption["aad"]))
        assert plaintext.hex() == encryption["pt"]


@pytest.mark.parametrize("vector", HYBRID, ids=lambda v: "xwing-hkdf256-chacha")
def test_hybrid_vector_private_key_expands_to_recorded_public_key(vector: dict[str, Any]) -> None:
    """PROTOCOL §2: our X-Wing seed handling (SHAKE256 expansion) gives the standard's pkRm."""
    key = KemPrivateKey(h(vector["skRm"]))
    assert key.public_key.raw.hex() == vector["pkRm"]
    assert KemPublicKey(h(vector["pkRm"])).key_id == key.public_key.key_id
    assert len(h(vector["enc"])) == HPKE_ENC_LENGTH == 1120


@pytest.mark.parametrize("vector", HYBRID, ids=lambda v: "xwing-hkdf256-chacha")
def test_hybrid_vector_decrypts_with_our_key_and_suite(vector: dict[str, Any]) -> None:
    """PROTOCOL §2: suite 1 wired to our key opens the standard's recorded encryption."""
    key = KemPrivateKey(h(vector["skRm"]))
    first = vector["encryptions"][0]
    plaintext = _decrypt_with_aad(
        HPKE_SUITE,
        h(vector["enc"]) + h(first["ct"]),
        key._hpke_key(),
        info=h(vector["info"]),
        aad=h(first["aad"]),
    )
    assert plaintext.hex() == first["pt"]
    # Any other info (our domain separation relies on it) fails.
    with pytest.raises(InvalidTag):
        _decrypt_with_aad(
            HPKE_SUITE,
            h(vector["enc"]) + h(first["ct"]),
            key._hpke_key(),
            info=h(vector["info"]) + b"\x00",
            aad=h(first["aad"]),
        )
    _check_later_encryptions(vector)


@pytest.mark.parametrize("vector", HYBRID, ids=lambda v: "xwing-hkdf256-chacha")
def test_hybrid_vector_key_round_trips_through_public_api(vector: dict[str, Any]) -> None:
    """PROTOCOL §2: the public (no-AAD) suite encrypts to the vector's pkRm and we decrypt."""
    key = KemPrivateKey(h(vector["skRm"]))
    public = KemPublicKey(h(vector["pkRm"]))
    sealed = HPKE_SUITE.encrypt(b"chain key", public._hpke_key(), info=h(vector["info"]))
    assert len(sealed) == HPKE_ENC_LENGTH + len(b"chain key") + 16
    assert HPKE_SUITE.decrypt(sealed, key._hpke_key(), info=h(vector["info"])) == b"chain key"


@pytest.mark.parametrize("vector", RFC9180, ids=lambda v: "x25519-hkdf256-chacha")
def test_rfc9180_x25519_vector_decrypts_with_library_suite(vector: dict[str, Any]) -> None:
    """PROTOCOL §2 (lighter option): RFC 9180 A.2 DHKEM(X25519)/HKDF-SHA256/ChaCha20-Poly1305."""
    suite = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
    private = x25519.X25519PrivateKey.from_private_bytes(h(vector["skRm"]))
    assert private.public_key().public_bytes_raw().hex() == vector["pkRm"]
    first = vector["encryptions"][0]
    plaintext = _decrypt_with_aad(
        suite,
        h(vector["enc"]) + h(first["ct"]),
        private,
        info=h(vector["info"]),
        aad=h(first["aad"]),
    )
    assert plaintext.hex() == first["pt"]
    _check_later_encryptions(vector)
    sealed = suite.encrypt(b"x", private.public_key(), info=h(vector["info"]))
    assert suite.decrypt(sealed, private, info=h(vector["info"])) == b"x"
