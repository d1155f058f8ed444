"""A coordinator's invites: listed with what became of them, and cancelled (PROTOCOL §6.7).

Plain functions over a `Profile` and a `Transport`, shared by `sealbox invites` and
Sealbox Desk.  The profile's ``invite/<id>`` records (clients/local/profile.py) hold, for
each invite it made, the secret, role and expiry, and ``admitted`` once it admitted a
device; a cancelled invite's record loses its secret and gains ``cancelled`` (and
``cancel_ack`` with ``used_at_cancel`` once the server acknowledged the cancellation).

Order of a cancellation: the local record first (from then on this profile admits nobody
with the invite, whatever the server says or does), then the signed cancellation to the
server.  If the server cannot be reached the invite stays cancelled here, and sending it
again (the same bytes) finishes the job.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from clients.local.profile import Profile
from clients.local.transport import Transport
from crypto import encoding
from sync.client import ListedInvite, cancel_invite_flow, drive, invites_flow
from sync.invite import InviteError, InviteState, invite_state

__all__ = [
    "Cancelled",
    "ListedRow",
    "admission_inputs",
    "cancel_invite",
    "list_invites",
    "own_invites",
]


@dataclass(frozen=True, slots=True)
class ListedRow:
    """One invite as `sealbox invites list` shows it."""

    invite_id: bytes
    role: str
    expires_at: int | None
    state: InviteState
    mine: bool  # made by this profile (it holds, or held, the secret)
    on_server: bool
    cancel_sent: bool  # the server holds a cancellation (or acknowledged ours)
    used_by: bytes | None  # the server's word, or the device this profile admitted

    def to_json(self) -> dict[str, Any]:
        return {
            "invite_id": self.invite_id.hex(),
            "role": self.role,
            "expires_at": self.expires_at,
            "state": str(self.state),
            "mine": self.mine,
            "on_server": self.on_server,
            "cancel_sent": self.cancel_sent,
            "used_by": self.used_by.hex() if self.used_by else None,
        }


@dataclass(frozen=True, slots=True)
class Cancelled:
    """What `cancel_invite` did: the device the server says had used the invite, if any."""

    invite_id: bytes
    used_by: bytes | None
    admitted: bool  # that device is already in the roster: revoke it


def _records(profile: Profile) -> dict[bytes, dict[str, Any]]:
    return {bytes.fromhex(n): encoding.decode(p) for n, p in profile.store.items("invite")}


def admission_inputs(
    records: dict[bytes, dict[str, Any]],
) -> tuple[dict[bytes, bytes], frozenset[bytes], dict[bytes, bytes | None]]:
    """From the invite records: the secrets of invites that may still admit a device, the
    invites this profile cancelled, and the server's ``used_by`` when it acknowledged each
    cancellation (`sync.client.SyncInputs`)."""
    secrets = {
        i: bytes(r["secret"])
        for i, r in records.items()
        if r.get("secret") and not r.get("admitted") and not r.get("cancelled")
    }
    cancelled = frozenset(i for i, r in records.items() if r.get("cancelled"))
    acknowledged = {
        i: (bytes(r["used_at_cancel"]) if r.get("used_at_cancel") else None)
        for i, r in records.items()
        if r.get("cancelled") and r.get("cancel_ack")
    }
    return secrets, cancelled, acknowledged


def list_invites(
    profile: Profile, transport: Transport, *, now: int | None = None
) -> list[ListedRow]:
    """Every invite of the organisation the server lists (verified), and this profile's own
    that it does not, with their state at ``now`` (default: this machine's clock)."""
    now = int(time.time()) if now is None else now
    listed: list[ListedInvite] = drive(
        invites_flow(org_path=profile.org_path, chain=profile.roster_chain()), transport.send
    )
    records = _records(profile)
    rows = []
    for item in listed:
        invite = item.invite
        record = records.pop(invite.invite_id, {})
        admitted = bytes(record["admitted"]) if record.get("admitted") else None
        used_by = admitted or item.used_by
        cancelled = item.cancelled or bool(record.get("cancelled"))
        state = invite_state(invite, used=used_by is not None, cancelled=cancelled, now=now)
        sent = item.cancelled or bool(record.get("cancel_ack"))
        rows.append(
            ListedRow(invite.invite_id, str(invite.role), invite.expires_at, state,
                      bool(record), True, sent, used_by)
        )  # fmt: skip
    return rows + _own_rows(records, now)


def own_invites(profile: Profile, *, now: int | None = None) -> list[ListedRow]:
    """This profile's own invites as it recorded them, without asking the server (what the
    Desk shows when the server cannot be reached): ``on_server`` is False for every row."""
    return _own_rows(_records(profile), int(time.time()) if now is None else now)


def _own_rows(records: dict[bytes, dict[str, Any]], now: int) -> list[ListedRow]:
    rows = []
    for invite_id, record in records.items():
        expires = record.get("expires_at")
        state = (
            InviteState.CANCELLED if record.get("cancelled")
            else InviteState.USED if record.get("admitted")
            else InviteState.EXPIRED if isinstance(expires, int) and expires <= now
            else InviteState.CREATED
        )  # fmt: skip
        admitted = bytes(record["admitted"]) if record.get("admitted") else None
        rows.append(
            ListedRow(invite_id, str(record.get("role", "?")), expires, state, True, False,
                      bool(record.get("cancel_ack")), admitted)
        )  # fmt: skip
    return rows


def cancel_invite(profile: Profile, transport: Transport, invite_id: bytes) -> Cancelled:
    """Cancel ``invite_id`` here, then on the server (idempotent: cancelling again is safe).

    Raises:
        InviteError: this profile already admitted a device with it (revoke the device).
        SyncRefused, NetworkError, ServerMisbehaved: the server was not told; a local
            record, if this profile made the invite, stays cancelled.
    """
    name = invite_id.hex()
    record = profile.store.get_cbor("invite", name)
    if record is not None:
        if record.get("admitted"):
            device = bytes(record["admitted"]).hex()
            raise InviteError(
                f"this invite already admitted device {device}: revoke the device instead"
                f" (sealbox devices revoke {device[:12]})"
            )
        record = {k: v for k, v in record.items() if k != "secret"} | {"cancelled": True}
        profile.store.put_cbor("invite", name, record)  # forgotten here before anything is sent
    answer = drive(
        cancel_invite_flow(
            org_path=profile.org_path,
            org_id=profile.org_id,
            invite_id=invite_id,
            signing_key=profile.signing_key,
        ),
        transport.send,
    )
    record = dict(record or {"cancelled": True})
    record.update(cancel_ack=True, used_at_cancel=answer.used_by)
    profile.store.put_cbor("invite", name, record)
    member = profile.roster.roster.member(answer.used_by) if answer.used_by else None
    return Cancelled(invite_id, answer.used_by, member is not None)
