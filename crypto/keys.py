"""Typed keys: a public key can never be passed where a private one belongs.

Theory of operation:
* `SigningKey` / `VerifyKey` wrap Ed25519.  Every signature is made over
  ``purpose tag || 0x00 || message``; the tag comes from `Purpose`, so a
  signature is valid for one kind of object only.
* `KemPrivateKey` / `KemPublicKey` wrap the hybrid MLKEM768-X25519 HPKE key
  (X-Wing).  The private key is stored as its 32-byte seed, expanded with
  SHAKE256 exactly as draft-connolly-cfrg-xwing-kem specifies, so our key
  handling can be checked against the published HPKE test vectors.  The public
  key is 1,216 bytes: ML-KEM-768 encapsulation key (1,184) || X25519 (32).
* A key id (`key_id`) is the first 16 bytes of a tagged SHA-256 of the public
  key bytes: short enough for headers, long enough to never collide by chance.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import ed25519, mlkem, x25519

from crypto.errors import VerificationFailed
from crypto.suite import Purpose

__all__ = [
    "KEM_PUBLIC_KEY_LENGTH",
    "KemPrivateKey",
    "KemPublicKey",
    "SigningKey",
    "VerifyKey",
    "key_id",
]

KEM_PUBLIC_KEY_LENGTH = 1216
_MLKEM768_PUBLIC_LENGTH = 1184


def key_id(public_bytes: bytes) -> bytes:
    """16-byte identifier of a public key (its tagged SHA-256, truncated)."""
    return hashlib.sha256(Purpose.KEY_FINGERPRINT.value + b"\x00" + public_bytes).digest()[:16]


def _tagged(purpose: Purpose, message: bytes) -> bytes:
    if not isinstance(purpose, Purpose):
        raise TypeError("purpose must be a crypto.Purpose")
    if not isinstance(message, (bytes, bytearray)):
        raise TypeError("message must be bytes")
    return purpose.value + b"\x00" + bytes(message)


@dataclass(frozen=True, slots=True)
class VerifyKey:
    """An Ed25519 public key (32 bytes)."""

    raw: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.raw, bytes) or len(self.raw) != 32:
            raise TypeError("an Ed25519 public key is 32 bytes")

    @property
    def key_id(self) -> bytes:
        return key_id(self.raw)

    def verify(self, purpose: Purpose, message: bytes, signature: bytes) -> None:
        """Raise `VerificationFailed` unless ``signature`` signs ``message`` for ``purpose``."""
        data = _tagged(purpose, message)
        try:
            public = ed25519.Ed25519PublicKey.from_public_bytes(self.raw)
            public.verify(bytes(signature), data)
        except (InvalidSignature, ValueError, TypeError) as exc:
            raise VerificationFailed() from exc


class SigningKey:
    """An Ed25519 private key. Its bytes are only reachable through `private_bytes()`."""

    __slots__ = ("_key", "verify_key")

    def __init__(self, seed: bytes) -> None:
        if not isinstance(seed, bytes) or len(seed) != 32:
            raise TypeError("an Ed25519 seed is 32 bytes")
        self._key = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
        self.verify_key = VerifyKey(self._key.public_key().public_bytes_raw())

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(secrets.token_bytes(32))

    def private_bytes(self) -> bytes:
        return self._key.private_bytes_raw()

    def sign(self, purpose: Purpose, message: bytes) -> bytes:
        """Sign ``message`` for one ``purpose`` (64-byte Ed25519 signature)."""
        return self._key.sign(_tagged(purpose, message))

    def __repr__(self) -> str:  # never print key material
        return f"SigningKey(<{self.verify_key.key_id.hex()}>)"


@dataclass(frozen=True, slots=True)
class KemPublicKey:
    """A hybrid MLKEM768-X25519 public key (1,216 bytes)."""

    raw: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.raw, bytes) or len(self.raw) != KEM_PUBLIC_KEY_LENGTH:
            raise TypeError("an MLKEM768-X25519 public key is 1216 bytes")
        # Parse once so a malformed key is refused at the edge, not at first use.
        self._hpke_key()

    @property
    def key_id(self) -> bytes:
        return key_id(self.raw)

    def _hpke_key(self) -> hpke.MLKEM768X25519PublicKey:
        try:
            return hpke.MLKEM768X25519PublicKey(
                mlkem.MLKEM768PublicKey.from_public_bytes(self.raw[:_MLKEM768_PUBLIC_LENGTH]),
                x25519.X25519PublicKey.from_public_bytes(self.raw[_MLKEM768_PUBLIC_LENGTH:]),
            )
        except ValueError as exc:
            raise TypeError("malformed MLKEM768-X25519 public key") from exc


class KemPrivateKey:
    """A hybrid MLKEM768-X25519 private key, held as its 32-byte X-Wing seed."""

    __slots__ = ("_hpke", "_seed", "public_key")

    def __init__(self, seed: bytes) -> None:
        if not isinstance(seed, bytes) or len(seed) != 32:
            raise TypeError("an X-Wing seed is 32 bytes")
        expanded = hashlib.shake_256(seed).digest(96)
        mlkem_key = mlkem.MLKEM768PrivateKey.from_seed_bytes(expanded[:64])
        x_key = x25519.X25519PrivateKey.from_private_bytes(expanded[64:96])
        self._seed = seed
        self._hpke = hpke.MLKEM768X25519PrivateKey(mlkem_key, x_key)
        self.public_key = KemPublicKey(
            mlkem_key.public_key().public_bytes_raw() + x_key.public_key().public_bytes_raw()
        )

    @classmethod
    def generate(cls) -> KemPrivateKey:
        return cls(secrets.token_bytes(32))

    def private_bytes(self) -> bytes:
        return self._seed

    def _hpke_key(self) -> hpke.MLKEM768X25519PrivateKey:
        return self._hpke

    def __repr__(self) -> str:
        return f"KemPrivateKey(<{self.public_key.key_id.hex()}>)"
