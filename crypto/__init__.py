"""Sealbox's cryptographic recipe (protocol v1, suite 1). No I/O, no clock, no environment.

The public surface is deliberately small (docs/PROTOCOL.md §2-§5):

* keys:       `SigningKey`/`VerifyKey` (Ed25519), `KemPrivateKey`/`KemPublicKey`
              (HPKE MLKEM768-X25519), `ChainKey`/`MessageKey` (the sender-key chain)
* envelopes:  `seal_sender_key`/`open_sender_key`, `seal_revision`/`open_revision`,
              `parse_envelope`
* documents:  `sign_document`, `SignedDocument` (rosters, invites, receipts, enrollments)
* local keys: `wrap_keyfile`/`unwrap_keyfile` (Argon2id + ChaCha20-Poly1305)
* attachments: `seal_chunks`/`open_chunks` (STREAM chunks), `new_attachment_key`, `manifest_of`
* one failure: `VerificationFailed` (`MalformedEnvelope` is its structural subclass,
              `KeyCommitmentMismatch` the one for a key envelope whose wraps disagree)

What is not protected, by design: envelope headers are cleartext routing data,
body lengths leak their Padmé bucket, and request timing is visible to the
server (docs/THREAT_MODEL.md §4).
"""

from __future__ import annotations

from crypto.chain import ChainKey, MessageKey, message_key_at
from crypto.envelope import (
    Envelope,
    Header,
    MalformedEnvelope,
    accept_chain_key,
    open_revision,
    open_sender_key,
    parse_envelope,
    seal_revision,
    seal_sender_key,
    unwrap_chain_key,
    wrap_chain_key,
)
from crypto.errors import KeyCommitmentMismatch, VerificationFailed
from crypto.keyfile import DEFAULT_KDF, KdfParams, unwrap_keyfile, wrap_keyfile
from crypto.keys import KemPrivateKey, KemPublicKey, SigningKey, VerifyKey, key_id
from crypto.signed import SignedDocument, digest, sign_document
from crypto.stream import manifest_of, new_attachment_key, open_chunks, seal_chunks
from crypto.suite import PROTOCOL_VERSION, SUITE_ID, Purpose

__all__ = [
    "DEFAULT_KDF",
    "PROTOCOL_VERSION",
    "SUITE_ID",
    "ChainKey",
    "Envelope",
    "Header",
    "KdfParams",
    "KemPrivateKey",
    "KemPublicKey",
    "KeyCommitmentMismatch",
    "MalformedEnvelope",
    "MessageKey",
    "Purpose",
    "SignedDocument",
    "SigningKey",
    "VerificationFailed",
    "VerifyKey",
    "accept_chain_key",
    "digest",
    "key_id",
    "manifest_of",
    "message_key_at",
    "new_attachment_key",
    "open_chunks",
    "open_revision",
    "open_sender_key",
    "parse_envelope",
    "seal_chunks",
    "seal_revision",
    "seal_sender_key",
    "sign_document",
    "unwrap_chain_key",
    "unwrap_keyfile",
    "wrap_chain_key",
    "wrap_keyfile",
]
