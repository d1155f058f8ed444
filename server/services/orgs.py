"""Organisations, roster versions, invites, enrollment and the device list.

Each public function owns one transaction.  Roster versions are stored exactly as
signed; every stored version updates the devices table (admitted / revoked /
removed) and marks envelopes signed after a revocation point (flag bit 1).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, and_, insert, select, update

from crypto import Purpose, SignedDocument, SigningKey, VerificationFailed
from server.db import read_tx, write_tx
from server.errors import ApiError
from server.services.store import FLAG_REVOKED, lock_org
from server.tables import Device, EnvelopeRow, InviteRow, Org, RosterFreshness, RosterVersion
from sync.dag import holes
from sync.errors import ErrorCode
from sync.freshness import MAX_SKEW, Freshness
from sync.invite import Enrollment, Invite, InviteError, secret_hash
from sync.roster import Role, RosterError, SignedRoster, check_successor

__all__ = [
    "DeviceRecord",
    "EnrollResult",
    "create_org",
    "enroll",
    "list_devices",
    "post_freshness",
    "post_roster",
    "roster_answer",
    "register_invite",
    "roster_versions",
]

_orgs = Org.__table__  # type: ignore[attr-defined]
_rosters = RosterVersion.__table__  # type: ignore[attr-defined]
_devices = Device.__table__  # type: ignore[attr-defined]
_invites = InviteRow.__table__  # type: ignore[attr-defined]
_envelopes = EnvelopeRow.__table__  # type: ignore[attr-defined]
_freshness = RosterFreshness.__table__  # type: ignore[attr-defined]


def _parse_roster(data: bytes) -> SignedRoster:
    try:
        return SignedRoster.parse(data)
    except RosterError as exc:
        raise ApiError(ErrorCode.ROSTER_INVALID, 422, str(exc), rule=exc.rule) from None


def _apply_roster(conn: Connection, org_id: bytes, signed: SignedRoster) -> None:
    """Store a checked version and bring the devices table in line with it."""
    roster = signed.roster
    conn.execute(
        insert(_rosters).values(
            org_id=org_id, version=roster.version, hash=signed.hash, document=signed.to_bytes()
        )
    )
    recovery = roster.recovery.signing_key.raw if roster.recovery is not None else None
    conn.execute(
        update(_orgs)
        .where(_orgs.c.id == org_id)
        .values(roster_version=roster.version, recovery_key=recovery)
    )
    existing = {
        row.device_id: row
        for row in conn.execute(select(_devices).where(_devices.c.org_id == org_id))
    }
    listed = set()
    for m in roster.members:
        listed.add(m.device_id)
        state = "admitted" if m.revoked_after is None else "revoked"
        values: dict[str, Any] = dict(
            signing_key=m.signing_key.raw,
            role=str(m.role),
            state=state,
            revoked_after=m.revoked_after,
        )
        old = existing.get(m.device_id)
        if old is None:
            values.update(admitted_version=roster.version)
            if m.revoked_after is not None:
                values.update(revoked_in_version=roster.version)
            conn.execute(insert(_devices).values(org_id=org_id, device_id=m.device_id, **values))
            continue
        if old.admitted_version is None:
            values.update(admitted_version=roster.version)
        if m.revoked_after is not None and old.revoked_after != m.revoked_after:
            values.update(revoked_in_version=roster.version)
        conn.execute(
            update(_devices)
            .where(_devices.c.org_id == org_id, _devices.c.device_id == m.device_id)
            .values(**values)
        )
        if m.revoked_after is not None:
            conn.execute(
                update(_envelopes)
                .where(
                    _envelopes.c.org_id == org_id,
                    _envelopes.c.device_id == m.device_id,
                    _envelopes.c.device_seq > m.revoked_after,
                )
                .values(flags=_envelopes.c.flags.op("|")(FLAG_REVOKED))
            )
    for device_id, old in existing.items():
        if device_id not in listed and old.admitted_version is not None and old.state != "removed":
            conn.execute(
                update(_devices)
                .where(_devices.c.org_id == org_id, _devices.c.device_id == device_id)
                .values(state="removed")
            )


def create_org(*, engine: Engine, roster_bytes: bytes, server_key: SigningKey, today: int) -> bytes:
    """Create an organisation from its genesis roster. Returns the org id."""
    signed = _parse_roster(roster_bytes)
    try:
        check_successor(None, signed)
    except RosterError as exc:
        raise ApiError(ErrorCode.ROSTER_INVALID, 422, str(exc), rule=exc.rule) from None
    if signed.roster.server_key != server_key.verify_key:
        raise ApiError(
            ErrorCode.ROSTER_INVALID,
            422,
            "the roster pins another server key; fetch it from GET /v1/server",
            rule="server_key",
        )
    org_id = signed.roster.org_id
    with write_tx(engine) as conn:
        if conn.execute(select(_orgs.c.id).where(_orgs.c.id == org_id)).first() is not None:
            raise ApiError(ErrorCode.ORG_EXISTS, 409, "an organisation with this id exists")
        conn.execute(insert(_orgs).values(id=org_id, created_day=today, last_seq=0))
        _apply_roster(conn, org_id, signed)
    return org_id


def roster_versions(*, engine: Engine, org_id: bytes, since: int) -> list[bytes]:
    """Every stored version with number > ``since``, ascending."""
    with read_tx(engine) as conn:
        rows = conn.execute(
            select(_rosters.c.document)
            .where(_rosters.c.org_id == org_id, _rosters.c.version > since)
            .order_by(_rosters.c.version)
        )
        return [row.document for row in rows]


def roster_answer(*, engine: Engine, org_id: bytes, since: int) -> tuple[list[bytes], bytes | None]:
    """The versions newer than ``since`` and the newest freshness statement, read together."""
    with read_tx(engine) as conn:
        rows = conn.execute(
            select(_rosters.c.document)
            .where(_rosters.c.org_id == org_id, _rosters.c.version > since)
            .order_by(_rosters.c.version)
        )
        versions = [row.document for row in rows]
        stored = conn.execute(
            select(_freshness.c.document).where(_freshness.c.org_id == org_id)
        ).first()
        return versions, stored.document if stored is not None else None


def post_freshness(*, engine: Engine, org_id: bytes, document: bytes, now: int) -> Freshness:
    """Keep a coordinator-signed freshness statement if it is the newest (PROTOCOL §18.2);
    returns the statement now served."""

    def invalid(detail: str) -> ApiError:
        return ApiError(ErrorCode.FRESHNESS_INVALID, 422, detail)

    try:
        claimed, _ = Freshness.peek(document)
    except VerificationFailed:
        raise invalid("not a well-formed signed freshness statement") from None
    if claimed.org_id != org_id:
        raise invalid("the statement is for another organisation")
    if claimed.expires_at <= now:
        raise invalid("the statement has expired")
    if claimed.issued_at > now + MAX_SKEW:
        raise invalid("the statement is dated in the future: check the coordinator's clock")
    with write_tx(engine) as conn:
        lock_org(conn, org_id)
        latest = _latest(conn, org_id)
        if claimed.version > latest.roster.version:
            raise invalid("the statement names a roster version this server does not hold")
        if claimed.version < latest.roster.version:
            raise ApiError(
                ErrorCode.ROSTER_CONFLICT,
                409,
                "a newer roster version exists; fetch the roster and sign for it",
                current_version=latest.roster.version,
            )
        try:
            statement = Freshness.verify(document, latest)
        except VerificationFailed:
            raise invalid(
                "the statement is not signed by an active coordinator of the version it names,"
                " or names another fingerprint"
            ) from None
        stored = conn.execute(select(_freshness).where(_freshness.c.org_id == org_id)).first()
        if stored is not None and (stored.version, stored.issued_at) >= (
            statement.version,
            statement.issued_at,
        ):
            return Freshness.peek(stored.document)[0]
        values = dict(version=statement.version, issued_at=statement.issued_at, document=document)
        if stored is None:
            conn.execute(insert(_freshness).values(org_id=org_id, **values))
        else:
            conn.execute(update(_freshness).where(_freshness.c.org_id == org_id).values(**values))
        return statement


def _latest(conn: Connection, org_id: bytes) -> SignedRoster:
    row = conn.execute(
        select(_rosters.c.document)
        .where(_rosters.c.org_id == org_id)
        .order_by(_rosters.c.version.desc())
        .limit(1)
    ).one()
    return SignedRoster.parse(row.document)


def post_roster(
    *, engine: Engine, org_id: bytes, roster_bytes: bytes, server_key: SigningKey
) -> int:
    """Append a version that extends the chain (idempotent for the stored version)."""
    candidate = _parse_roster(roster_bytes)
    if candidate.roster.org_id != org_id:
        raise ApiError(ErrorCode.ROSTER_INVALID, 422, "the roster is for another organisation")
    with write_tx(engine) as conn:
        lock_org(conn, org_id)
        latest = _latest(conn, org_id)
        version = candidate.roster.version
        if version <= latest.roster.version:
            stored = conn.execute(
                select(_rosters.c.hash).where(
                    _rosters.c.org_id == org_id, _rosters.c.version == version
                )
            ).one()
            if stored.hash == candidate.hash:
                return version
            raise ApiError(
                ErrorCode.ROSTER_CONFLICT,
                409,
                "another roster version with this number exists; fetch the roster and rebase",
                current_version=latest.roster.version,
            )
        try:
            check_successor(latest, candidate)
        except RosterError as exc:
            raise ApiError(ErrorCode.ROSTER_INVALID, 422, str(exc), rule=exc.rule) from None
        if candidate.roster.server_key != server_key.verify_key:
            raise ApiError(
                ErrorCode.ROSTER_INVALID, 422, "the roster pins another server key", rule="R5"
            )
        _apply_roster(conn, org_id, candidate)
        return version


def register_invite(
    *, engine: Engine, org_id: bytes, document_bytes: bytes, now: int, max_lifetime: int
) -> Invite:
    """Store a coordinator-signed invite (only the hash of its secret is in it)."""
    try:
        document = SignedDocument.parse(document_bytes, Purpose.INVITE_SIGNATURE)
    except VerificationFailed:
        raise ApiError(ErrorCode.INVITE_INVALID, 422, "not a signed invite document") from None
    with write_tx(engine) as conn:
        lock_org(conn, org_id)
        roster = _latest(conn, org_id).roster
        signer = roster.member(document.signer)
        if signer is None or signer.role is not Role.COORDINATOR or not signer.active:
            raise ApiError(
                ErrorCode.INVITE_INVALID, 422, "the invite is not signed by an active coordinator"
            )
        try:
            invite = Invite.verify(document, signer.signing_key)
        except (VerificationFailed, InviteError):
            raise ApiError(ErrorCode.INVITE_INVALID, 422, "the invite does not verify") from None
        if invite.org_id != org_id:
            raise ApiError(ErrorCode.INVITE_INVALID, 422, "the invite is for another organisation")
        if not now < invite.expires_at <= now + max_lifetime:
            raise ApiError(
                ErrorCode.INVITE_INVALID,
                422,
                f"the invite must expire in the future and within {max_lifetime} s",
            )
        known = conn.execute(
            select(_rosters.c.version).where(
                _rosters.c.org_id == org_id, _rosters.c.hash == invite.roster_fingerprint
            )
        ).first()
        if known is None:
            raise ApiError(
                ErrorCode.INVITE_INVALID, 422, "the invite pins an unknown roster fingerprint"
            )
        existing = conn.execute(
            select(_invites.c.document).where(
                _invites.c.org_id == org_id, _invites.c.invite_id == invite.invite_id
            )
        ).first()
        if existing is not None:
            if existing.document == document.to_bytes():
                return invite
            raise ApiError(ErrorCode.INVITE_EXISTS, 409, "an invite with this id exists")
        conn.execute(
            insert(_invites).values(
                org_id=org_id,
                invite_id=invite.invite_id,
                secret_hash=invite.secret_hash,
                role=str(invite.role),
                expires_at=invite.expires_at,
                document=document.to_bytes(),
            )
        )
    return invite


@dataclass(frozen=True, slots=True)
class EnrollResult:
    device_id: bytes
    invite: bytes
    rosters: list[bytes]


def enroll(
    *, engine: Engine, org_id: bytes, enrollment_bytes: bytes, secret: bytes, now: int
) -> EnrollResult:
    """Register a device key with a single-use invite (retry-safe for the same enrollment)."""
    unusable = ApiError(
        ErrorCode.INVITE_UNUSABLE,
        403,
        "the invite is unknown, expired, used, or the secret is wrong",
    )
    try:
        enrollment, document = Enrollment.parse_and_verify(enrollment_bytes)
    except VerificationFailed:
        raise ApiError(
            ErrorCode.ENROLLMENT_INVALID, 422, "the enrollment is malformed or not self-signed"
        ) from None
    if enrollment.org_id != org_id:
        raise ApiError(ErrorCode.ENROLLMENT_INVALID, 422, "the enrollment is for another org")
    device_id = enrollment.device_id
    with write_tx(engine) as conn:
        lock_org(conn, org_id)
        row = conn.execute(
            select(_invites).where(
                _invites.c.org_id == org_id, _invites.c.invite_id == enrollment.invite_id
            )
        ).first()
        if row is None or not hmac.compare_digest(row.secret_hash, secret_hash(secret)):
            raise unusable
        if row.cancellation is not None:  # said only to whoever holds the secret (§6.7)
            raise ApiError(
                ErrorCode.INVITE_CANCELLED,
                403,
                "a coordinator cancelled this invite; ask a coordinator for a new one",
            )
        invite = Invite.from_cbor(
            SignedDocument.parse(row.document, Purpose.INVITE_SIGNATURE).unverified_body()
        )
        if row.used_by is not None:
            retry = conn.execute(
                select(_devices.c.enrollment).where(
                    _devices.c.org_id == org_id, _devices.c.device_id == device_id
                )
            ).first()
            if row.used_by != device_id or retry is None or retry.enrollment != document.to_bytes():
                raise unusable
        else:
            if row.expires_at <= now:
                raise unusable
            if not enrollment.matches(invite):
                raise ApiError(
                    ErrorCode.ENROLLMENT_INVALID,
                    422,
                    "the enrollment does not match the invite role",
                )
            if (
                conn.execute(
                    select(_devices.c.device_id).where(
                        _devices.c.org_id == org_id, _devices.c.device_id == device_id
                    )
                ).first()
                is not None
            ):
                raise ApiError(
                    ErrorCode.ENROLLMENT_INVALID, 409, "this device key is already in the org"
                )
            conn.execute(
                insert(_devices).values(
                    org_id=org_id,
                    device_id=device_id,
                    signing_key=enrollment.signing_key.raw,
                    role=str(invite.role),
                    state="enrolled",
                    enrollment=document.to_bytes(),
                    invite_id=invite.invite_id,
                )
            )
            conn.execute(
                update(_invites)
                .where(_invites.c.org_id == org_id, _invites.c.invite_id == invite.invite_id)
                .values(used_by=device_id)
            )
        rosters = [
            r.document
            for r in conn.execute(
                select(_rosters.c.document)
                .where(_rosters.c.org_id == org_id)
                .order_by(_rosters.c.version)
            )
        ]
    return EnrollResult(device_id=device_id, invite=row.document, rosters=rosters)


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    device_id: bytes
    role: str
    state: str
    signing_key: bytes
    enrollment: bytes | None
    invite: bytes | None
    cancellation: bytes | None
    admitted_version: int | None
    revoked_after: int | None
    equivocation: bool
    watermark: int
    max_seq: int
    holes: list[tuple[int, int]]


def list_devices(*, engine: Engine, org_id: bytes) -> list[DeviceRecord]:
    with read_tx(engine) as conn:
        rows = conn.execute(
            select(
                _devices,
                _invites.c.document.label("invite_document"),
                _invites.c.cancellation.label("invite_cancellation"),
            )
            .select_from(
                _devices.outerjoin(
                    _invites,
                    and_(
                        _invites.c.org_id == _devices.c.org_id,
                        _invites.c.invite_id == _devices.c.invite_id,
                    ),
                )
            )
            .where(_devices.c.org_id == org_id)
            .order_by(_devices.c.device_id)
        ).all()
        out = []
        for row in rows:
            gaps: list[tuple[int, int]] = []
            if row.max_seq > row.watermark:
                seqs = conn.execute(
                    select(_envelopes.c.device_seq).where(
                        _envelopes.c.org_id == org_id,
                        _envelopes.c.device_id == row.device_id,
                        _envelopes.c.device_seq > row.watermark,
                    )
                ).scalars()
                gaps = holes(row.watermark, seqs)
            out.append(
                DeviceRecord(
                    device_id=row.device_id,
                    role=row.role,
                    state=row.state,
                    signing_key=row.signing_key,
                    enrollment=row.enrollment,
                    invite=row.invite_document,
                    cancellation=row.invite_cancellation,
                    admitted_version=row.admitted_version,
                    revoked_after=row.revoked_after,
                    equivocation=bool(row.equivocation),
                    watermark=row.watermark,
                    max_seq=row.max_seq,
                    holes=gaps,
                )
            )
        return out
