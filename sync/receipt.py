"""Delivery receipts: the server's signed statement of what it durably stored.

Theory of operation (docs/PROTOCOL.md §8.4):
* After the push transaction commits, the server signs, with its own Ed25519
  key (pinned in the roster as ``sv``), a receipt document
  {org, device, batch digest, items: [[envelope id, device seq, server seq], ...]}
  listing every envelope of the batch it holds (created or duplicate).
* A field device that holds a valid receipt for an envelope may purge its copy:
  the receipt is its proof of delivery, and a coordinator who later finds the
  envelope missing can show the server lied (docs/THREAT_MODEL.md §3.2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from crypto import Purpose, SignedDocument, SigningKey, VerificationFailed, VerifyKey, sign_document

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

    def to_cbor(self) -> dict[str, Any]:
        return {
            "o": self.org_id,
            "d": self.device_id,
            "t": self.issued_at,
            "i": [[i.envelope_id, i.device_seq, i.server_seq] for i in self.items],
        }

    @classmethod
    def from_cbor(cls, raw: Any) -> Receipt:
        if (
            not isinstance(raw, dict)
            or set(raw) != {"o", "d", "t", "i"}
            or not isinstance(raw["i"], list)
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
        return cls(raw["o"], raw["d"], raw["t"], tuple(items))

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
        receipt = cls.from_cbor(
            SignedDocument.parse(data, Purpose.RECEIPT_SIGNATURE).verify(server_key)
        )
        if receipt.org_id != org_id or receipt.device_id != device_id:
            raise VerificationFailed()
        return receipt

    def covers(self, envelope_ids: Sequence[bytes]) -> bool:
        held = {i.envelope_id for i in self.items}
        return all(e in held for e in envelope_ids)
