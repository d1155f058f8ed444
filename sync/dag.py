"""Structural rules of a push: what happens to each envelope, decided without reading it.

Theory of operation (docs/PROTOCOL.md §8.3).  The server cannot decrypt; it
judges an envelope by its cleartext header alone.  For one batch the store
fetches, in one round, the slice of stored state the batch can touch
(`needs` says which: envelope ids, parent ids, device-chain slots seq-1/seq/seq+1,
report heads) and `classify` decides every item in request order, seeing the
effects of the earlier items of the same batch.  The store then applies the
returned `Plan` inside the same transaction.  Nothing here does I/O.

Per item, the first rule that matches decides (each has a test):

  D1 invalid          not an envelope; wrong org; header.device is not the
                      authenticated device (a relay push: not a device of the
                      organisation); unknown roster version; bad
                      envelope signature; a parent in another report or not a
                      revision.                                     terminal
  D2 duplicate        the same envelope id is stored (earlier request or
                      earlier in this batch): the original server_seq.
  D3 revoked          the device is revoked and seq > revoked_after. terminal
  D4 equivocation     another envelope holds (device, seq); or the stored
                      seq-1 is not ``prev``; or the stored seq+1 names another
                      prev.  Kept as evidence, device flagged.      terminal
  D5 missing_parents  a parent is neither stored nor earlier in the batch;
                      nothing stored; lists the missing ids.        retryable
  D6 created          stored with the next server_seq; the report's heads lose
                      the parents and gain the envelope;
     conflict         ... and the report now has more than one head.

Key envelopes (kind "key") live in the device chain and the feed; they have no
report, no parents and no heads.  Heads only ever lose an envelope that a newer
stored revision names as parent, so no branch is ever discarded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from crypto import Envelope
from sync.messages import ItemStatus

__all__ = [
    "Candidate",
    "DeviceView",
    "Known",
    "Needs",
    "Outcome",
    "Plan",
    "Stored",
    "advance_watermark",
    "classify",
    "holes",
    "needs",
]


@dataclass(frozen=True, slots=True)
class Stored:
    """What the store knows of one stored envelope (its header columns)."""

    envelope_id: bytes
    device_id: bytes
    device_seq: int
    prev: bytes
    report_id: bytes | None
    server_seq: int


@dataclass(frozen=True, slots=True)
class Candidate:
    """One pushed item: parsed (or the reason it is not an envelope), signature checked."""

    envelope: Envelope | None
    raw: bytes
    error: str | None = None
    signature_ok: bool = True


@dataclass(frozen=True, slots=True)
class DeviceView:
    device_id: bytes
    revoked_after: int | None = None


@dataclass(frozen=True, slots=True)
class Needs:
    """What the store must fetch for `Known`."""

    ids: frozenset[bytes]
    slots: frozenset[tuple[bytes, int]]
    reports: frozenset[bytes]


@dataclass(frozen=True)
class Known:
    """The slice of stored state a batch can touch."""

    by_id: Mapping[bytes, Stored]
    by_slot: Mapping[tuple[bytes, int], Stored]
    heads: Mapping[bytes, frozenset[bytes]]
    roster_version: int


@dataclass(frozen=True, slots=True)
class Outcome:
    status: ItemStatus
    envelope_id: bytes | None
    server_seq: int | None = None
    missing: tuple[bytes, ...] | None = None
    heads: tuple[bytes, ...] | None = None
    detail: str | None = None


@dataclass
class Plan:
    """What the store writes for a batch, and the per-item results in request order."""

    outcomes: list[Outcome] = field(default_factory=list)
    inserts: list[tuple[Stored, Envelope, bytes]] = field(default_factory=list)
    evidence: list[tuple[Envelope, bytes]] = field(default_factory=list)
    heads: dict[bytes, frozenset[bytes]] = field(default_factory=dict)
    heads_before: dict[bytes, frozenset[bytes]] = field(default_factory=dict)
    last_seq: int = 0

    @property
    def flag_device(self) -> bool:
        return bool(self.evidence)


def needs(candidates: Iterable[Candidate]) -> Needs:
    ids: set[bytes] = set()
    slots: set[tuple[bytes, int]] = set()
    reports: set[bytes] = set()
    for c in candidates:
        if c.envelope is None:
            continue
        h = c.envelope.header
        ids.add(c.envelope.id)
        ids.update(h.parents)
        slots.update(((h.device, h.seq - 1), (h.device, h.seq), (h.device, h.seq + 1)))
        if h.report is not None:
            reports.add(h.report)
    return Needs(frozenset(ids), frozenset(slots), frozenset(reports))


def classify(
    candidates: Sequence[Candidate],
    *,
    org_id: bytes,
    device: DeviceView | None = None,
    known: Known,
    last_seq: int,
    relayed: Mapping[bytes, DeviceView] | None = None,
) -> Plan:
    """Decide each item in order (rules D1-D6) and return the plan to apply.

    A push names the pushing ``device``: every envelope must be its own.  A relay push
    (PROTOCOL §23.3) names instead the devices of the organisation whose envelopes a relay
    may carry, ``relayed``: each envelope is judged under its own author's chain rules.
    """
    if (device is None) == (relayed is None):
        raise ValueError("classify takes either the pushing device or the relayed authors")
    by_id = dict(known.by_id)
    by_slot = dict(known.by_slot)
    heads = {r: set(h) for r, h in known.heads.items()}
    plan = Plan(last_seq=last_seq)
    evidence_ids: set[bytes] = set()
    for c in candidates:
        env = c.envelope
        if env is None or c.error is not None:
            plan.outcomes.append(
                Outcome(ItemStatus.INVALID, env.id if env else None, detail=c.error or "invalid")
            )
            continue
        h = env.header

        result = _recorder(plan, env.id)

        # D1
        if h.org != org_id:
            result(ItemStatus.INVALID, "the envelope belongs to another organisation")
            continue
        if relayed is not None:
            author = relayed.get(h.device)
            if author is None:
                result(ItemStatus.INVALID, "the author is not a device of this organisation")
                continue
        elif device is not None and h.device != device.device_id:
            result(ItemStatus.INVALID, "header.device is not the device that signed the request")
            continue
        else:
            author = device
        assert author is not None
        if not 1 <= h.roster_version <= known.roster_version:
            result(ItemStatus.INVALID, "unknown roster version")
            continue
        if not c.signature_ok:
            result(ItemStatus.INVALID, "the envelope signature does not verify")
            continue
        # D2
        stored = by_id.get(env.id)
        if stored is not None:
            result(ItemStatus.DUPLICATE, server_seq=stored.server_seq)
            continue
        # D3
        if author.revoked_after is not None and h.seq > author.revoked_after:
            result(ItemStatus.REVOKED, "the device is revoked from this sequence on")
            continue
        # D4
        reason = _equivocation(env, by_slot)
        if reason is not None:
            if env.id not in evidence_ids:
                evidence_ids.add(env.id)
                plan.evidence.append((env, c.raw))
            result(ItemStatus.EQUIVOCATION, reason)
            continue
        # D5 (and the structural part of D1 for parents)
        if h.kind == "rev":
            missing = tuple(p for p in h.parents if p not in by_id)
            if missing:
                result(ItemStatus.MISSING_PARENTS, "parents are not stored yet", missing=missing)
                continue
            if any(by_id[p].report_id != h.report for p in h.parents):
                result(ItemStatus.INVALID, "a parent is not a revision of the same report")
                continue
        # D6
        plan.last_seq += 1
        row = Stored(env.id, h.device, h.seq, h.prev, h.report, plan.last_seq)
        by_id[env.id] = row
        by_slot[(h.device, h.seq)] = row
        plan.inserts.append((row, env, c.raw))
        if h.report is None:
            result(ItemStatus.CREATED, server_seq=row.server_seq)
            continue
        if h.report not in plan.heads_before:
            plan.heads_before[h.report] = frozenset(heads.get(h.report, ()))
        current = heads.setdefault(h.report, set())
        current.difference_update(h.parents)
        current.add(env.id)
        plan.heads[h.report] = frozenset(current)
        if len(current) > 1:
            result(ItemStatus.CONFLICT, server_seq=row.server_seq, heads=tuple(sorted(current)))
        else:
            result(ItemStatus.CREATED, server_seq=row.server_seq)
    return plan


def _recorder(plan: Plan, envelope_id: bytes) -> Callable[..., None]:
    def record(status: ItemStatus, detail: str | None = None, **kw: Any) -> None:
        plan.outcomes.append(Outcome(status, envelope_id, detail=detail, **kw))

    return record


def _equivocation(env: Envelope, by_slot: Mapping[tuple[bytes, int], Stored]) -> str | None:
    h = env.header
    at = by_slot.get((h.device, h.seq))
    if at is not None and at.envelope_id != env.id:
        return "another envelope holds this device sequence number"
    before = by_slot.get((h.device, h.seq - 1))
    if before is not None and before.envelope_id != h.prev:
        return "prev is not the stored envelope at seq - 1"
    after = by_slot.get((h.device, h.seq + 1))
    if after is not None and after.prev != env.id:
        return "the stored envelope at seq + 1 names another prev"
    return None


def advance_watermark(watermark: int, seqs: Iterable[int]) -> int:
    """The new contiguous watermark given the stored seqs above the old one."""
    present = set(seqs)
    while watermark + 1 in present:
        watermark += 1
    return watermark


def holes(watermark: int, seqs_above: Iterable[int]) -> list[tuple[int, int]]:
    """Missing [first, last] ranges between the watermark and the highest stored seq."""
    out: list[tuple[int, int]] = []
    expected = watermark + 1
    for seq in sorted(set(seqs_above)):
        if seq <= watermark:
            continue
        if seq > expected:
            out.append((expected, seq - 1))
        expected = seq + 1
    return out
