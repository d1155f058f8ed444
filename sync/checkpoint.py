"""Signed checkpoints: the server's signed statement of its organisation log's current state.

Theory of operation (docs/_draft_tlog.md, to become PROTOCOL §17):
* A checkpoint is a signed document (PROTOCOL §3, purpose ``"checkpoint"``, tag
  ``sealbox/v1/sig/checkpoint``) signed by the server's receipt key (``sv``, pinned in the
  roster) over the canonical CBOR body ``{o: org id, n: tree size, r: root hash, t: issued
  at}``: "the log of organisation o has n leaves and root r" (`sync.merkle`).
* It is modelled on C2SP tlog-checkpoint carried in a C2SP signed-note: the note's *origin*
  line is ``o``, its *size* and *root hash* lines are ``n`` and ``r``, its signature line
  (key name, 4-byte key hash, Ed25519 signature over the note text) is the document's
  ``signer`` (16-byte key id) and Ed25519 signature over ``tag || 0x00 || body``; ``t`` is
  extra (the server's clock, for freshness, never for ordering). It keeps Sealbox's one
  signed-document layout, so it is *not* a C2SP note on the wire, only the same statement.
* Two verified checkpoints of one organisation and one size with different roots are a
  *fork*: the server signed two histories, conclusive proof of a split view (`is_fork`).
  Of different sizes, only a consistency proof (`sync.merkle.verify_consistency`) relates
  them; a server that cannot give one has rewritten history.
* `Checkpoint.short_code` is for people comparing by phone: the size and 16 digits of a
  tagged digest of (org, size, root).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from crypto import (
    Purpose,
    SignedDocument,
    SigningKey,
    VerificationFailed,
    VerifyKey,
    digest,
    sign_document,
)
from sync.merkle import EMPTY_ROOT, HASH_LENGTH, MAX_TREE_SIZE

__all__ = ["CODE_DIGITS", "Checkpoint", "is_fork"]

CODE_DIGITS = 16
"""Digits of the root's digest in a short code (about 53 bits; see `Checkpoint.short_code`)."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    org_id: bytes
    size: int
    root: bytes
    issued_at: int

    def __post_init__(self) -> None:
        if not _valid(self.org_id, self.size, self.root, self.issued_at):
            raise ValueError(
                "a checkpoint needs a 16-byte org id, a size in [0, 2^63], a 32-byte "
                "root (the empty root for size 0) and a time >= 0"
            )

    def to_cbor(self) -> dict[str, Any]:
        return {"o": self.org_id, "n": self.size, "r": self.root, "t": self.issued_at}

    @classmethod
    def from_cbor(cls, raw: Any) -> Checkpoint:
        """The checkpoint of a decoded body. Raises `VerificationFailed` on any other shape."""
        if not isinstance(raw, dict) or set(raw) != {"o", "n", "r", "t"}:
            raise VerificationFailed()
        if not _valid(raw["o"], raw["n"], raw["r"], raw["t"]):
            raise VerificationFailed()
        return cls(raw["o"], raw["n"], raw["r"], raw["t"])

    def sign(self, server_key: SigningKey) -> SignedDocument:
        return sign_document(Purpose.CHECKPOINT_SIGNATURE, self.to_cbor(), server_key)

    @classmethod
    def verify(cls, data: bytes, server_key: VerifyKey, *, org_id: bytes) -> Checkpoint:
        """Check a checkpoint's signature by the pinned server key and that it is this
        organisation's.

        Raises:
            VerificationFailed: if either does not hold, or the body is malformed.
        """
        body = SignedDocument.parse(data, Purpose.CHECKPOINT_SIGNATURE).verify(server_key)
        checkpoint = cls.from_cbor(body)
        if checkpoint.org_id != org_id:
            raise VerificationFailed()
        return checkpoint

    @staticmethod
    def size_of(data: bytes) -> int:
        """The tree size a signed checkpoint states, *without* checking its signature: only
        for the server's own stored checkpoints. Raises `VerificationFailed` if malformed."""
        document = SignedDocument.parse(data, Purpose.CHECKPOINT_SIGNATURE)
        return Checkpoint.from_cbor(document.unverified_body()).size

    def short_code(self) -> str:
        """``"<size>:dddd-dddd-dddd-dddd"``, e.g. ``"1234:5821-0937-4410-2231"``.

        The digits are ``int.from_bytes(D[:8], "big") mod 10^16``, zero-padded, where
        ``D = SHA-256("sealbox/v1/checkpoint-code" || 0x00 || org id || u64be(size) ||
        root)``. ``t`` is left out, so checkpoints of one tree issued at different times give
        the same code. Two people whose codes differ for the same size hold a fork (if both
        checkpoints verified). Equal codes are strong but not conclusive: 16 digits are about
        53 bits, and a server that controls both views could grind ~2^27 variants of each to
        find two trees with one code; the signed checkpoints themselves (`is_fork`) are the
        proof to keep.
        """
        message = self.org_id + struct.pack(">Q", self.size) + self.root
        value = int.from_bytes(digest(Purpose.CHECKPOINT_CODE, message)[:8], "big")
        digits = f"{value % 10**CODE_DIGITS:0{CODE_DIGITS}d}"
        return f"{self.size}:" + "-".join(digits[i : i + 4] for i in range(0, CODE_DIGITS, 4))


def is_fork(a: Checkpoint, b: Checkpoint) -> bool:
    """Same organisation and size, different roots: conclusive evidence of a split view
    (given that both were verified with the server key)."""
    return a.org_id == b.org_id and a.size == b.size and a.root != b.root


def _valid(org_id: object, size: object, root: object, issued_at: object) -> bool:
    return (
        isinstance(org_id, bytes)
        and len(org_id) == 16
        and type(size) is int
        and 0 <= size <= MAX_TREE_SIZE
        and isinstance(root, bytes)
        and len(root) == HASH_LENGTH
        and (size > 0 or root == EMPTY_ROOT)
        and type(issued_at) is int
        and issued_at >= 0
    )
