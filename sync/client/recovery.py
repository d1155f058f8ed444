"""Setting up the recovery key and restoring with it (PROTOCOL §20.3, §20.4).

Rules:
* Setup is a coordinator's roster change: the next version carries the recovery public
  key, signed by the coordinator (`setup_version`), posted like any other version
  (`setup_flow`) once the trustees' sheets that name it exist.  Refused when the roster
  already carries one (R7: only the recovery key itself may change it).
* Restore runs on a device that trusts nothing yet but the shares and the locator: it
  fetches the whole chain, verifies it from genesis, requires the locator's fingerprint
  in it (a server cannot substitute another organisation's chain) and that the newest
  version carries the recovery key the shares derive.  Its requests are signed by the
  recovery key (the server knows it from the roster), which may only read the roster and
  devices and post a roster version.  Each device to revoke is revoked at its watermark on
  the server, as `revoke_flow` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from crypto import SigningKey
from crypto.recovery import RecoveryKey
from sync.client.admission import devices_flow
from sync.client.flow import Flow, Request, ServerMisbehaved, decode, expect
from sync.messages import RosterVersions, b64encode
from sync.recovery import RecoveryLocator, RecoveryMismatch, restore_roster, setup_roster
from sync.roster import Member, RecoveryPublicKey, RosterError, SignedRoster, verify_chain

__all__ = ["Restored", "restore_flow", "setup_flow", "setup_version"]

_ROSTER_ANSWER_BYTES = 8 * 1024 * 1024


def setup_version(
    trusted: SignedRoster, *, signing_key: SigningKey, recovery: RecoveryPublicKey
) -> SignedRoster:
    """The version of ``trusted`` that carries ``recovery``, signed (not yet posted): its
    fingerprint goes on the trustees' sheets before it is posted."""
    if trusted.roster.recovery is not None:
        raise RecoveryMismatch(
            "this organisation already has a recovery key (only it may replace it, R7)"
        )
    return setup_roster(trusted, recovery).sign(signing_key)


def setup_flow(*, org_path: str, candidate: SignedRoster) -> Flow[SignedRoster]:
    """Post the setup version made by `setup_version`; returns it."""
    body = {"roster": b64encode(candidate.to_bytes())}
    expect((yield Request("POST", f"{org_path}/roster", body)), 200, 201)
    return candidate


@dataclass(frozen=True, slots=True)
class Restored:
    """The chain the restore verified (oldest first) and the version it posted, its last."""

    chain: tuple[SignedRoster, ...]
    revoked: tuple[tuple[bytes, int], ...]

    @property
    def roster(self) -> SignedRoster:
        return self.chain[-1]


def restore_flow(
    *,
    locator: RecoveryLocator,
    recovery: RecoveryKey,
    newcomer: Member,
    revoke: Sequence[str],
) -> Flow[Restored]:
    """Admit ``newcomer`` with the recovery key and revoke the members whose id starts with
    one of ``revoke`` (hex prefixes). Requests must be signed with the recovery key.

    Raises:
        ServerMisbehaved: the served chain does not verify or lacks the locator's version.
        RecoveryMismatch: the roster carries no recovery key, or not the shares' one.
        LookupError: a prefix to revoke matches no member, or several.
    """
    org_path = f"/v1/orgs/{b64encode(locator.org_id)}"
    response = yield Request(
        "GET", f"{org_path}/roster", query={"since": "0"}, max_answer_bytes=_ROSTER_ANSWER_BYTES
    )
    answer = decode(expect(response, 200), RosterVersions, what="roster")
    try:
        versions = [SignedRoster.parse(v) for v in answer.versions]
        newest = verify_chain(versions, pinned_fingerprint=locator.roster_fingerprint)
    except (RosterError, ValueError) as exc:
        raise ServerMisbehaved(f"the served roster chain is not acceptable: {exc}") from exc
    if newest.roster.org_id != locator.org_id:
        raise ServerMisbehaved("the served roster is another organisation's")
    targets: dict[bytes, int] = {}
    wanted = [prefix.lower() for prefix in revoke]
    if wanted:
        devices = yield from devices_flow(org_path=org_path)
        watermarks = {d.device_id: d.watermark for d in devices.devices}
        for prefix in wanted:
            matches = [m for m in newest.roster.members if m.device_id.hex().startswith(prefix)]
            if len(matches) != 1:
                raise LookupError(f"no single roster member matches {prefix!r}")
            member = matches[0]
            point = watermarks.get(member.device_id, 0)
            if member.revoked_after is not None:
                point = min(point, member.revoked_after)
            targets[member.device_id] = point
    candidate = restore_roster(newest, recovery=recovery, newcomer=newcomer, revoke=targets)
    body = {"roster": b64encode(candidate.to_bytes())}
    expect((yield Request("POST", f"{org_path}/roster", body)), 200, 201)
    return Restored((*versions, candidate), tuple(sorted(targets.items())))
