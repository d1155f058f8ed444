"""Grants and rotation requests (PROTOCOL §19): the server keeps coordinator-signed grants
as opaque items, and devices' signing-key rotation requests until a coordinator applies them.

The server checks only what it can without any key but the signer's public one: the
document is a well-formed grant of at most `MAX_GRANT_BYTES`, names this organisation,
and is signed by the coordinator who posts it. It never learns what a grant wraps; it
can withhold, replay or reorder grants, which coordinators' clients catch or survive
(THREAT_MODEL §3.6.1). Grant bytes count towards the organisation's quota (§11).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, func, insert, select, update

from crypto import Purpose, SignedDocument, VerificationFailed, VerifyKey
from server.db import read_tx, write_tx
from server.errors import ApiError
from server.services.store import lock_org
from server.tables import GrantRow, Org, RotationRow
from sync.errors import ErrorCode
from sync.grant import GrantError, peek_grant
from sync.grant_messages import MAX_ROTATIONS_PER_DEVICE
from sync.rotation import RotationError, RotationRequest

__all__ = ["StoredGrant", "list_grants", "list_rotations", "post_grant", "post_rotation"]

_grants = GrantRow.__table__  # type: ignore[attr-defined]
_orgs = Org.__table__  # type: ignore[attr-defined]
_rotations = RotationRow.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class StoredGrant:
    seq: int
    grant_id: bytes
    document: bytes
    received_at: int
    created: bool = False


def post_grant(
    *,
    engine: Engine,
    org_id: bytes,
    document: bytes,
    caller: bytes,
    caller_key: VerifyKey,
    now: int,
    quota: int,
) -> StoredGrant:
    """Keep a grant signed by the posting coordinator; the same grant again is idempotent."""
    try:
        grant = peek_grant(document)
        SignedDocument.parse(document, Purpose.GRANT_SIGNATURE).verify(caller_key)
    except GrantError as exc:
        raise ApiError(ErrorCode.GRANT_INVALID, 422, exc.reason) from None
    except VerificationFailed:
        raise ApiError(
            ErrorCode.GRANT_INVALID, 422, "the grant is not signed by the posting coordinator"
        ) from None
    if grant.granter != caller:
        raise ApiError(ErrorCode.GRANT_INVALID, 422, "the grant is not signed by the caller")
    if grant.org_id != org_id:
        raise ApiError(ErrorCode.GRANT_INVALID, 422, "the grant is for another organisation")
    with write_tx(engine) as conn:
        _, _, bytes_stored = lock_org(conn, org_id)
        stored = conn.execute(
            select(_grants.c.seq, _grants.c.received_at).where(
                _grants.c.org_id == org_id, _grants.c.grant_id == grant.id
            )
        ).first()
        if stored is not None:
            return StoredGrant(stored.seq, grant.id, document, stored.received_at)
        if bytes_stored + len(document) > quota:
            raise ApiError(
                ErrorCode.QUOTA_EXCEEDED,
                429,
                "the organisation's storage quota is used up",
                headers={"Retry-After": "3600"},
                retry_after=3600,
            )
        last = conn.execute(
            select(func.max(_grants.c.seq)).where(_grants.c.org_id == org_id)
        ).scalar()
        seq = int(last or 0) + 1
        conn.execute(
            insert(_grants).values(
                org_id=org_id,
                seq=seq,
                grant_id=grant.id,
                granter=grant.granter,
                grantee=grant.grantee,
                received_at=now,
                document=document,
            )
        )
        conn.execute(
            update(_orgs)
            .where(_orgs.c.id == org_id)
            .values(bytes_stored=_orgs.c.bytes_stored + len(document))
        )
    return StoredGrant(seq, grant.id, document, now, created=True)


def list_grants(
    *, engine: Engine, org_id: bytes, after: int, limit: int
) -> tuple[list[StoredGrant], bool]:
    """The organisation's grants after position ``after``, ascending; and whether more follow."""
    with read_tx(engine) as conn:
        rows = conn.execute(
            select(_grants.c.seq, _grants.c.grant_id, _grants.c.document, _grants.c.received_at)
            .where(_grants.c.org_id == org_id, _grants.c.seq > after)
            .order_by(_grants.c.seq)
            .limit(limit + 1)
        ).all()
    items = [StoredGrant(r.seq, r.grant_id, r.document, r.received_at) for r in rows[:limit]]
    return items, len(rows) > limit


def post_rotation(
    *,
    engine: Engine,
    org_id: bytes,
    document: bytes,
    caller: bytes,
    caller_key: VerifyKey,
    now: int,
) -> tuple[RotationRequest, bool]:
    """Keep a rotation request signed by the calling device and its new key (§19.7)."""
    try:
        request = RotationRequest.verify(document, caller_key, org_id=org_id)
    except RotationError as exc:
        raise ApiError(ErrorCode.ROTATION_INVALID, 422, exc.reason) from None
    with write_tx(engine) as conn:
        lock_org(conn, org_id)
        rows = conn.execute(
            select(_rotations.c.new_device).where(
                _rotations.c.org_id == org_id, _rotations.c.old_device == caller
            )
        ).all()
        if request.new_device in {r.new_device for r in rows}:
            return request, False
        if len(rows) >= MAX_ROTATIONS_PER_DEVICE:
            raise ApiError(
                ErrorCode.ROTATION_INVALID,
                422,
                f"at most {MAX_ROTATIONS_PER_DEVICE} rotation requests per device",
            )
        conn.execute(
            insert(_rotations).values(
                org_id=org_id,
                old_device=caller,
                new_device=request.new_device,
                received_at=now,
                document=document,
            )
        )
    return request, True


def list_rotations(*, engine: Engine, org_id: bytes) -> list[tuple[bytes, int]]:
    """Every rotation request of the organisation: (document, received_at)."""
    with read_tx(engine) as conn:
        rows = conn.execute(
            select(_rotations.c.document, _rotations.c.received_at)
            .where(_rotations.c.org_id == org_id)
            .order_by(_rotations.c.received_at, _rotations.c.old_device)
        ).all()
    return [(r.document, r.received_at) for r in rows]
