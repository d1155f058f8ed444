"""Local key files: a device's or coordinator's secrets wrapped under a passphrase.

Theory of operation (docs/PROTOCOL.md §12):

    keyfile = CBOR [1, "keyfile", params, salt, nonce, ciphertext]
    params  = {"m": memory cost in KiB, "t": iterations, "p": lanes}
    key     = Argon2id(passphrase, salt, params) (32 bytes)
    aad     = CBOR [1, "keyfile", params, salt]
    ciphertext = ChaCha20-Poly1305(key, nonce, secret, aad)

Rules:
* ``salt`` is 16 random bytes and ``nonce`` 12 random bytes, fresh per wrap.
* The parameters and the salt are bound as associated data, so a tamperer who
  swaps them (to weaken the derivation, or to graft another file's salt) makes
  the file fail to open.
* A reader refuses parameters below `DEFAULT_KDF` (RFC 9106's second
  recommended option, m = 64 MiB, t = 3, p = 4) *before* deriving anything:
  the AEAD would catch the swap only after the attacker's weak derivation ran,
  and a weak file written by a buggy or malicious writer must never be trusted.
  It also refuses absurd parameters (memory above 1 GiB, t above 10, p above
  16), which would otherwise let a crafted file exhaust the machine.
* Every failure of `unwrap_keyfile` (wrong passphrase, any flipped bit,
  truncation, weak or absurd parameters, wrong version) is the one opaque
  `VerificationFailed`; wrong argument types are `TypeError`.

What is not protected: the file's length reveals the secret's length, and the
parameters are readable.  Argon2id slows guessing; it cannot save a weak
passphrase.
"""

from __future__ import annotations

import secrets as _secrets
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from crypto import encoding
from crypto.errors import VerificationFailed
from crypto.suite import PROTOCOL_VERSION

__all__ = [
    "DEFAULT_KDF",
    "MAX_KDF",
    "MAX_SECRET_LENGTH",
    "KdfParams",
    "unwrap_keyfile",
    "wrap_keyfile",
]

_KIND = "keyfile"
SALT_LENGTH = 16
NONCE_LENGTH = 12
KEY_LENGTH = 32
MAX_SECRET_LENGTH = 1024 * 1024
_TAG_LENGTH = 16


@dataclass(frozen=True, slots=True)
class KdfParams:
    """Argon2id cost parameters: ``memory_cost`` in KiB, ``iterations``, ``lanes``."""

    memory_cost: int
    iterations: int
    lanes: int

    def __post_init__(self) -> None:
        for name in ("memory_cost", "iterations", "lanes"):
            if type(getattr(self, name)) is not int:
                raise TypeError(f"{name} must be an int")

    def to_cbor(self) -> dict[str, int]:
        return {"m": self.memory_cost, "t": self.iterations, "p": self.lanes}

    def within(self, low: KdfParams, high: KdfParams) -> bool:
        """Whether every parameter lies in [low, high]."""
        return (
            low.memory_cost <= self.memory_cost <= high.memory_cost
            and low.iterations <= self.iterations <= high.iterations
            and low.lanes <= self.lanes <= high.lanes
        )


DEFAULT_KDF = KdfParams(memory_cost=64 * 1024, iterations=3, lanes=4)
"""RFC 9106 §4, second recommended option; also the floor a reader accepts."""

MAX_KDF = KdfParams(memory_cost=1024 * 1024, iterations=10, lanes=16)
"""The ceiling a reader accepts (1 GiB, t = 10, p = 16), against crafted files."""


def _derive(passphrase: bytes, salt: bytes, params: KdfParams) -> bytes:
    return Argon2id(
        salt=salt,
        length=KEY_LENGTH,
        iterations=params.iterations,
        lanes=params.lanes,
        memory_cost=params.memory_cost,
    ).derive(passphrase)


def _aad(params: KdfParams, salt: bytes) -> bytes:
    return encoding.encode([PROTOCOL_VERSION, _KIND, params.to_cbor(), salt])


def wrap_keyfile(
    secret: bytes,
    passphrase: bytes,
    *,
    params: KdfParams = DEFAULT_KDF,
    salt: bytes | None = None,
    nonce: bytes | None = None,
) -> bytes:
    """Encrypt ``secret`` under ``passphrase`` (docs/PROTOCOL.md §12).

    Args:
        secret: the bytes to protect (at most `MAX_SECRET_LENGTH`).
        passphrase: the user's passphrase, as bytes (encode text as UTF-8).
        params: Argon2id costs; must lie between `DEFAULT_KDF` and `MAX_KDF`.
        salt: 16 bytes; only for test vectors (default: fresh random).
        nonce: 12 bytes; only for test vectors (default: fresh random).

    Returns:
        The key file bytes.

    Raises:
        TypeError: an argument has the wrong type or length.
        ValueError: ``params`` are outside the accepted range, or ``secret`` is too long.
    """
    if not isinstance(secret, bytes) or not isinstance(passphrase, bytes):
        raise TypeError("secret and passphrase must be bytes")
    if not isinstance(params, KdfParams):
        raise TypeError("params must be KdfParams")
    if len(secret) > MAX_SECRET_LENGTH:
        raise ValueError("secret too long for a key file")
    if not params.within(DEFAULT_KDF, MAX_KDF):
        raise ValueError("Argon2id parameters outside the accepted range (docs/PROTOCOL.md §12)")
    salt = _secrets.token_bytes(SALT_LENGTH) if salt is None else salt
    nonce = _secrets.token_bytes(NONCE_LENGTH) if nonce is None else nonce
    if not isinstance(salt, bytes) or len(salt) != SALT_LENGTH:
        raise TypeError("salt must be 16 bytes")
    if not isinstance(nonce, bytes) or len(nonce) != NONCE_LENGTH:
        raise TypeError("nonce must be 12 bytes")
    key = _derive(passphrase, salt, params)
    ciphertext = ChaCha20Poly1305(key).encrypt(nonce, secret, _aad(params, salt))
    return encoding.encode([PROTOCOL_VERSION, _KIND, params.to_cbor(), salt, nonce, ciphertext])


def _parse_params(raw: Any) -> KdfParams:
    if not isinstance(raw, dict) or set(raw) != {"m", "t", "p"}:
        raise VerificationFailed()
    if not all(type(raw[k]) is int for k in ("m", "t", "p")):
        raise VerificationFailed()
    params = KdfParams(memory_cost=raw["m"], iterations=raw["t"], lanes=raw["p"])
    if not params.within(DEFAULT_KDF, MAX_KDF):
        raise VerificationFailed()
    return params


def unwrap_keyfile(blob: bytes, passphrase: bytes) -> bytes:
    """Decrypt a key file made by `wrap_keyfile`.

    Raises:
        TypeError: ``blob`` or ``passphrase`` is not bytes.
        VerificationFailed: wrong passphrase, tampering, or parameters outside
            [`DEFAULT_KDF`, `MAX_KDF`] (checked before any derivation runs).
    """
    if not isinstance(blob, (bytes, bytearray)) or not isinstance(passphrase, bytes):
        raise TypeError("blob and passphrase must be bytes")
    if len(blob) > MAX_SECRET_LENGTH + 1024:
        raise VerificationFailed()
    try:
        outer = encoding.decode(bytes(blob))
    except encoding.CanonicalError as exc:
        raise VerificationFailed() from exc
    if not isinstance(outer, list) or len(outer) != 6:
        raise VerificationFailed()
    version, kind, raw_params, salt, nonce, ciphertext = outer
    if type(version) is not int or version != PROTOCOL_VERSION or kind != _KIND:
        raise VerificationFailed()
    params = _parse_params(raw_params)
    if not (
        isinstance(salt, bytes)
        and len(salt) == SALT_LENGTH
        and isinstance(nonce, bytes)
        and len(nonce) == NONCE_LENGTH
        and isinstance(ciphertext, bytes)
        and _TAG_LENGTH <= len(ciphertext) <= MAX_SECRET_LENGTH + _TAG_LENGTH
    ):
        raise VerificationFailed()
    key = _derive(passphrase, salt, params)
    try:
        return ChaCha20Poly1305(key).decrypt(nonce, ciphertext, _aad(params, salt))
    except InvalidTag as exc:
        raise VerificationFailed() from exc
