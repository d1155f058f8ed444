"""The device sender-key chain: one HPKE wrap per epoch, one fresh key per revision.

Theory of operation (docs/PROTOCOL.md §4.3):
* At the start of an epoch the device draws a random 32-byte chain key CK0 and
  publishes it, wrapped with HPKE to every active coordinator, in a sender-key
  envelope at device sequence number c.
* The revision at device sequence n (n > c) is sealed with message key
  MK_i, i = n - c, where CK_i = HMAC(CK_{i-1}, "next") and
  MK_i = HMAC(CK_{i-1}, "message")  (the symmetric-key ratchet of Signal's
  double ratchet).
* The device keeps only the newest chain key and overwrites it as it goes, so a
  seized device cannot re-derive the key of anything it already sealed.
  Coordinators, holding CK0, derive any MK_i.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from crypto.suite import Purpose

__all__ = ["ChainKey", "MessageKey", "message_key_at"]

MAX_CHAIN_INDEX = 1 << 20
"""A reader refuses to ratchet further than this (an epoch is rotated long before)."""


def _prf(key: bytes, purpose: Purpose) -> bytes:
    return hmac.digest(key, purpose.value, "sha256")


@dataclass(frozen=True, slots=True, repr=False)
class MessageKey:
    """A one-revision body key (32 bytes)."""

    raw: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.raw, bytes) or len(self.raw) != 32:
            raise TypeError("a message key is 32 bytes")

    def __repr__(self) -> str:
        return "MessageKey(<secret>)"


@dataclass(frozen=True, slots=True, repr=False)
class ChainKey:
    """A chain key (32 bytes); `advance` yields this step's message key and the next chain key."""

    raw: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.raw, bytes) or len(self.raw) != 32:
            raise TypeError("a chain key is 32 bytes")

    @classmethod
    def generate(cls) -> ChainKey:
        return cls(secrets.token_bytes(32))

    def advance(self) -> tuple[MessageKey, ChainKey]:
        return (
            MessageKey(_prf(self.raw, Purpose.CHAIN_MESSAGE)),
            ChainKey(_prf(self.raw, Purpose.CHAIN_NEXT)),
        )

    def __repr__(self) -> str:
        return "ChainKey(<secret>)"


def message_key_at(initial: ChainKey, index: int) -> MessageKey:
    """MK_index derived from CK0 (index >= 1). Raises ValueError out of range."""
    if not 1 <= index <= MAX_CHAIN_INDEX:
        raise ValueError("chain index out of range")
    chain = initial
    for _ in range(index - 1):
        chain = chain.advance()[1]
    return chain.advance()[0]
