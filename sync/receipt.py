"""Delivery receipts: the server's signed statement of what it durably stored.

Theory of operation (docs/PROTOCOL.md §8.4, §17.3):
* Inside the push transaction, returned after it commits, the server signs, with its
  own Ed25519 key (pinned in the roster as ``sv``), a receipt document
  {org, device, time, items: [[envelope id, device seq, server seq], ...],
  checkpoint, proof} listing every envelope of the batch it holds (created or
  duplicate), the signed checkpoint of its transparency log after the push, and a
  batch inclusion proof of those envelopes in that checkpoint's tree.
* A field device that holds a valid receipt for an envelope may purge its copy:
  the receipt is its proof of delivery, and a coordinator who later finds the
  envelope missing can show the server lied (docs/THREAT_MODEL.md §3.2); a server
  that later removes it from its log cannot prove the log consistent with the
  receipt's checkpoint (§17.6).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from crypto import Purpose, SignedDocument, SigningKey, VerificationFailed, VerifyKey, sign_document
from sync.checkpoint import Checkpoint
from sync.merkle import ProofError, leaf_hash, verify_batch_inclusion

__all__ = ["Receipt", "ReceiptItem"]


@dataclass(frozen=True, slots=True)
class ReceiptItem:
    envelope_id: bytes
    device_seq: int
    server_seq: int


@dataclass(frozen=True, slots=True)
class Receipt:
    org_id: bytes
    device_id: bytes
    issued_at: int
    items: tuple[ReceiptItem, ...]
    checkpoint: bytes  # the signed checkpoint document after the push (PROTOCOL §17.2)
    proof: tuple[bytes, ...]  # batch inclusion proof of the items in that tree (§17.1)

    def to_cbor(self) -> dict[str, Any]:
        return {
            "o": self.org_id,
            "d": self.device_id,
            "t": self.issued_at,
            "i": [[i.envelope_id, i.device_seq, i.server_seq] for i in self.items],
            "c": self.checkpoint,
            "p": list(self.proof),
        }

    @classmethod
    def from_cbor(cls, raw: Any) -> Receipt:
        if (
            not isinstance(raw, dict)
            or set(raw) != {"o", "d", "t", "i", "c", "p"}
            or not isinstance(raw["i"], list)
            or not isinstance(raw["c"], bytes)
            or not isinstance(raw["p"], list)
            or not all(isinstance(h, bytes) and len(h) == 32 for h in raw["p"])
        ):
            raise VerificationFailed()
        items = []
        for item in raw["i"]:
            if not (
                isinstance(item, list)
                and len(item) == 3
                and isinstance(item[0], bytes)
                and len(item[0]) == 32
                and type(item[1]) is int
                and type(item[2]) is int
            ):
                raise VerificationFailed()
            items.append(ReceiptItem(item[0], item[1], item[2]))
        if type(raw["t"]) is not int:
            raise VerificationFailed()
        return cls(raw["o"], raw["d"], raw["t"], tuple(items), raw["c"], tuple(raw["p"]))

    def sign(self, server_key: SigningKey) -> SignedDocument:
        return sign_document(Purpose.RECEIPT_SIGNATURE, self.to_cbor(), server_key)

    @classmethod
    def verify(
        cls, data: bytes, server_key: VerifyKey, *, org_id: bytes, device_id: bytes
    ) -> Receipt:
        """Check a receipt's signature and that it is addressed to this device.

        Raises:
            VerificationFailed: if either does not hold.
        """
        receipt, _ = cls.verify_logged(data, server_key, org_id=org_id, device_id=device_id)
        return receipt

    @classmethod
    def verify_logged(
        cls, data: bytes, server_key: VerifyKey, *, org_id: bytes, device_id: bytes
    ) -> tuple[Receipt, Checkpoint]:
        """`verify`, and that the receipt's checkpoint is the server's, of this organisation,
        and that its tree holds every item at leaf ``server_seq - 1`` (PROTOCOL §17.6 item 1).

        Raises:
            VerificationFailed: if any of it does not hold.
        """
        receipt = cls.from_cbor(
            SignedDocument.parse(data, Purpose.RECEIPT_SIGNATURE).verify(server_key)
        )
        if receipt.org_id != org_id or receipt.device_id != device_id:
            raise VerificationFailed()
        checkpoint = Checkpoint.verify(receipt.checkpoint, server_key, org_id=org_id)
        leaves: dict[int, bytes] = {}
        for item in receipt.items:
            index = item.server_seq - 1
            if not 0 <= index < checkpoint.size or leaves.get(index, item.envelope_id) != (
                item.envelope_id
            ):
                raise VerificationFailed()
            leaves[index] = item.envelope_id
        if leaves:
            try:
                verify_batch_inclusion(
                    {i: leaf_hash(e) for i, e in leaves.items()},
                    checkpoint.size,
                    receipt.proof,
                    checkpoint.root,
                )
            except ProofError as exc:
                raise VerificationFailed() from exc
        elif receipt.proof:
            raise VerificationFailed()
        return receipt, checkpoint

    def covers(self, envelope_ids: Sequence[bytes]) -> bool:
        held = {i.envelope_id for i in self.items}
        return all(e in held for e in envelope_ids)
