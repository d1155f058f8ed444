"""An in-memory store driving `sync.dag` exactly as the server does (fetch, classify, apply).

Used by the pure DAG tests and the stateful test; the server's SQL store is the
other implementation of the same three steps (server/services/push.py).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from crypto import ChainKey, Envelope, KemPrivateKey, SigningKey, seal_revision, seal_sender_key
from sync.dag import Candidate, DeviceView, Known, Plan, Stored, advance_watermark, classify, needs

ORG = bytes(range(16))
COORDINATOR_KEM = KemPrivateKey(bytes(32))


@dataclass
class MemoryStore:
    roster_version: int = 1
    rows: dict[bytes, Stored] = field(default_factory=dict)
    slots: dict[tuple[bytes, int], Stored] = field(default_factory=dict)
    heads: dict[bytes, frozenset[bytes]] = field(default_factory=dict)
    evidence: dict[bytes, Envelope] = field(default_factory=dict)
    watermarks: dict[bytes, int] = field(default_factory=dict)
    revoked: dict[bytes, int] = field(default_factory=dict)
    last_seq: int = 0

    def push(self, device: bytes, envelopes: list[Envelope | bytes]) -> Plan:
        candidates = [
            Candidate(e, e.to_bytes())
            if isinstance(e, Envelope)
            else Candidate(None, e, error="junk")
            for e in envelopes
        ]
        need = needs(candidates)
        known = Known(
            by_id={i: self.rows[i] for i in need.ids if i in self.rows},
            by_slot={s: self.slots[s] for s in need.slots if s in self.slots},
            heads={r: self.heads[r] for r in need.reports if r in self.heads},
            roster_version=self.roster_version,
        )
        plan = classify(
            candidates,
            org_id=ORG,
            device=DeviceView(device, self.revoked.get(device)),
            known=known,
            last_seq=self.last_seq,
        )
        for row, _, _ in plan.inserts:
            self.rows[row.envelope_id] = row
            self.slots[(row.device_id, row.device_seq)] = row
        for env, _ in plan.evidence:
            self.evidence[env.id] = env
        self.heads.update(plan.heads)
        self.last_seq = plan.last_seq
        seqs = [s for (d, s) in self.slots if d == device]
        self.watermarks[device] = advance_watermark(self.watermarks.get(device, 0), seqs)
        return plan


@dataclass
class Writer:
    """A device writing a chain of envelopes (no I/O)."""

    key: SigningKey = field(default_factory=SigningKey.generate)
    seq: int = 0
    prev: bytes = bytes(32)
    chain: ChainKey | None = None
    key_seq: int = 0

    @property
    def device_id(self) -> bytes:
        return self.key.verify_key.key_id

    def key_envelope(self) -> Envelope:
        self.chain = ChainKey.generate()
        self.seq += 1
        env = seal_sender_key(
            org=ORG,
            seq=self.seq,
            prev=self.prev,
            roster_version=1,
            chain_key=self.chain,
            recipients=[COORDINATOR_KEM.public_key],
            signing_key=self.key,
        )
        self.prev, self.key_seq = env.id, self.seq
        return env

    def revision(self, report: bytes, parents: list[bytes], *, org: bytes = ORG) -> Envelope:
        if self.chain is None:
            raise RuntimeError("send a key envelope first")
        self.seq += 1
        mk, self.chain = self.chain.advance()
        env = seal_revision(
            org=org,
            report=report,
            parents=parents,
            seq=self.seq,
            prev=self.prev,
            roster_version=1,
            key_seq=self.key_seq,
            message_key=mk,
            content=secrets.token_bytes(8),
            signing_key=self.key,
        )
        self.prev = env.id
        return env

    def fork_at(self, seq: int, prev: bytes) -> None:
        """Rewind the writer (a cloned or malicious device)."""
        self.seq, self.prev = seq, prev
