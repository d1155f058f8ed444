"""Protocol v1's one pinned cipher suite and its domain-separation tags.

Theory of operation: every object Sealbox signs, hashes or encrypts is bound to
the protocol version and to its own purpose by a tag from `Purpose`.  A
signature made for a roster can therefore never verify as an envelope, a
header hash never equals an id, and so on.  There is no negotiation: a reader
that meets a version or suite other than these rejects the object
(docs/PROTOCOL.md §2).
"""

from __future__ import annotations

from enum import Enum

from cryptography.hazmat.primitives import hpke

__all__ = [
    "HPKE_ENC_LENGTH",
    "HPKE_SUITE",
    "PROTOCOL_VERSION",
    "SUITE_ID",
    "Purpose",
]

PROTOCOL_VERSION = 1
"""The only protocol version this code speaks."""

SUITE_ID = 1
"""Suite 1 = HPKE(MLKEM768-X25519, HKDF-SHA256, ChaCha20-Poly1305) for key wraps,
ChaCha20-Poly1305 for bodies and chunks, Ed25519, SHA-256, HMAC-SHA256 chains,
Argon2id for local key files."""

HPKE_SUITE = hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
HPKE_ENC_LENGTH = hpke.KEM.MLKEM768_X25519.enc_length()  # 1,120 bytes


class Purpose(bytes, Enum):
    """Domain-separation tags: one per kind of signed, hashed or derived object."""

    ENVELOPE_ID = b"sealbox/v1/envelope-id"
    HEADER_HASH = b"sealbox/v1/header-hash"
    ENVELOPE_SIGNATURE = b"sealbox/v1/sig/envelope"
    ROSTER_SIGNATURE = b"sealbox/v1/sig/roster"
    ROSTER_FINGERPRINT = b"sealbox/v1/roster-fingerprint"
    INVITE_SIGNATURE = b"sealbox/v1/sig/invite"
    INVITE_CANCEL_SIGNATURE = b"sealbox/v1/sig/invite-cancel"
    ENROLLMENT_SIGNATURE = b"sealbox/v1/sig/enrollment"
    INVITE_SECRET = b"sealbox/v1/invite-secret"
    RECEIPT_SIGNATURE = b"sealbox/v1/sig/receipt"
    CHECKPOINT_SIGNATURE = b"sealbox/v1/sig/checkpoint"
    CHECKPOINT_CODE = b"sealbox/v1/checkpoint-code"
    FRESHNESS_SIGNATURE = b"sealbox/v1/sig/freshness"
    SENDER_KEY_WRAP = b"sealbox/v1/hpke/sender-key"
    CHAIN_MESSAGE = b"sealbox/v1/chain/message"
    CHAIN_NEXT = b"sealbox/v1/chain/next"
    KEYFILE = b"sealbox/v1/keyfile"
    LABEL = b"sealbox/v1/label"
    ATTACHMENT_CHUNK = b"sealbox/v1/attachment-chunk"
    KEY_FINGERPRINT = b"sealbox/v1/key-fingerprint"
    KEY_COMMITMENT = b"sealbox/v1/key-commitment"
    EVIDENCE_SIGNATURE = b"sealbox/v1/sig/evidence"
    EVIDENCE_CONTENTS = b"sealbox/v1/evidence-contents"
    RECOVERY_SIGNING = b"sealbox/v1/recovery/signing"
    RECOVERY_HPKE = b"sealbox/v1/recovery/hpke"
    CARRIED_FILE = b"sealbox/v1/carried-file"
    GRANT_SIGNATURE = b"sealbox/v1/sig/grant"
    GRANT_WRAP = b"sealbox/v1/hpke/grant"
    GRANT_ID = b"sealbox/v1/grant-id"
    ROTATION_SIGNATURE = b"sealbox/v1/sig/rotation"
