"""Enrollment answers, admission and revocation (PROTOCOL §6, §15.7).

Rules:
* Only the coordinator who issued an invite admits the device enrolled with it: the
  enrollment is self-signed, bound (organisation, invite id, role) to an invite a
  coordinator of the trusted roster signed, and its sealed label opens with the
  invite secret, which the server (holding only its hash) cannot produce.  Several
  claims on one invite admit nobody; an admitted invite admits nobody else.
* Enrollments bound to any coordinator's invite vouch for a device *pending
  admission*: readers may show its content, flagged (§6.6).
* A cancelled invite (PROTOCOL §6.7) admits nobody and vouches for nobody, whether
  this coordinator cancelled it (``cancelled``: it knows without asking the server)
  or the server serves a cancellation signed by a coordinator of the trusted roster.
  A device that enrolled with an invite this coordinator cancelled while the server
  said it was unused means the server accepted the enrollment after the cancellation:
  that is said as a refusal naming the server.
* Revocation sets ``revoked_after`` to the device's watermark on the server; revoking
  a device already revoked changes nothing (no new roster version).
* `verify_enrollment` checks a device's enrollment answer against its invite code:
  the roster chain passes through the pinned fingerprint, and the invite is signed by
  a coordinator of that chain and matches the code.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from crypto import SignedDocument, SigningKey, VerificationFailed
from crypto.suite import Purpose
from sync.client.events import AdmissionRefused, DevicesAdmitted
from sync.client.flow import Flow, Request, Response, ServerMisbehaved, decode, expect
from sync.invite import (
    Enrollment,
    Invite,
    InviteCancel,
    InviteCode,
    InviteError,
    open_label,
    secret_hash,
)
from sync.messages import DeviceInfo, DeviceList, EnrollResponse, b64encode
from sync.roster import Member, Role, Roster, RosterError, SignedRoster, verify_chain

__all__ = [
    "Admission",
    "admit_flow",
    "cancelled_invite",
    "devices_flow",
    "revoke_flow",
    "verify_enrollment",
]


def devices_flow(*, org_path: str) -> Flow[DeviceList]:
    """The server's list of the organisation's devices, bounded and validated."""
    response = yield Request("GET", f"{org_path}/devices", max_answer_bytes=32 * 1024 * 1024)
    return decode(expect(response, 200), DeviceList, what="devices")


def _verified_enrollment(
    device: DeviceInfo, roster: SignedRoster
) -> tuple[Enrollment, bytes] | None:
    """(enrollment, invite signer) if bound to an invite signed by a coordinator of ``roster``."""
    if device.enrollment is None or device.invite is None:
        return None
    try:
        enrollment, _ = Enrollment.parse_and_verify(device.enrollment)
        invite_doc = SignedDocument.parse(device.invite, Purpose.INVITE_SIGNATURE)
    except (VerificationFailed, InviteError, ValueError):
        return None
    signer = roster.roster.member(invite_doc.signer)
    if signer is None or signer.role is not Role.COORDINATOR:
        return None
    try:
        invite = Invite.verify(invite_doc, signer.signing_key)
    except (VerificationFailed, InviteError):
        return None
    if not enrollment.matches(invite) or enrollment.org_id != roster.roster.org_id:
        return None
    return enrollment, invite_doc.signer


def cancelled_invite(document: bytes | None, roster: SignedRoster) -> bytes | None:
    """The invite id a served cancellation cancels, if a coordinator of ``roster`` (active or
    revoked since: a cancellation only ever denies) signed it for this organisation."""
    if document is None:
        return None
    try:
        claimed, parsed = InviteCancel.peek(document)
        signer = roster.roster.member(parsed.signer)
        if signer is None or signer.role is not Role.COORDINATOR:
            return None
        InviteCancel.verify(parsed, signer.signing_key)
    except VerificationFailed:
        return None
    return claimed.invite_id if claimed.org_id == roster.roster.org_id else None


def _cancel_refusal(
    invite_id: bytes, device_id: bytes, acknowledged: Mapping[bytes, bytes | None]
) -> str:
    text = (
        f"invite {invite_id.hex()[:12]} was cancelled: device {device_id.hex()[:12]}, enrolled"
        " with it, is not admitted"
    )
    if invite_id in acknowledged and acknowledged[invite_id] != device_id:
        # When we cancelled, the server said this device had not enrolled with it.
        text += " (SERVER MISBEHAVED: it accepted this enrollment after the invite was cancelled)"
    return text


def _holds_secret(enrollment: Enrollment, secret: bytes) -> bool:
    try:
        open_label(
            enrollment.sealed_label,
            secret=secret,
            invite_id=enrollment.invite_id,
            device_id=enrollment.device_id,
        )
    except VerificationFailed:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Admission:
    """What `admit_flow` did: the newest roster, the enrollments that vouch for devices
    pending admission (with their documents), the devices admitted now, and refusals."""

    roster: SignedRoster
    verified: tuple[Enrollment, ...]
    documents: tuple[bytes, ...]
    admitted: tuple[tuple[bytes, bytes], ...]  # (invite id, device id)
    refused: tuple[str, ...]


def _admission(
    devices: DeviceList,
    trusted: SignedRoster,
    me: bytes,
    invite_secrets: Mapping[bytes, bytes],
    cancelled: Collection[bytes],
    acknowledged: Mapping[bytes, bytes | None],
) -> tuple[Admission, Roster | None]:
    verified: list[Enrollment] = []
    documents: list[bytes] = []
    claims: dict[bytes, list[Enrollment]] = {}
    refused: list[str] = []
    for device in devices.devices:
        found = _verified_enrollment(device, trusted)
        if found is None:
            continue
        enrollment, issuer = found
        invite_id = enrollment.invite_id
        if invite_id in cancelled or cancelled_invite(device.cancellation, trusted) == invite_id:
            if trusted.roster.member(enrollment.device_id) is None:
                refused.append(_cancel_refusal(invite_id, enrollment.device_id, acknowledged))
            continue
        verified.append(enrollment)
        documents.append(device.enrollment or b"")
        if trusted.roster.member(enrollment.device_id) is None and issuer == me:
            claims.setdefault(enrollment.invite_id, []).append(enrollment)
    roster = trusted.roster
    admitted: list[tuple[bytes, bytes]] = []
    for invite_id, enrollments in sorted(claims.items()):
        secret = invite_secrets.get(invite_id)
        if secret is None:
            continue  # already used, or not ours to admit
        proven = [e for e in enrollments if _holds_secret(e, secret)]
        if len(proven) != 1 or len(enrollments) != 1:
            refused.append(
                f"invite {invite_id.hex()[:12]}: {len(enrollments)} enrollments,"
                f" {len(proven)} proving the invite secret; none admitted"
            )
            continue
        enrollment = proven[0]
        member = Member(
            enrollment.device_id,
            enrollment.signing_key,
            enrollment.role,
            enrollment.kem_key if enrollment.role is Role.COORDINATOR else None,
        )
        roster = roster.with_member(member)
        admitted.append((invite_id, enrollment.device_id))
    result = Admission(trusted, tuple(verified), tuple(documents), tuple(admitted), tuple(refused))
    return result, (roster.next_version(trusted) if admitted else None)


def admit_flow(
    *,
    org_path: str,
    trusted: SignedRoster,
    signing_key: SigningKey,
    invite_secrets: Mapping[bytes, bytes],
    devices: DeviceList,
    cancelled: Collection[bytes] = (),
    acknowledged: Mapping[bytes, bytes | None] | None = None,
) -> Flow[Admission]:
    """Admit the devices enrolled with invites this coordinator issued (PROTOCOL §6.5, §15.7).

    ``invite_secrets`` maps the id of each unused invite this coordinator signed to its
    secret; ``devices`` is the server's device list (fetched once per sync);
    ``cancelled`` holds the invites this coordinator cancelled, and ``acknowledged`` maps
    those the server acknowledged to the device it said had used it then (None: unused)
    (§6.7).  Yields `AdmissionRefused` for each refused invite and `DevicesAdmitted` at
    the end.
    """
    admission, unsigned = _admission(
        devices,
        trusted,
        signing_key.verify_key.key_id,
        invite_secrets,
        frozenset(cancelled),
        acknowledged or {},
    )
    for reason in admission.refused:
        yield AdmissionRefused(reason)
    if unsigned is not None:
        candidate = unsigned.sign(signing_key)
        body = {"roster": b64encode(candidate.to_bytes())}
        expect((yield Request("POST", f"{org_path}/roster", body)), 200, 201)
        admission = Admission(
            candidate,
            admission.verified,
            admission.documents,
            admission.admitted,
            admission.refused,
        )
    yield DevicesAdmitted(admission.roster, admission.admitted, admission.documents)
    return admission


def revoke_flow(
    *, org_path: str, trusted: SignedRoster, signing_key: SigningKey, device_id: bytes
) -> Flow[SignedRoster]:
    """Revoke ``device_id`` at its current server watermark in a new roster version.

    A device already revoked in ``trusted`` is left as it is: ``trusted`` is returned and
    nothing is sent (the point could only move earlier, and no new version is needed).
    """
    member = trusted.roster.member(device_id)
    if member is None:
        raise KeyError("no such member in the roster")
    if member.revoked_after is not None:
        return trusted
    devices = yield from devices_flow(org_path=org_path)
    watermark = next((d.watermark for d in devices.devices if d.device_id == device_id), 0)
    candidate = (
        trusted.roster.revoke(device_id, after_seq=watermark)
        .next_version(trusted)
        .sign(signing_key)
    )
    body = {"roster": b64encode(candidate.to_bytes())}
    expect((yield Request("POST", f"{org_path}/roster", body)), 200, 201)
    return candidate


def verify_enrollment(
    code: InviteCode, response: Response
) -> tuple[SignedRoster, Invite, list[SignedRoster]]:
    """Check the server's answer to an enrollment against the invite code.

    Returns the newest roster, the invite, and the whole verified chain.

    Raises:
        ServerMisbehaved: if anything does not match.
    """
    answer = decode(response, EnrollResponse, what="enrollment")
    try:
        versions = [SignedRoster.parse(v) for v in answer.rosters]
        newest = verify_chain(versions, pinned_fingerprint=code.roster_fingerprint)
        document = SignedDocument.parse(answer.invite, Purpose.INVITE_SIGNATURE)
    except (RosterError, VerificationFailed, ValueError) as exc:
        raise ServerMisbehaved(f"the server's roster or invite does not verify: {exc}") from exc
    signer = None
    for version in versions:
        member = version.roster.member(document.signer)
        if member is not None and member.role is Role.COORDINATOR:
            signer = member
    if signer is None:
        raise ServerMisbehaved("the invite is not signed by a coordinator of the pinned roster")
    try:
        invite = Invite.verify(document, signer.signing_key)
    except (VerificationFailed, InviteError) as exc:
        raise ServerMisbehaved("the invite signature does not verify") from exc
    if (
        invite.invite_id != code.invite_id
        or invite.org_id != code.org_id
        or invite.secret_hash != secret_hash(code.secret)
        or newest.roster.org_id != code.org_id
    ):
        raise ServerMisbehaved("the invite does not match the invite code")
    return newest, invite, versions
