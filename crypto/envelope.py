"""Sealed envelopes: the only unit of data a device sends about a report.

Theory of operation (docs/PROTOCOL.md §4):

    envelope      = CBOR [1, header_bytes, body, signature]
    header_bytes  = canonical CBOR map (see `Header`), the routing data the
                    server needs; nothing human-readable
    envelope_id   = SHA-256(tag_id || len(header_bytes) as u32 || header_bytes || body)
    header_hash   = SHA-256(tag_header || header_bytes)
    signature     = Ed25519(device, tag_sig || envelope_id)

Two kinds share the layout:
* ``rev`` (a report revision): body = ChaCha20-Poly1305(MK_i, nonce from the
  header, aad = header_hash, Padmé-padded content).
* ``key`` (a sender-key announcement): body = CBOR array of HPKE ciphertexts
  of CK0, one per recipient key id listed (sorted) in the header, each with
  info = tag_wrap || header_hash || recipient key id.  The header carries
  m = SHA-256(tag_commit || CK0), so the signature commits the device to one
  chain key: a reader whose wrap opens to another key gets
  `KeyCommitmentMismatch`, never a key (docs/PROTOCOL.md §4.3 "Key commitment").

Every header field is therefore covered three times: by the id, by the
signature, and (through header_hash) by the AEAD or HPKE context.  Swapping
bodies, headers or wraps between envelopes, reports or devices fails.

What is NOT protected: the header itself is cleartext to the server (ids,
sequence numbers, parents, sizes); the padded body length leaks its Padmé
bucket; timing of uploads is visible.  docs/THREAT_MODEL.md lists why each
is needed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import cbor2
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from crypto import encoding
from crypto.chain import ChainKey, MessageKey
from crypto.errors import KeyCommitmentMismatch, VerificationFailed
from crypto.keys import KemPrivateKey, KemPublicKey, SigningKey, VerifyKey
from crypto.padding import pad, unpad
from crypto.signed import digest
from crypto.suite import HPKE_SUITE, PROTOCOL_VERSION, SUITE_ID, Purpose

__all__ = [
    "MAX_BODY_LENGTH",
    "MAX_ENVELOPE_LENGTH",
    "MAX_PARENTS",
    "MAX_RECIPIENTS",
    "NO_WITNESS",
    "Envelope",
    "Header",
    "MalformedEnvelope",
    "accept_chain_key",
    "open_revision",
    "open_sender_key",
    "parse_envelope",
    "seal_revision",
    "seal_sender_key",
    "unwrap_chain_key",
    "wrap_chain_key",
]

ID_LENGTH = 16
HASH_LENGTH = 32
NONCE_LENGTH = 12
SIGNATURE_LENGTH = 64
MAX_PARENTS = 64
MAX_RECIPIENTS = 64
MAX_BODY_LENGTH = 4 * 1024 * 1024
MAX_ENVELOPE_LENGTH = MAX_BODY_LENGTH + 8192
MAX_SEQ = 2**53
ZERO_HASH = bytes(HASH_LENGTH)
WITNESS_LENGTH = 8 + HASH_LENGTH
MAX_LOG_SIZE = 2**63
NO_WITNESS = bytes(8) + hashlib.sha256(b"").digest()
"""A revision's log witness before its device verified any checkpoint: size 0, the empty
tree's root (PROTOCOL §4.1 ``w``, §17.8)."""

Kind = Literal["rev", "key"]


class MalformedEnvelope(VerificationFailed):
    """The bytes are not a well-formed v1 envelope. Carries a reason for the server's reply.

    Structure is public, so naming the broken rule leaks nothing; cryptographic
    failures stay opaque (`VerificationFailed`).
    """

    def __init__(self, reason: str) -> None:
        Exception.__init__(self, reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Header:
    """The cleartext routing header of an envelope (docs/PROTOCOL.md §4.1)."""

    kind: Kind
    org: bytes
    device: bytes
    seq: int
    prev: bytes
    roster_version: int
    report: bytes | None = None
    parents: tuple[bytes, ...] = ()
    key_seq: int | None = None
    nonce: bytes | None = None
    recipients: tuple[bytes, ...] = ()
    commitment: bytes | None = None
    witness: bytes | None = None  # rev: u64be(log size) || root, the device's newest checkpoint

    @property
    def witnessed_log(self) -> tuple[int, bytes] | None:
        """(size, root) of the log checkpoint the author had verified when it sealed."""
        if self.witness is None:
            return None
        return int.from_bytes(self.witness[:8], "big"), self.witness[8:]

    def to_cbor(self) -> bytes:
        fields: dict[str, Any] = {
            "v": PROTOCOL_VERSION,
            "s": SUITE_ID,
            "k": self.kind,
            "o": self.org,
            "d": self.device,
            "n": self.seq,
            "h": self.prev,
            "e": self.roster_version,
        }
        if self.kind == "rev":
            fields.update(
                r=self.report, p=list(self.parents), c=self.key_seq, x=self.nonce, w=self.witness
            )
        else:
            fields.update(t=list(self.recipients), m=self.commitment)
        header_bytes = encoding.encode(fields)
        _validate(encoding.decode(header_bytes))  # one rule set for writers and readers
        return header_bytes


def _bytes_of(value: Any, length: int, name: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != length:
        raise MalformedEnvelope(f"{name} must be {length} bytes")
    return value


def _int_of(value: Any, low: int, high: int, name: str) -> int:
    if type(value) is not int or not low <= value <= high:
        raise MalformedEnvelope(f"{name} must be an integer in [{low}, {high}]")
    return value


def _sorted_unique(items: Any, length: int, limit: int, name: str) -> tuple[bytes, ...]:
    if not isinstance(items, list) or len(items) > limit:
        raise MalformedEnvelope(f"{name} must be a list of at most {limit}")
    values = tuple(_bytes_of(item, length, name) for item in items)
    if any(a >= b for a, b in zip(values, values[1:], strict=False)):
        raise MalformedEnvelope(f"{name} must be sorted and unique")
    return values


_REV_KEYS = frozenset("vskodnhe" + "rpcxw")
_KEY_KEYS = frozenset("vskodnhe" + "tm")
_HEADER_KEYS = _REV_KEYS | _KEY_KEYS


def _validate(fields: Any) -> Header:
    if not isinstance(fields, dict):
        raise MalformedEnvelope("header must be a map")
    if fields.get("v") != PROTOCOL_VERSION or type(fields.get("v")) is not int:
        raise MalformedEnvelope("unsupported protocol version")
    if fields.get("s") != SUITE_ID or type(fields.get("s")) is not int:
        raise MalformedEnvelope("unsupported suite")
    kind = fields.get("k")
    if kind not in ("rev", "key"):
        raise MalformedEnvelope("unknown envelope kind")
    if fields.keys() != (_REV_KEYS if kind == "rev" else _KEY_KEYS):
        raise MalformedEnvelope("header has missing or unknown fields")
    seq = _int_of(fields["n"], 1, MAX_SEQ, "seq")
    prev = _bytes_of(fields["h"], HASH_LENGTH, "prev")
    if (seq == 1) != (prev == ZERO_HASH):
        raise MalformedEnvelope("prev must be zero exactly for seq 1")
    common = dict(
        org=_bytes_of(fields["o"], ID_LENGTH, "org"),
        device=_bytes_of(fields["d"], ID_LENGTH, "device"),
        seq=seq,
        prev=prev,
        roster_version=_int_of(fields["e"], 1, MAX_SEQ, "roster version"),
    )
    if kind == "key":
        recipients = _sorted_unique(fields["t"], ID_LENGTH, MAX_RECIPIENTS, "recipients")
        if not recipients:
            raise MalformedEnvelope("a sender key needs at least one recipient")
        commitment = _bytes_of(fields["m"], HASH_LENGTH, "key commitment")
        return Header(
            kind="key",
            recipients=recipients,
            commitment=commitment,
            **common,  # type: ignore[arg-type]
        )
    key_seq = _int_of(fields["c"], 1, MAX_SEQ, "key seq")
    if key_seq >= seq:
        raise MalformedEnvelope("key seq must precede seq")
    witness = _bytes_of(fields["w"], WITNESS_LENGTH, "log witness")
    if int.from_bytes(witness[:8], "big") > MAX_LOG_SIZE:
        raise MalformedEnvelope(f"the witnessed log size must be at most {MAX_LOG_SIZE}")
    return Header(
        kind="rev",
        report=_bytes_of(fields["r"], ID_LENGTH, "report"),
        parents=_sorted_unique(fields["p"], HASH_LENGTH, MAX_PARENTS, "parents"),
        key_seq=key_seq,
        nonce=_bytes_of(fields["x"], NONCE_LENGTH, "nonce"),
        witness=witness,
        **common,  # type: ignore[arg-type]
    )


def _envelope_id(header_bytes: bytes, body: bytes) -> bytes:
    h = hashlib.sha256(Purpose.ENVELOPE_ID.value + b"\x00")
    h.update(struct.pack(">I", len(header_bytes)))
    h.update(header_bytes)
    h.update(body)
    return h.digest()


def _header_hash(header_bytes: bytes) -> bytes:
    return hashlib.sha256(Purpose.HEADER_HASH.value + b"\x00" + header_bytes).digest()


@dataclass(frozen=True, slots=True)
class Envelope:
    """A parsed envelope. Parsing checks structure only; see `verify_signature`."""

    header: Header
    header_bytes: bytes
    body: bytes
    signature: bytes
    id: bytes
    header_hash: bytes
    # The public key this (immutable) envelope's signature verified under, once it has: the
    # same check again (`open_revision` after a view's ingest) answers without Ed25519.
    _verified_by: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def to_bytes(self) -> bytes:
        return encoding.encode([PROTOCOL_VERSION, self.header_bytes, self.body, self.signature])

    def verify_signature(self, author: VerifyKey) -> None:
        """Raise `VerificationFailed` unless ``author`` signed this envelope and owns its
        device id."""
        if not isinstance(author, VerifyKey):
            raise TypeError("author must be a VerifyKey")
        if author.key_id != self.header.device:
            raise VerificationFailed()
        if self._verified_by is not None and hmac.compare_digest(self._verified_by, author.raw):
            return
        author.verify(Purpose.ENVELOPE_SIGNATURE, self.id, self.signature)
        object.__setattr__(self, "_verified_by", author.raw)


def _byte_string_at(data: bytes, at: int) -> tuple[bytes, int] | None:
    """The CBOR byte string at ``at`` and the offset after it, if its head is canonical
    (the shortest length form); None for anything else."""
    if at >= len(data):
        return None
    head = data[at]
    if 0x40 <= head <= 0x57:
        length, start = head - 0x40, at + 1
    elif head == 0x58 and at + 2 <= len(data) and data[at + 1] >= 24:
        length, start = data[at + 1], at + 2
    elif head == 0x59 and at + 3 <= len(data):
        length, start = int.from_bytes(data[at + 1 : at + 3], "big"), at + 3
        if length < 0x100:
            return None
    elif head == 0x5A and at + 5 <= len(data):
        length, start = int.from_bytes(data[at + 1 : at + 5], "big"), at + 5
        if length < 0x10000:
            return None
    else:  # 8-byte lengths are over MAX_ENVELOPE_LENGTH; indefinite ones never canonical
        return None
    end = start + length
    return (data[start:end], end) if end <= len(data) else None


def _split_canonical(data: bytes) -> tuple[bytes, bytes, bytes] | None:
    """``(header_bytes, body, signature)`` if ``data`` is exactly the canonical encoding
    of ``[1, bytes, bytes, bytes(64)]``, else None (`parse_envelope` then takes the general
    path, which names the problem).  What this accepts the general decoder accepts with
    the same values (`tests/crypto/test_envelope_fast_path.py`); it skips decoding and
    re-encoding the whole envelope, a third of the cost of a parse on the push path."""
    if data[:2] != b"\x84\x01":
        return None
    header = _byte_string_at(data, 2)
    if header is None:
        return None
    body = _byte_string_at(data, header[1])
    if body is None:
        return None
    if data[body[1] : body[1] + 2] != b"\x58\x40" or len(data) != body[1] + 2 + SIGNATURE_LENGTH:
        return None
    return header[0], body[0], data[body[1] + 2 :]


def _canonical_header_fields(header_bytes: bytes) -> Any:
    """The header map, if ``header_bytes`` is one canonical CBOR map whose keys are
    header field names (one-character text strings) in canonical order; None otherwise (take
    the general path).

    For such a map the canonical encoding is cbor2's plain encoding of the decoded value
    (cbor2 writes the shortest heads and keeps the decoded key order, which is checked
    here), so the canonical re-encoding, which sorts, is not needed.  The field types are
    `_validate`'s to check: it accepts only ints, text, byte strings and lists of bytes."""
    try:
        fields = cbor2.loads(
            header_bytes,
            max_depth=encoding.MAX_DEPTH,
            allow_indefinite=False,
            allow_duplicate_keys=False,
        )
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError):
        return None
    if type(fields) is not dict or not fields.keys() <= _HEADER_KEYS:
        return None
    keys = list(fields)
    if keys != sorted(keys) or cbor2.dumps(fields) != header_bytes:
        return None
    return fields


def parse_envelope(data: bytes) -> Envelope:
    """Parse and structurally validate envelope bytes.

    Raises:
        MalformedEnvelope: with a reason, for any structural violation.
    """
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError("data must be bytes")
    if len(data) > MAX_ENVELOPE_LENGTH:
        raise MalformedEnvelope("envelope too large")
    data = bytes(data)
    parts = _split_canonical(data)
    if parts is not None and len(parts[1]) <= MAX_BODY_LENGTH:
        fields = _canonical_header_fields(parts[0])
        if fields is not None:
            try:
                return _assemble(_validate(fields), *parts)
            except MalformedEnvelope:
                pass  # refused: the general path gives the same verdict and says why
    return _parse_general(data)


def _assemble(header: Header, header_bytes: bytes, body: bytes, signature: bytes) -> Envelope:
    return Envelope(
        header=header,
        header_bytes=header_bytes,
        body=body,
        signature=signature,
        id=_envelope_id(header_bytes, body),
        header_hash=_header_hash(header_bytes),
    )


def _parse_general(data: bytes) -> Envelope:
    """`parse_envelope` through the general canonical decoder, which names what is wrong."""
    try:
        outer = encoding.decode(bytes(data))
    except encoding.CanonicalError as exc:
        raise MalformedEnvelope("envelope is not canonical CBOR") from exc
    if not isinstance(outer, list) or len(outer) != 4 or type(outer[0]) is not int:
        raise MalformedEnvelope("envelope must be [1, header, body, signature]")
    if outer[0] != PROTOCOL_VERSION:  # (a CBOR `true` equals 1 in Python: hence the type check)
        raise MalformedEnvelope("envelope must be [1, header, body, signature]")
    _, header_bytes, body, signature = outer
    if not isinstance(header_bytes, bytes) or not isinstance(body, bytes):
        raise MalformedEnvelope("header and body must be byte strings")
    if len(body) > MAX_BODY_LENGTH:
        raise MalformedEnvelope("body too large")
    _bytes_of(signature, SIGNATURE_LENGTH, "signature")
    try:
        fields = encoding.decode(header_bytes)
    except encoding.CanonicalError as exc:
        raise MalformedEnvelope("header is not canonical CBOR") from exc
    header = _validate(fields)
    return _assemble(header, header_bytes, body, signature)


def _finish(header_bytes: bytes, body: bytes, signing_key: SigningKey) -> Envelope:
    envelope_id = _envelope_id(header_bytes, body)
    signature = signing_key.sign(Purpose.ENVELOPE_SIGNATURE, envelope_id)
    return parse_envelope(encoding.encode([PROTOCOL_VERSION, header_bytes, body, signature]))


def seal_revision(
    *,
    org: bytes,
    report: bytes,
    parents: Sequence[bytes],
    seq: int,
    prev: bytes,
    roster_version: int,
    key_seq: int,
    message_key: MessageKey,
    content: bytes,
    signing_key: SigningKey,
    witness: bytes = NO_WITNESS,
) -> Envelope:
    """Seal one report revision's ``content`` for the coordinators holding the epoch's chain key.

    ``message_key`` must be MK_(seq - key_seq) of the chain announced at ``key_seq``.
    ``witness`` is ``u64be(size) || root`` of the newest log checkpoint the device verified
    (PROTOCOL §17.8): signed with the revision, it carries the device's view of the log to
    every coordinator that reads it.
    The caller must persist that the key is used before the envelope leaves the
    device; a fresh random nonce makes an accidental reuse harmless anyway.
    """
    return _seal_revision_from_parts(
        org=org,
        report=report,
        parents=parents,
        seq=seq,
        prev=prev,
        roster_version=roster_version,
        key_seq=key_seq,
        message_key=message_key,
        content=content,
        signing_key=signing_key,
        nonce=secrets.token_bytes(NONCE_LENGTH),
        witness=witness,
    )


def _seal_revision_from_parts(
    *,
    org: bytes,
    report: bytes,
    parents: Sequence[bytes],
    seq: int,
    prev: bytes,
    roster_version: int,
    key_seq: int,
    message_key: MessageKey,
    content: bytes,
    signing_key: SigningKey,
    nonce: bytes,
    witness: bytes = NO_WITNESS,
) -> Envelope:
    if not isinstance(message_key, MessageKey) or not isinstance(signing_key, SigningKey):
        raise TypeError("message_key must be a MessageKey and signing_key a SigningKey")
    if not isinstance(content, bytes):
        raise TypeError("content must be bytes")
    header = Header(
        kind="rev",
        org=org,
        device=signing_key.verify_key.key_id,
        seq=seq,
        prev=prev,
        roster_version=roster_version,
        report=report,
        parents=tuple(sorted(set(parents))),
        key_seq=key_seq,
        nonce=nonce,
        witness=witness,
    )
    header_bytes = header.to_cbor()
    body = ChaCha20Poly1305(message_key.raw).encrypt(
        nonce, pad(content), _header_hash(header_bytes)
    )
    if len(body) > MAX_BODY_LENGTH:
        raise ValueError("content too large for one revision")
    return _finish(header_bytes, body, signing_key)


def open_revision(envelope: Envelope, *, author: VerifyKey, message_key: MessageKey) -> bytes:
    """Verify ``envelope`` was signed by ``author`` and return its content.

    Raises:
        VerificationFailed: on any signature, tag, padding or kind failure.
    """
    if not isinstance(envelope, Envelope) or not isinstance(message_key, MessageKey):
        raise TypeError("envelope must be an Envelope and message_key a MessageKey")
    envelope.verify_signature(author)
    if envelope.header.kind != "rev" or envelope.header.nonce is None:
        raise VerificationFailed()
    try:
        padded = ChaCha20Poly1305(message_key.raw).decrypt(
            envelope.header.nonce, envelope.body, envelope.header_hash
        )
        return unpad(padded)
    except (InvalidTag, ValueError) as exc:
        raise VerificationFailed() from exc


def _wrap_info(header_hash: bytes, recipient_id: bytes) -> bytes:
    return Purpose.SENDER_KEY_WRAP.value + b"\x00" + header_hash + recipient_id


def _key_commitment(raw_chain_key: bytes) -> bytes:
    """``m`` of a key envelope header: SHA-256("sealbox/v1/key-commitment" || 0x00 || CK0)."""
    return digest(Purpose.KEY_COMMITMENT, raw_chain_key)


def seal_sender_key(
    *,
    org: bytes,
    seq: int,
    prev: bytes,
    roster_version: int,
    chain_key: ChainKey,
    recipients: Sequence[KemPublicKey],
    signing_key: SigningKey,
) -> Envelope:
    """Announce a new epoch: wrap CK0 once to each recipient with HPKE and commit to it in the
    signed header (docs/PROTOCOL.md §4.3)."""
    if not isinstance(chain_key, ChainKey):
        raise TypeError("chain_key must be a ChainKey")
    if not recipients or not all(isinstance(r, KemPublicKey) for r in recipients):
        raise TypeError("recipients must be a non-empty sequence of KemPublicKey")
    return _seal_sender_key_from_parts(
        org=org,
        seq=seq,
        prev=prev,
        roster_version=roster_version,
        committed=chain_key,
        wrapped=[(r, chain_key) for r in recipients],
        signing_key=signing_key,
    )


def _seal_sender_key_from_parts(
    *,
    org: bytes,
    seq: int,
    prev: bytes,
    roster_version: int,
    committed: ChainKey,
    wrapped: Sequence[tuple[KemPublicKey, ChainKey]],
    signing_key: SigningKey,
) -> Envelope:
    """The seam under `seal_sender_key`: the header commits to ``committed`` and each
    recipient's wrap holds its own chain key.  An honest sealer passes one key for all;
    tests pass different ones to play an author who equivocates on CK0 (THREAT_MODEL §7.11)."""
    if not isinstance(signing_key, SigningKey):
        raise TypeError("signing_key must be a SigningKey")
    by_id = {r.key_id: (r, k) for r, k in wrapped}
    header = Header(
        kind="key",
        org=org,
        device=signing_key.verify_key.key_id,
        seq=seq,
        prev=prev,
        roster_version=roster_version,
        recipients=tuple(sorted(by_id)),
        commitment=_key_commitment(committed.raw),
    )
    header_bytes = header.to_cbor()
    header_hash = _header_hash(header_bytes)
    wraps = [
        wrap_chain_key(by_id[rid][1], by_id[rid][0], info=_wrap_info(header_hash, rid))
        for rid in header.recipients
    ]
    return _finish(header_bytes, encoding.encode(wraps), signing_key)


def open_sender_key(envelope: Envelope, *, author: VerifyKey, recipient: KemPrivateKey) -> ChainKey:
    """Verify a sender-key announcement, unwrap CK0 for ``recipient`` and check the header's
    commitment to it before returning it (docs/PROTOCOL.md §4.3, §4.5).

    Raises:
        KeyCommitmentMismatch: the wrap opened, but not to the key the signed header commits
            to (the author gave coordinators different keys); no key is returned.
        VerificationFailed: bad signature, not addressed to ``recipient``, or wrap fails.
    """
    if not isinstance(envelope, Envelope) or not isinstance(recipient, KemPrivateKey):
        raise TypeError("envelope must be an Envelope and recipient a KemPrivateKey")
    envelope.verify_signature(author)
    header = envelope.header
    rid = recipient.public_key.key_id
    if header.kind != "key" or rid not in header.recipients:
        raise VerificationFailed()
    try:
        wraps = encoding.decode(envelope.body)
    except encoding.CanonicalError as exc:
        raise VerificationFailed() from exc
    if not isinstance(wraps, list) or len(wraps) != len(header.recipients):
        raise VerificationFailed()
    wrap = wraps[header.recipients.index(rid)]
    if not isinstance(wrap, bytes):
        raise VerificationFailed()
    raw = unwrap_chain_key(wrap, recipient, info=_wrap_info(envelope.header_hash, rid))
    return accept_chain_key(envelope, raw)


def accept_chain_key(envelope: Envelope, raw: bytes) -> ChainKey:
    """CK0 of the key envelope ``envelope``, if ``raw`` is the key its signed header commits
    to (``m``, compared in constant time): the one place a chain key is accepted, whether it
    came from the envelope's own wrap or from a grant (PROTOCOL §4.3 item 7, §19).

    The caller has verified the envelope's signature.

    Raises:
        KeyCommitmentMismatch: ``raw`` is not the committed key; nothing may be derived.
        VerificationFailed: ``envelope`` is not a key envelope, or ``raw`` not a chain key.
    """
    header = envelope.header
    if header.kind != "key" or header.commitment is None:
        raise VerificationFailed()
    try:
        chain_key = ChainKey(raw)
    except (ValueError, TypeError) as exc:
        raise VerificationFailed() from exc
    if not hmac.compare_digest(_key_commitment(chain_key.raw), header.commitment):
        raise KeyCommitmentMismatch()
    return chain_key


def wrap_chain_key(chain_key: ChainKey, recipient: KemPublicKey, *, info: bytes) -> bytes:
    """HPKE single-shot seal of a chain key to ``recipient``: ``enc || ciphertext`` (1,168
    bytes in suite 1), bound to ``info`` (PROTOCOL §4.3, §19)."""
    if not isinstance(chain_key, ChainKey) or not isinstance(recipient, KemPublicKey):
        raise TypeError("chain_key must be a ChainKey and recipient a KemPublicKey")
    return HPKE_SUITE.encrypt(chain_key.raw, recipient._hpke_key(), info=bytes(info))


def unwrap_chain_key(wrap: bytes, recipient: KemPrivateKey, *, info: bytes) -> bytes:
    """Open a `wrap_chain_key` wrap. Its result is not yet a trusted key: pass it to
    `accept_chain_key` with the key envelope it claims to be of.

    Raises:
        VerificationFailed: the wrap does not open for ``recipient`` under ``info``.
    """
    if not isinstance(wrap, bytes) or not isinstance(recipient, KemPrivateKey):
        raise VerificationFailed()
    try:
        return HPKE_SUITE.decrypt(wrap, recipient._hpke_key(), info=bytes(info))
    except (InvalidTag, ValueError, TypeError) as exc:
        raise VerificationFailed() from exc
