"""A device's own chain: sequence numbers, the sender-key epoch, the outbox (PROTOCOL §15.1).

Rules:
* `DeviceState` is everything a device persists about its own chain and outbox; it
  holds no plaintext and, after each revision, only the *next* chain key, so a seized
  device cannot re-derive the keys of what it already sent (D2).
* `seal_edit` appends a sender-key envelope when an epoch must start (first envelope,
  coordinator set changed, `EPOCH_LENGTH` revisions) and then the revision.  The
  caller persists the state before any envelope leaves the device (§15.1 item 1).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from crypto import ChainKey, Envelope, SigningKey, seal_revision, seal_sender_key
from crypto.envelope import NO_WITNESS
from sync.report import ReportContent
from sync.roster import SignedRoster

__all__ = ["EPOCH_LENGTH", "DeviceState", "OutboxItem", "seal_edit"]

EPOCH_LENGTH = 10_000
"""A device starts a new sender-key epoch at least every this many revisions."""


@dataclass(slots=True)
class OutboxItem:
    envelope_id: bytes
    data: bytes
    seq: int
    report: bytes | None

    def to_cbor(self) -> list[Any]:
        return [self.envelope_id, self.data, self.seq, self.report]

    @classmethod
    def from_cbor(cls, raw: list[Any]) -> OutboxItem:
        return cls(raw[0], raw[1], raw[2], raw[3])


@dataclass(slots=True)
class DeviceState:
    """Everything a device persists about its own chain and outbox (no plaintext)."""

    org_id: bytes
    device_id: bytes
    seq: int = 0
    prev: bytes = bytes(32)
    key_seq: int = 0
    chain_key: bytes | None = None
    chain_index: int = 0
    epoch_recipients: tuple[bytes, ...] = ()
    heads: dict[bytes, tuple[bytes, ...]] = field(default_factory=dict)
    outbox: list[OutboxItem] = field(default_factory=list)
    rejected: list[tuple[OutboxItem, str, str]] = field(default_factory=list)
    receipts: list[bytes] = field(default_factory=list)
    sent: int = 0
    last_server_seq: int = 0
    witness: bytes = NO_WITNESS  # the newest verified log checkpoint, sealed into revisions

    def to_cbor(self) -> dict[str, Any]:
        return {
            "o": self.org_id,
            "d": self.device_id,
            "n": self.seq,
            "h": self.prev,
            "c": self.key_seq,
            "k": self.chain_key,
            "i": self.chain_index,
            "e": list(self.epoch_recipients),
            "hd": [[r, list(h)] for r, h in sorted(self.heads.items())],
            "ob": [i.to_cbor() for i in self.outbox],
            "rj": [[i.to_cbor(), s, d] for i, s, d in self.rejected],
            "rc": list(self.receipts),
            "s": self.sent,
            "ss": self.last_server_seq,
            "w": self.witness,
        }

    @classmethod
    def from_cbor(cls, raw: dict[str, Any]) -> DeviceState:
        return cls(
            org_id=raw["o"],
            device_id=raw["d"],
            seq=raw["n"],
            prev=raw["h"],
            key_seq=raw["c"],
            chain_key=raw["k"],
            chain_index=raw["i"],
            epoch_recipients=tuple(raw["e"]),
            heads={r: tuple(h) for r, h in raw["hd"]},
            outbox=[OutboxItem.from_cbor(i) for i in raw["ob"]],
            rejected=[(OutboxItem.from_cbor(i), s, d) for i, s, d in raw["rj"]],
            receipts=list(raw["rc"]),
            sent=raw["s"],
            last_server_seq=raw["ss"],
            witness=raw.get("w", NO_WITNESS),
        )

    def _append(self, envelope: Envelope, report: bytes | None) -> None:
        self.seq = envelope.header.seq
        self.prev = envelope.id
        self.outbox.append(
            OutboxItem(envelope.id, envelope.to_bytes(), envelope.header.seq, report)
        )


def seal_edit(
    state: DeviceState,
    *,
    roster: SignedRoster,
    signing_key: SigningKey,
    report: bytes,
    content: ReportContent,
    parents: Iterable[bytes] | None = None,
) -> Envelope:
    """Seal one revision of ``report`` into the outbox (a key envelope first if an epoch starts).

    ``parents`` default to the heads this device knows for the report. The caller
    persists ``state`` before anything leaves the device.
    """
    if signing_key.verify_key.key_id != state.device_id:
        raise ValueError("signing key does not belong to this device")
    recipients = roster.roster.recipients()
    recipient_ids = tuple(sorted(k.key_id for k in recipients))
    if (
        state.chain_key is None
        or recipient_ids != state.epoch_recipients
        or state.chain_index >= EPOCH_LENGTH
    ):
        chain_key = ChainKey.generate()
        key_envelope = seal_sender_key(
            org=state.org_id,
            seq=state.seq + 1,
            prev=state.prev,
            roster_version=roster.roster.version,
            chain_key=chain_key,
            recipients=recipients,
            signing_key=signing_key,
        )
        state._append(key_envelope, None)
        state.key_seq, state.chain_key, state.chain_index = (
            key_envelope.header.seq,
            chain_key.raw,
            0,
        )
        state.epoch_recipients = recipient_ids
    message_key, next_chain = ChainKey(state.chain_key).advance()
    parent_ids = tuple(state.heads.get(report, ())) if parents is None else tuple(parents)
    envelope = seal_revision(
        org=state.org_id,
        report=report,
        parents=parent_ids,
        seq=state.seq + 1,
        prev=state.prev,
        roster_version=roster.roster.version,
        key_seq=state.key_seq,
        message_key=message_key,
        content=content.encode(),
        signing_key=signing_key,
        witness=state.witness,
    )
    state._append(envelope, report)
    # Forward secrecy on the device: only the next chain key is kept.
    state.chain_key, state.chain_index = next_chain.raw, state.chain_index + 1
    state.heads[report] = (envelope.id,)
    return envelope
