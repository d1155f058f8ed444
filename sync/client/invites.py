"""Listing and cancelling invites (PROTOCOL §6.7): the flows, free of I/O.

Rules:
* `cancel_invite_flow` signs ``{"o", "i"}`` with the coordinator's key and sends it; the
  answer names the invite and the device the server says enrolled with it (None: unused).
  The same cancellation sent again gets the same answer (idempotent).
* `invites_flow` lists the organisation's invites as the server holds them.  Every invite
  document is verified against a coordinator of the verified roster chain and every
  served cancellation likewise; a forged invite is `ServerMisbehaved`, a cancellation
  that does not verify is ignored (the invite is then shown as not cancelled on the
  server).  Whether an invite was used is the server's word (``used_by``), not proven.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from crypto import SignedDocument, SigningKey, VerificationFailed
from crypto.suite import Purpose
from sync.client.admission import cancelled_invite
from sync.client.flow import Flow, Request, ServerMisbehaved, decode, expect
from sync.invite import Invite, InviteCancel, InviteError
from sync.messages import InviteCancelResponse, InviteList, b64encode
from sync.roster import Role, SignedRoster

__all__ = ["CancelAnswer", "ListedInvite", "cancel_invite_flow", "invites_flow"]


@dataclass(frozen=True, slots=True)
class CancelAnswer:
    """The signed cancellation sent, and who the server says had used the invite."""

    document: bytes
    used_by: bytes | None


@dataclass(frozen=True, slots=True)
class ListedInvite:
    invite: Invite
    signer: bytes
    used_by: bytes | None
    cancelled: bool  # a verified cancellation is on the server


def cancel_invite_flow(
    *, org_path: str, org_id: bytes, invite_id: bytes, signing_key: SigningKey
) -> Flow[CancelAnswer]:
    """Send a signed cancellation of ``invite_id``; the server's answer, checked."""
    document = InviteCancel(org_id, invite_id).sign(signing_key).to_bytes()
    body = {"cancellation": b64encode(document)}
    response = yield Request("POST", f"{org_path}/invites/cancel", body)
    answer = decode(expect(response, 200), InviteCancelResponse, what="invite cancellation")
    if answer.invite_id != invite_id:
        raise ServerMisbehaved("the server answered a cancellation for another invite")
    return CancelAnswer(document, answer.used_by)


def _signer(document: SignedDocument, chain: Sequence[SignedRoster]) -> Invite | None:
    for version in reversed(chain):
        member = version.roster.member(document.signer)
        if member is not None and member.role is Role.COORDINATOR:
            try:
                return Invite.verify(document, member.signing_key)
            except (VerificationFailed, InviteError):
                return None
    return None


def invites_flow(*, org_path: str, chain: Sequence[SignedRoster]) -> Flow[list[ListedInvite]]:
    """The organisation's invites as the server lists them, each verified against ``chain``
    (the verified roster versions, oldest first)."""
    response = yield Request("GET", f"{org_path}/invites", max_answer_bytes=16 * 1024 * 1024)
    listing = decode(expect(response, 200), InviteList, what="invites")
    org_id = chain[-1].roster.org_id
    out = []
    for item in listing.invites:
        try:
            document = SignedDocument.parse(item.invite, Purpose.INVITE_SIGNATURE)
        except VerificationFailed:
            raise ServerMisbehaved("the server lists an invite that is not signed") from None
        invite = _signer(document, chain)
        if invite is None or invite.org_id != org_id:
            raise ServerMisbehaved("the server lists an invite no coordinator of ours signed")
        cancelled = any(cancelled_invite(item.cancellation, v) == invite.invite_id for v in chain)
        out.append(ListedInvite(invite, document.signer, item.used_by, cancelled))
    return out
