"""Push: one transaction per batch, set-based, decode once, verify once.

Order of work (docs/PROTOCOL.md §8.2):
1. Limits (413 with the limits), then parse every envelope once.
2. Verify every envelope's Ed25519 signature against the pushing device's key,
   split over ``verify_threads`` threads (libsodium releases the GIL, so one
   thread verifies while another parses; parsing gives way to this process's
   write transactions, `server.db.outside_transactions`).  Why verify at all when
   the request is signed: a device purges what the receipt covers, so the server
   must not acknowledge an envelope that coordinators will later reject as
   mis-signed.
3. One write transaction, its statements in two batches (`server.db.Batch`); on
   PostgreSQL that is three round trips while the org lock is held: the reads,
   the envelopes' COPY, the other writes with the commit.
   reads: lock the org (sequence counter), record the request nonce, read the
   device and the known slice; then `sync.dag.classify` and sign the receipt;
   writes: insert envelopes/evidence, rewrite the touched heads, advance the
   device watermark, bump the org counters, store the receipt, commit.  The
   receipt is only returned after the commit, so a client never holds a receipt
   for an uncommitted row.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import nacl.exceptions
import nacl.signing
from sqlalchemy import Engine

from crypto import Envelope, MalformedEnvelope, Purpose, SigningKey, VerifyKey, parse_envelope
from server.auth import Caller, remember_nonce_in
from server.db import Batch, outside_transactions, write_tx
from server.errors import ApiError
from server.services import tlog
from server.services.store import (
    lock_org_sql,
    org_log_of,
    org_row_or_404,
    queue_known,
    seq_runs,
)
from server.settings import Settings
from server.tables import EnvelopeRow, Head
from sync.dag import Candidate, DeviceView, Plan, advance_watermark, classify, needs
from sync.errors import ErrorCode
from sync.messages import ItemStatus
from sync.receipt import Receipt, ReceiptItem

__all__ = ["PushOutcome", "envelope_verifier", "push"]

_DEVICE_SQL = (
    "SELECT revoked_after, watermark, max_seq FROM devices WHERE org_id = ? AND device_id = ?"
)
# The device's stored seqs above its watermark, read only when the batch holds the
# seq that could advance it (watermark + 1): a device with a lasting hole in its
# chain does not re-read its whole chain on every push.  The watermark is a scalar
# subquery so that it bounds the index range scan; as a join, PostgreSQL read every
# envelope of the device and filtered them (4 ms per push at 2,500 envelopes).
_CHAIN_ABOVE_SQL = (
    "SELECT device_seq FROM envelopes WHERE org_id = ? AND device_id = ? AND device_seq > "
    "(SELECT watermark FROM devices WHERE org_id = ? AND device_id = ? "
    "AND watermark + 1 BETWEEN ? AND ?)"
)
_ENVELOPE_COLUMNS = (
    "org_id",
    "server_seq",
    "envelope_id",
    "device_id",
    "device_seq",
    "prev",
    "kind",
    "report_id",
    "flags",
    "data",
)
# Evidence is kept once per envelope; the NOT EXISTS makes a re-sent batch a no-op.
_INSERT_EVIDENCE_SQL = (
    "INSERT INTO equivocations (org_id, device_id, device_seq, envelope_id, data) "
    "SELECT ?, ?, ?, ?, ? WHERE NOT EXISTS "
    "(SELECT 1 FROM equivocations WHERE org_id = ? AND envelope_id = ?)"
)
_HEAD_COLUMNS = ("org_id", "report_id", "envelope_id")


@dataclass(frozen=True, slots=True)
class PushOutcome:
    plan: Plan
    receipt: bytes
    consistency: list[bytes] | None  # from the caller's ``since`` to the receipt's checkpoint


def _limits(settings: Settings) -> dict[str, int]:
    return {
        "max_batch_items": settings.max_batch_items,
        "max_batch_bytes": settings.max_batch_bytes,
        "max_envelope_bytes": settings.max_envelope_bytes,
    }


def _parse(raw: bytes, max_bytes: int) -> Candidate:
    if len(raw) > max_bytes:
        return Candidate(None, raw, error=f"envelope larger than {max_bytes} bytes")
    try:
        return Candidate(parse_envelope(raw), raw)
    except MalformedEnvelope as exc:
        return Candidate(None, raw, error=f"malformed envelope: {exc.reason}")


def envelope_verifier(key: VerifyKey) -> Callable[[Envelope], bool]:
    """Check envelope signatures of one device, fast.

    The same check as `crypto.Envelope.verify_signature` (Ed25519 over
    ``purpose tag || 0x00 || envelope id``, by the key that owns ``header.device``),
    done with libsodium: about twice as fast as pyca's verify here, and stricter
    (canonical S, no small-order points), so anything it accepts a pyca reader
    accepts too.  `tests/server/test_envelope_verifier.py` checks the equivalence.
    """
    public = nacl.signing.VerifyKey(key.raw)
    prefix = Purpose.ENVELOPE_SIGNATURE.value + b"\x00"
    device_id = key.key_id

    def verify(envelope: Envelope) -> bool:
        if envelope.header.device != device_id:
            return False
        try:
            public.verify(prefix + envelope.id, envelope.signature)
        except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
            return False
        return True

    return verify


_PARSE_SLICE = 10  # envelopes parsed per slice of `outside_transactions` (~0.3 ms)


def _parse_and_verify(
    envelopes: list[bytes], key: VerifyKey, max_bytes: int, pool: ThreadPoolExecutor | None
) -> list[Candidate]:
    """Parse every envelope and check its signature, split over the verify pool.

    Parsing is Python (it holds the interpreter lock), so it runs in slices that give
    way to this process's write transactions (`server.db.outside_transactions`);
    libsodium's check releases the lock, so one thread verifies while the other parses.
    """
    verify = envelope_verifier(key)

    def check(part: list[bytes]) -> list[Candidate]:
        out = []
        for start in range(0, len(part), _PARSE_SLICE):
            with outside_transactions():
                parsed = [_parse(raw, max_bytes) for raw in part[start : start + _PARSE_SLICE]]
            for c in parsed:
                if c.envelope is not None and c.envelope.header.device == key.key_id:
                    if not verify(c.envelope):
                        c = Candidate(c.envelope, c.raw, signature_ok=False)
                out.append(c)
        return out

    if pool is None or len(envelopes) < 8:
        return check(envelopes)
    n = pool._max_workers  # noqa: SLF001 - the pool is ours
    size = -(-len(envelopes) // n)
    parts = [envelopes[i : i + size] for i in range(0, len(envelopes), size)]
    return [c for part in pool.map(check, parts) for c in part]


def push(
    *,
    engine: Engine,
    settings: Settings,
    server_key: SigningKey,
    pool: ThreadPoolExecutor | None,
    caller: Caller,
    envelopes: list[bytes],
    now: int,
    since: int | None = None,
) -> PushOutcome:
    org_id, device_id, device_key = caller.org_id, caller.device_id, caller.signing_key
    if len(envelopes) > settings.max_batch_items or (
        sum(map(len, envelopes)) > settings.max_batch_bytes
    ):
        raise ApiError(
            ErrorCode.PAYLOAD_TOO_LARGE,
            413,
            "the batch is over the limits; split it",
            limits=_limits(settings),
        )
    candidates = _parse_and_verify(envelopes, device_key, settings.max_envelope_bytes, pool)
    with write_tx(engine) as conn:
        reads = Batch(conn)
        org_row = reads.add(lock_org_sql(conn), (org_id,))
        check_nonce = remember_nonce_in(
            reads, caller, now=now, window=settings.replay_window_seconds
        )
        device_row = reads.add(_DEVICE_SQL, (org_id, device_id))
        seqs = (c.envelope.header.seq for c in candidates if c.envelope is not None)
        chain_above = [
            reads.add(_CHAIN_ABOVE_SQL, (org_id, device_id, org_id, device_id, lo, hi))
            for lo, hi in seq_runs(seqs)
        ]
        known = queue_known(reads, org_id, needs(candidates))
        reads.run()  # takes the org lock; PostgreSQL: one round trip
        last_seq, roster_version, bytes_stored = org_row_or_404(org_row)
        check_nonce()
        revoked_after, watermark, max_seq = device_row.rows[0]
        plan = classify(
            candidates,
            org_id=org_id,
            device=DeviceView(device_id, revoked_after),
            known=known(roster_version),
            last_seq=last_seq,
        )
        new_bytes = sum(len(raw) for _, _, raw in plan.inserts)
        if new_bytes and bytes_stored + new_bytes > settings.org_quota_bytes:
            raise ApiError(
                ErrorCode.QUOTA_EXCEEDED,
                429,
                "the organisation's storage quota is used up",
                headers={"Retry-After": "3600"},
                retry_after=3600,
            )
        items = [
            ReceiptItem(c.envelope.id, c.envelope.header.seq, outcome.server_seq)
            for c, outcome in zip(candidates, plan.outcomes, strict=True)
            if outcome.status.stored and c.envelope is not None and outcome.server_seq is not None
        ]
        frontier_bytes, stored_checkpoint = org_log_of(org_row)
        if plan.inserts:
            log = tlog.grow(
                org_id=org_id,
                frontier=tlog.frontier_of(last_seq, frontier_bytes),
                envelope_ids=(row.envelope_id for row, _, _ in plan.inserts),
                server_key=server_key,
                now=now,
            )
            checkpoint, held_nodes = log.checkpoint, log.known
        else:
            log, held_nodes = None, tlog.frontier_nodes(tlog.frontier_of(last_seq, frontier_bytes))
            checkpoint = tlog.current_checkpoint(
                org_id=org_id,
                last_seq=last_seq,
                frontier=frontier_bytes,
                stored=stored_checkpoint,
                server_key=server_key,
                now=now,
            )
        size = plan.last_seq if plan.inserts else last_seq
        proof, consistency = tlog.prove(
            conn,
            org_id,
            size=size,
            batch_of=(i.server_seq - 1 for i in items),
            consistency_from=[since] if since is not None else [],
            known=held_nodes,
        )
        receipt = (
            Receipt(org_id, device_id, now, tuple(items), checkpoint=checkpoint, proof=tuple(proof))
            .sign(server_key)
            .to_bytes()
        )

        writes = Batch(conn)
        writes.add_rows(
            EnvelopeRow.__table__,  # type: ignore[attr-defined]
            _ENVELOPE_COLUMNS,
            [
                (
                    org_id,
                    row.server_seq,
                    row.envelope_id,
                    row.device_id,
                    row.device_seq,
                    row.prev,
                    env.header.kind,
                    row.report_id,
                    0,
                    raw,
                )
                for row, env, raw in plan.inserts
            ],
        )
        writes.add(
            _INSERT_EVIDENCE_SQL,
            [
                (org_id, e.header.device, e.header.seq, e.id, raw, org_id, e.id)
                for e, raw in plan.evidence
            ],
            many=True,
        )
        removed, added = _head_changes(plan)
        heads = Head.__table__  # type: ignore[attr-defined]
        writes.delete_rows(heads, _HEAD_COLUMNS, [(org_id, r, e) for r, e in removed])
        writes.add_rows(heads, _HEAD_COLUMNS, [(org_id, r, e) for r, e in added])
        if plan.inserts or plan.evidence:
            stored_seqs = [row.device_seq for row, _, _ in plan.inserts]
            stored_seqs += [seq for p in chain_above for (seq,) in p.rows]
            writes.add(
                "UPDATE devices SET watermark = ?, max_seq = ?, equivocation = "
                "(equivocation OR ?) WHERE org_id = ? AND device_id = ?",
                (
                    advance_watermark(watermark, stored_seqs),
                    max(max_seq, *stored_seqs) if stored_seqs else max_seq,
                    bool(plan.evidence),
                    org_id,
                    device_id,
                ),
            )
        if log is not None:
            writes.add(
                "UPDATE orgs SET last_seq = ?, bytes_stored = ?, log_frontier = ?, checkpoint = ? "
                "WHERE id = ?",
                (
                    plan.last_seq,
                    bytes_stored + new_bytes,
                    log.frontier.to_bytes(),
                    checkpoint,
                    org_id,
                ),
            )
            tlog.store_nodes(writes, org_id, log.stored)
        if items:
            writes.add(
                "INSERT INTO receipts (org_id, device_id, document) VALUES (?, ?, ?)",
                (org_id, device_id, receipt),
            )
        writes.run(commit=True)  # PostgreSQL: the COPY, then one round trip with the commit
    return PushOutcome(
        plan=plan, receipt=receipt, consistency=consistency[0] if since is not None else None
    )


def _head_changes(plan: Plan) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
    """The (report, envelope) head rows to delete and to insert."""
    removed: list[tuple[bytes, bytes]] = []
    added: list[tuple[bytes, bytes]] = []
    for report_id, after in plan.heads.items():
        before = plan.heads_before.get(report_id, frozenset())
        removed += [(report_id, e) for e in before - after]
        added += [(report_id, e) for e in after - before]
    return removed, added


def status_counts(plan: Plan) -> dict[ItemStatus, int]:
    counts: dict[ItemStatus, int] = {}
    for outcome in plan.outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    return counts
