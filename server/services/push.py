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

__all__ = ["PushOutcome", "envelope_verifier", "push", "relay"]

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


def _check_limits(settings: Settings, envelopes: list[bytes]) -> None:
    if len(envelopes) > settings.max_batch_items or (
        sum(map(len, envelopes)) > settings.max_batch_bytes
    ):
        raise ApiError(
            ErrorCode.PAYLOAD_TOO_LARGE,
            413,
            "the batch is over the limits; split it",
            limits=_limits(settings),
        )


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
    _check_limits(settings, envelopes)
    candidates = _parse_and_verify(envelopes, caller.signing_key, settings.max_envelope_bytes, pool)
    return _store(
        engine=engine,
        settings=settings,
        server_key=server_key,
        caller=caller,
        candidates=candidates,
        authors=None,
        now=now,
        since=since,
    )


# Devices whose envelopes a relay may carry: every device of the organisation but the
# removed ones (a revoked author's envelopes up to its revocation point are valid, §5.5).
_RELAYED_AUTHORS_SQL = "SELECT device_id, signing_key FROM devices"
_RELAYED_AUTHORS_WHERE = "org_id = ? AND state IN ('enrolled', 'admitted', 'revoked')"
_DEVICE_ROWS_SQL = "SELECT device_id, revoked_after, watermark, max_seq FROM devices"


def relay(
    *,
    engine: Engine,
    settings: Settings,
    server_key: SigningKey,
    caller: Caller,
    envelopes: list[bytes],
    now: int,
    since: int | None = None,
) -> PushOutcome:
    """A relay push (PROTOCOL §23.3): envelopes of other devices, carried to the server by
    ``caller``, an admitted and unrevoked member.  Each is checked against its own author's
    key and chain rules (`sync.dag.classify` with ``relayed``), as its author's own push
    would be; the receipt names the relay.  The authors learn of their envelopes' storage
    from their own next push, answered ``duplicate`` with a receipt (§15.3)."""
    if caller.state == "revoked":
        raise ApiError(ErrorCode.DEVICE_REVOKED, 403, "a revoked device relays nothing")
    if caller.state != "admitted":
        raise ApiError(ErrorCode.FORBIDDEN, 403, "only a device admitted in the roster may relay")
    _check_limits(settings, envelopes)
    candidates: list[Candidate] = []
    for start in range(0, len(envelopes), _PARSE_SLICE):
        with outside_transactions():
            part = envelopes[start : start + _PARSE_SLICE]
            candidates += [_parse(raw, settings.max_envelope_bytes) for raw in part]
    devices = sorted({c.envelope.header.device for c in candidates if c.envelope is not None})
    keys: dict[bytes, VerifyKey] = {}
    with engine.connect() as conn:
        lookup = Batch(conn)
        found = lookup.add_lookup(
            _RELAYED_AUTHORS_SQL, _RELAYED_AUTHORS_WHERE, (caller.org_id,), "device_id", devices
        )
        lookup.run()
    for pending in found:
        keys.update((bytes(d), VerifyKey(bytes(k))) for d, k in pending.rows)
    verifiers = {d: envelope_verifier(k) for d, k in keys.items()}
    checked = []
    for c in candidates:
        verify = verifiers.get(c.envelope.header.device) if c.envelope is not None else None
        if c.envelope is not None and verify is not None and not verify(c.envelope):
            c = Candidate(c.envelope, c.raw, signature_ok=False)
        checked.append(c)
    return _store(
        engine=engine,
        settings=settings,
        server_key=server_key,
        caller=caller,
        candidates=checked,
        authors=sorted(keys),
        now=now,
        since=since,
    )


def _store(
    *,
    engine: Engine,
    settings: Settings,
    server_key: SigningKey,
    caller: Caller,
    candidates: list[Candidate],
    authors: list[bytes] | None,
    now: int,
    since: int | None,
) -> PushOutcome:
    """One transaction for a checked batch: a push (``authors`` None: the caller's own
    envelopes) or a relay push (the devices whose envelopes it may carry)."""
    org_id, device_id = caller.org_id, caller.device_id
    with write_tx(engine) as conn:
        reads = Batch(conn)
        org_row = reads.add(lock_org_sql(conn), (org_id,))
        check_nonce = remember_nonce_in(
            reads, caller, now=now, window=settings.replay_window_seconds
        )
        if authors is None:
            device_rows = [reads.add(_DEVICE_SQL, (org_id, device_id))]
        else:
            device_rows = reads.add_lookup(
                _DEVICE_ROWS_SQL, "org_id = ?", (org_id,), "device_id", authors
            )
        seqs_of: dict[bytes, list[int]] = {}
        for c in candidates:
            if c.envelope is not None:
                seqs_of.setdefault(c.envelope.header.device, []).append(c.envelope.header.seq)
        chain_above = {
            author: [
                reads.add(_CHAIN_ABOVE_SQL, (org_id, author, org_id, author, lo, hi))
                for lo, hi in seq_runs(seqs_of.get(author, ()))
            ]
            for author in (authors if authors is not None else [device_id])
        }
        known = queue_known(reads, org_id, needs(candidates))
        reads.run()  # takes the org lock; PostgreSQL: one round trip
        last_seq, roster_version, bytes_stored = org_row_or_404(org_row)
        check_nonce()
        rows: dict[bytes, tuple[int | None, int, int]] = {}
        if authors is None:
            rows[device_id] = tuple(device_rows[0].rows[0])
        else:
            for pending in device_rows:
                rows.update((bytes(r[0]), (r[1], r[2], r[3])) for r in pending.rows)
        views = {d: DeviceView(d, revoked_after) for d, (revoked_after, _, _) in rows.items()}
        plan = classify(
            candidates,
            org_id=org_id,
            device=views[device_id] if authors is None else None,
            relayed=views if authors is not None else None,
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
        for author, (_, watermark, max_seq) in rows.items():
            stored_seqs = [r.device_seq for r, _, _ in plan.inserts if r.device_id == author]
            flagged = any(e.header.device == author for e, _ in plan.evidence)
            if not stored_seqs and not flagged:
                continue
            stored_seqs += [seq for p in chain_above.get(author, ()) for (seq,) in p.rows]
            writes.add(
                "UPDATE devices SET watermark = ?, max_seq = ?, equivocation = "
                "(equivocation OR ?) WHERE org_id = ? AND device_id = ?",
                (
                    advance_watermark(watermark, stored_seqs),
                    max(max_seq, *stored_seqs) if stored_seqs else max_seq,
                    flagged,
                    org_id,
                    author,
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
