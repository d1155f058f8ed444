"""Revoking a roster member (PROTOCOL §5.5): the rules, shared by `sealbox devices revoke`
and Sealbox Desk.

Order: the roster is read fresh from the server and verified (a member admitted or revoked
since this profile last synced counts), the member is found by an id prefix that matches
exactly one, and then:

* the last active coordinator may revoke itself only where a recovery key is set up
  (PROTOCOL §20, rule R5): otherwise nobody could read new reports or admit a device;
* a member already revoked needs no version (its point could only move earlier);
* else a new roster version signed by this coordinator revokes it after the last seq the
  server holds of it, and the profile adopts that version.
"""

from __future__ import annotations

from dataclasses import dataclass

from clients.local.profile import Profile
from clients.local.transport import Transport
from sync.client import RosterVerified, drive, revoke_flow, roster_flow
from sync.roster import SignedRoster

__all__ = ["RevocationRefused", "Revoked", "revoke_member"]


class RevocationRefused(Exception):
    """Nothing was signed; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Revoked:
    device_id: bytes
    revoked_after: int
    roster_version: int
    already_revoked: bool


def _fresh_roster(profile: Profile, transport: Transport) -> SignedRoster:
    def adopt(event: object) -> None:
        if isinstance(event, RosterVerified):
            for version in event.fresh:
                profile.set_roster(version)

    roster: SignedRoster = drive(
        roster_flow(org_path=profile.org_path, trusted=profile.roster), transport.send, adopt
    ).roster
    return roster


def revoke_member(profile: Profile, transport: Transport, device_prefix: str) -> Revoked:
    """Revoke the roster member whose id starts with ``device_prefix`` (hex, any case)."""
    roster = _fresh_roster(profile, transport)
    prefix = device_prefix.strip().lower()
    matches = [m.device_id for m in roster.roster.members if m.device_id.hex().startswith(prefix)]
    if not prefix or len(matches) != 1:
        raise RevocationRefused(
            f"no single roster member matches {device_prefix!r}"
            " (a device is revocable once admitted: sync first)"
        )
    target = matches[0]
    if target == profile.device_id:
        others = [m for m in roster.roster.active_coordinators() if m.device_id != target]
        if not others and roster.roster.recovery is None:
            raise RevocationRefused(
                "this is the last active coordinator: revoked, no one could read new"
                " reports or admit a device; set up recovery first (`sealbox recovery"
                " setup`) or admit another coordinator"
            )
    member = roster.roster.member(target)
    if member is not None and member.revoked_after is not None:
        return Revoked(target, member.revoked_after, roster.roster.version, already_revoked=True)
    new = drive(
        revoke_flow(
            org_path=profile.org_path,
            trusted=roster,
            signing_key=profile.signing_key,
            device_id=target,
        ),
        transport.send,
    )
    profile.set_roster(new)
    revoked = new.roster.member(target)
    assert revoked is not None and revoked.revoked_after is not None
    return Revoked(target, revoked.revoked_after, new.roster.version, already_revoked=False)
