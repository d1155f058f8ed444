"""Listing and cancelling invites (PROTOCOL §6.7, §8.1).

A cancellation is a coordinator-signed document ``{"o", "i"}``.  The server keeps the
first valid one it is sent for an invite (a second, from the same or another coordinator,
is answered as the first: cancelling is idempotent) and from then on refuses every
enrollment with that invite (`server.services.orgs.enroll`: 403 ``invite_cancelled``).
Cancelling an invite that was already used is allowed and changes nothing on the server:
the enrolled device stays enrolled, and the coordinators, who read the cancellation in
the device list, do not admit it (§6.7).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, select, update

from crypto import VerificationFailed
from server.db import read_tx, write_tx
from server.errors import ApiError
from server.services.orgs import _latest
from server.services.store import lock_org
from server.tables import InviteRow
from sync.errors import ErrorCode
from sync.invite import InviteCancel
from sync.roster import Role

__all__ = ["InviteRecord", "cancel_invite", "list_invites"]

_invites = InviteRow.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class InviteRecord:
    invite_id: bytes
    document: bytes
    used_by: bytes | None
    cancellation: bytes | None


def cancel_invite(*, engine: Engine, org_id: bytes, document_bytes: bytes) -> InviteRecord:
    """Keep a coordinator-signed cancellation; the invite as stored afterwards."""

    def invalid(detail: str) -> ApiError:
        return ApiError(ErrorCode.INVITE_INVALID, 422, detail)

    try:
        claimed, document = InviteCancel.peek(document_bytes)
    except VerificationFailed:
        raise invalid("not a well-formed signed invite cancellation") from None
    if claimed.org_id != org_id:
        raise invalid("the cancellation is for another organisation")
    with write_tx(engine) as conn:
        lock_org(conn, org_id)
        signer = _latest(conn, org_id).roster.member(document.signer)
        if signer is None or signer.role is not Role.COORDINATOR or not signer.active:
            raise invalid("the cancellation is not signed by an active coordinator")
        try:
            InviteCancel.verify(document, signer.signing_key)
        except VerificationFailed:
            raise invalid("the cancellation does not verify") from None
        where = (_invites.c.org_id == org_id, _invites.c.invite_id == claimed.invite_id)
        row = conn.execute(select(_invites).where(*where)).first()
        if row is None:
            raise ApiError(ErrorCode.NOT_FOUND, 404, "no invite with this id")
        cancellation = row.cancellation
        if cancellation is None:
            cancellation = document.to_bytes()
            conn.execute(update(_invites).where(*where).values(cancellation=cancellation))
        return InviteRecord(row.invite_id, row.document, row.used_by, cancellation)


def list_invites(*, engine: Engine, org_id: bytes) -> list[InviteRecord]:
    """Every invite of the organisation, in id order (ids are random: no order in time)."""
    with read_tx(engine) as conn:
        rows = conn.execute(
            select(
                _invites.c.invite_id,
                _invites.c.document,
                _invites.c.used_by,
                _invites.c.cancellation,
            )
            .where(_invites.c.org_id == org_id)
            .order_by(_invites.c.invite_id)
        )
        return [InviteRecord(r.invite_id, r.document, r.used_by, r.cancellation) for r in rows]
