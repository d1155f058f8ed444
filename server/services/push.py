"""Push: one transaction per batch, set-based, decode once, verify once.

Order of work (docs/PROTOCOL.md §8.2):
1. Limits (413 with the limits), then parse every envelope once.
2. Verify every envelope's Ed25519 signature against the pushing device's key,
   split over ``verify_threads`` threads (pyca releases the GIL for Ed25519, so
   two threads use both cores).  Why verify at all when the request is signed:
   a device purges what the receipt covers, so the server must not acknowledge
   an envelope that coordinators will later reject as mis-signed.
3. One write transaction: lock the org (sequence counter), fetch the known slice,
   `sync.dag.classify`, bulk-insert envelopes/evidence, rewrite the touched
   heads, advance the device watermark, bump the org counters, store the signed
   receipt.  The receipt is signed inside the transaction but only returned
   after the commit, so a client never holds a receipt for an uncommitted row.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import nacl.exceptions
import nacl.signing
from sqlalchemy import Engine, insert, select, update

from crypto import Envelope, MalformedEnvelope, Purpose, SigningKey, VerifyKey, parse_envelope
from server.auth import Caller, remember_nonce_in
from server.db import write_tx
from server.errors import ApiError
from server.services.store import bulk_insert, fetch_known, lock_org
from server.settings import Settings
from server.tables import Device, EnvelopeRow, Equivocation, Head, Org, ReceiptRow
from sync.dag import Candidate, DeviceView, Plan, advance_watermark, classify, needs
from sync.errors import ErrorCode
from sync.messages import ItemStatus
from sync.receipt import Receipt, ReceiptItem

__all__ = ["PushOutcome", "envelope_verifier", "push"]

_orgs = Org.__table__  # type: ignore[attr-defined]
_devices = Device.__table__  # type: ignore[attr-defined]
_envelopes = EnvelopeRow.__table__  # type: ignore[attr-defined]
_heads = Head.__table__  # type: ignore[attr-defined]
_evidence = Equivocation.__table__  # type: ignore[attr-defined]
_receipts = ReceiptRow.__table__  # type: ignore[attr-defined]


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


@dataclass(frozen=True, slots=True)
class PushOutcome:
    plan: Plan
    receipt: bytes


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


def _verify_all(
    candidates: list[Candidate], key: VerifyKey, pool: ThreadPoolExecutor | None
) -> list[Candidate]:
    verify = envelope_verifier(key)

    def check(part: list[Candidate]) -> list[Candidate]:
        out = []
        for c in part:
            if c.envelope is not None and c.envelope.header.device == key.key_id:
                if not verify(c.envelope):
                    c = Candidate(c.envelope, c.raw, signature_ok=False)
            out.append(c)
        return out

    if pool is None or len(candidates) < 8:
        return check(candidates)
    n = pool._max_workers  # noqa: SLF001 - the pool is ours
    size = -(-len(candidates) // n)
    parts = [candidates[i : i + size] for i in range(0, len(candidates), size)]
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
    candidates = _verify_all(
        [_parse(raw, settings.max_envelope_bytes) for raw in envelopes], device_key, pool
    )
    with write_tx(engine) as conn:
        org = lock_org(conn, org_id)
        remember_nonce_in(conn, caller, now=now, window=settings.replay_window_seconds)
        device = conn.execute(
            select(_devices.c.revoked_after, _devices.c.watermark, _devices.c.max_seq).where(
                _devices.c.org_id == org_id, _devices.c.device_id == device_id
            )
        ).one()
        known = fetch_known(conn, org_id, needs(candidates), org.roster_version)
        plan = classify(
            candidates,
            org_id=org_id,
            device=DeviceView(device_id, device.revoked_after),
            known=known,
            last_seq=org.last_seq,
        )
        new_bytes = sum(len(raw) for _, _, raw in plan.inserts)
        if new_bytes and org.bytes_stored + new_bytes > settings.org_quota_bytes:
            raise ApiError(
                ErrorCode.QUOTA_EXCEEDED,
                429,
                "the organisation's storage quota is used up",
                headers={"Retry-After": "3600"},
                retry_after=3600,
            )
        bulk_insert(
            conn,
            _envelopes,
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
        if plan.evidence:
            known_evidence = set(
                conn.execute(
                    select(_evidence.c.envelope_id).where(
                        _evidence.c.org_id == org_id,
                        _evidence.c.envelope_id.in_([e.id for e, _ in plan.evidence]),
                    )
                ).scalars()
            )
            fresh = [(e, raw) for e, raw in plan.evidence if e.id not in known_evidence]
            if fresh:
                conn.execute(
                    insert(_evidence),
                    [
                        {
                            "org_id": org_id,
                            "device_id": e.header.device,
                            "device_seq": e.header.seq,
                            "envelope_id": e.id,
                            "data": raw,
                        }
                        for e, raw in fresh
                    ],
                )
        removed = []
        added = []
        for report_id, after in plan.heads.items():
            before = plan.heads_before.get(report_id, frozenset())
            removed += [(report_id, e) for e in before - after]
            added += [(report_id, e) for e in after - before]
        if removed:
            mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
            conn.exec_driver_sql(
                f"DELETE FROM heads WHERE org_id = {mark} AND report_id = {mark} "
                f"AND envelope_id = {mark}",
                [(org_id, r, e) for r, e in removed],
            )
        bulk_insert(
            conn, _heads, ("org_id", "report_id", "envelope_id"), [(org_id, r, e) for r, e in added]
        )
        if plan.inserts or plan.evidence:
            device_values: dict[str, object] = {}
            if plan.evidence:
                device_values["equivocation"] = True
            if plan.inserts:
                top = max(row.device_seq for row, _, _ in plan.inserts)
                device_values["max_seq"] = max(device.max_seq, top)
                if any(row.device_seq == device.watermark + 1 for row, _, _ in plan.inserts):
                    above = conn.execute(
                        select(_envelopes.c.device_seq).where(
                            _envelopes.c.org_id == org_id,
                            _envelopes.c.device_id == device_id,
                            _envelopes.c.device_seq > device.watermark,
                        )
                    ).scalars()
                    device_values["watermark"] = advance_watermark(device.watermark, above)
            conn.execute(
                update(_devices)
                .where(_devices.c.org_id == org_id, _devices.c.device_id == device_id)
                .values(**device_values)
            )
        if plan.inserts:
            conn.execute(
                update(_orgs)
                .where(_orgs.c.id == org_id)
                .values(last_seq=plan.last_seq, bytes_stored=org.bytes_stored + new_bytes)
            )
        items = []
        for c, outcome in zip(candidates, plan.outcomes, strict=True):
            if outcome.status.stored and c.envelope is not None:
                assert outcome.server_seq is not None
                items.append(ReceiptItem(c.envelope.id, c.envelope.header.seq, outcome.server_seq))
        receipt = Receipt(org_id, device_id, now, tuple(items)).sign(server_key).to_bytes()
        if items:
            conn.execute(
                insert(_receipts).values(org_id=org_id, device_id=device_id, document=receipt)
            )
    return PushOutcome(plan=plan, receipt=receipt)


def status_counts(plan: Plan) -> dict[ItemStatus, int]:
    counts: dict[ItemStatus, int] = {}
    for outcome in plan.outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    return counts
