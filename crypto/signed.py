"""Signed documents: rosters, invites, receipts, checkpoints and freshness statements share one
detached layout.

Theory of operation (docs/PROTOCOL.md §3):

    signed_document = CBOR [1, purpose, body, signer_key_id, signature]
    signature       = Ed25519(signer, purpose_tag || 0x00 || body)

``body`` is the exact canonical CBOR the signer produced; readers verify those
bytes and only then decode them, so nothing is ever re-serialised before a
check.  ``purpose`` names which `Purpose` tag the signature was made for; a
reader passes the purpose it expects and a document signed for another purpose
never verifies.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from crypto import encoding
from crypto.errors import VerificationFailed
from crypto.keys import SigningKey, VerifyKey
from crypto.suite import PROTOCOL_VERSION, Purpose

__all__ = ["MAX_DOCUMENT_LENGTH", "SignedDocument", "digest", "sign_document"]

MAX_DOCUMENT_LENGTH = 1024 * 1024

_PURPOSE_NAMES = {
    Purpose.ROSTER_SIGNATURE: "roster",
    Purpose.INVITE_SIGNATURE: "invite",
    Purpose.INVITE_CANCEL_SIGNATURE: "invite-cancel",
    Purpose.RECEIPT_SIGNATURE: "receipt",
    Purpose.CHECKPOINT_SIGNATURE: "checkpoint",
    Purpose.ENROLLMENT_SIGNATURE: "enrollment",
    Purpose.FRESHNESS_SIGNATURE: "freshness",
    Purpose.EVIDENCE_SIGNATURE: "evidence",
    Purpose.GRANT_SIGNATURE: "grant",
    Purpose.ROTATION_SIGNATURE: "rotation",
}
_BY_NAME = {name: purpose for purpose, name in _PURPOSE_NAMES.items()}


def digest(purpose: Purpose, data: bytes) -> bytes:
    """Tagged SHA-256: ``SHA-256(purpose_tag || 0x00 || data)``."""
    hasher = digest_hasher(purpose)
    hasher.update(data)
    return hasher.digest()


def digest_hasher(purpose: Purpose) -> hashlib._Hash:
    """`digest` for data that comes in pieces: ``update`` each, then ``digest()``."""
    if not isinstance(purpose, Purpose):
        raise TypeError("purpose must be a crypto.Purpose")
    return hashlib.sha256(purpose.value + b"\x00")


@dataclass(frozen=True, slots=True)
class SignedDocument:
    """A parsed, not yet verified, signed document."""

    purpose: Purpose
    body: bytes
    signer: bytes
    signature: bytes

    def to_bytes(self) -> bytes:
        return encoding.encode(
            [PROTOCOL_VERSION, _PURPOSE_NAMES[self.purpose], self.body, self.signer, self.signature]
        )

    @classmethod
    def parse(cls, data: bytes, purpose: Purpose) -> SignedDocument:
        """Parse ``data`` as a document signed for ``purpose``. Raises `VerificationFailed`."""
        if not isinstance(data, (bytes, bytearray)) or len(data) > MAX_DOCUMENT_LENGTH:
            raise VerificationFailed()
        try:
            outer = encoding.decode(bytes(data))
        except encoding.CanonicalError as exc:
            raise VerificationFailed() from exc
        if not isinstance(outer, list) or len(outer) != 5 or type(outer[0]) is not int:
            raise VerificationFailed()
        if outer[0] != PROTOCOL_VERSION:  # type() above: a CBOR `true` equals 1 in Python
            raise VerificationFailed()
        _, name, body, signer, signature = outer
        if not isinstance(name, str) or _BY_NAME.get(name) is not purpose:
            raise VerificationFailed()
        if not (
            isinstance(body, bytes)
            and isinstance(signer, bytes)
            and len(signer) == 16
            and isinstance(signature, bytes)
            and len(signature) == 64
        ):
            raise VerificationFailed()
        return cls(purpose=purpose, body=body, signer=signer, signature=signature)

    def verify(self, key: VerifyKey) -> Any:
        """Check the signature with ``key`` (which must own ``signer``); return the
        decoded body."""
        if not isinstance(key, VerifyKey):
            raise TypeError("key must be a VerifyKey")
        if key.key_id != self.signer:
            raise VerificationFailed()
        key.verify(self.purpose, self.body, self.signature)
        try:
            return encoding.decode(self.body)
        except encoding.CanonicalError as exc:
            raise VerificationFailed() from exc

    def unverified_body(self) -> Any:
        """Decode the body without checking the signature: only to find which key to verify with."""
        try:
            return encoding.decode(self.body)
        except encoding.CanonicalError as exc:
            raise VerificationFailed() from exc


def sign_document(purpose: Purpose, body: Any, signing_key: SigningKey) -> SignedDocument:
    """Encode ``body`` canonically and sign it for ``purpose``."""
    if purpose not in _PURPOSE_NAMES:
        raise ValueError("this purpose is not a document purpose")
    if not isinstance(signing_key, SigningKey):
        raise TypeError("signing_key must be a SigningKey")
    body_bytes = encoding.encode(body)
    return SignedDocument(
        purpose=purpose,
        body=body_bytes,
        signer=signing_key.verify_key.key_id,
        signature=signing_key.sign(purpose, body_bytes),
    )
