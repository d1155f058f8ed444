"""Key rotation (PROTOCOL §19.7): a coordinator replaces its signing and HPKE keys.

Rules:
* The rotation is one roster version signed with the old key (R3): it adds a coordinator
  member with the new keys and revokes the old id at its watermark on the server (§5.5).
* Before that version is posted, the old identity grants (§19.2) every epoch it can open
  to the new HPKE key, signed with the old key under the version in which it is active:
  old epochs stay readable, new epochs are sealed to the new key (§4.3 item 5).
* Grants go first: once the version is stored the old key can no longer post anything.
"""

from __future__ import annotations

from crypto import KemPublicKey, SigningKey, parse_envelope
from sync.client.admission import devices_flow
from sync.client.flow import Flow, Request, decode, expect
from sync.client.grants import post_grants_flow
from sync.client.view import CoordinatorView
from sync.grant import Grant
from sync.grant_messages import RotationAnswer, RotationList
from sync.messages import b64encode
from sync.roster import Member, Role, SignedRoster
from sync.rotation import RotationError, RotationRequest, conflicting

__all__ = [
    "apply_rotation_flow",
    "request_rotation_flow",
    "rotate_coordinator_flow",
    "rotations_flow",
]


def rotate_coordinator_flow(
    *,
    org_path: str,
    trusted: SignedRoster,
    view: CoordinatorView,
    old_key: SigningKey,
    new_key: SigningKey,
    new_kem: KemPublicKey,
    issued_at: int,
) -> Flow[tuple[SignedRoster, list[Grant]]]:
    """Grant this coordinator's epochs to ``new_kem``, then post the roster version that
    admits (``new_key``, ``new_kem``) and revokes the old id. Returns both."""
    roster = trusted.roster
    old = roster.member(old_key.verify_key.key_id)
    if old is None or old.role is not Role.COORDINATOR or old.revoked_after is not None:
        raise ValueError("only an active coordinator of the trusted roster can rotate")
    devices = yield from devices_flow(org_path=org_path)
    watermark = next((d.watermark for d in devices.devices if d.device_id == old.device_id), 0)
    epochs = [
        (parse_envelope(view.envelopes[key]), ck0)
        for key, (ck0, _, _) in sorted(view._sender_keys.items())
    ]
    grants = yield from post_grants_flow(
        org_path=org_path,
        org_id=roster.org_id,
        roster_version=roster.version,
        issued_at=issued_at,
        epochs=epochs,
        recipient=new_kem,
        signing_key=old_key,
    )
    view.add_grants(g.document for g in grants)
    member = Member(new_key.verify_key.key_id, new_key.verify_key, Role.COORDINATOR, new_kem)
    candidate = (
        roster.with_member(member)
        .revoke(old.device_id, after_seq=watermark)
        .next_version(trusted)
        .sign(old_key)
    )
    body = {"roster": b64encode(candidate.to_bytes())}
    expect((yield Request("POST", f"{org_path}/roster", body)), 200, 201)
    return candidate, grants


def request_rotation_flow(
    *, org_path: str, org_id: bytes, old_key: SigningKey, new_key: SigningKey
) -> Flow[RotationRequest]:
    """A field device asks to replace its signing key (signed with both; PROTOCOL §19.7)."""
    request = RotationRequest.make(org_id=org_id, old_key=old_key, new_key=new_key)
    body = {"rotation": b64encode(request.document)}
    answer = yield Request("POST", f"{org_path}/rotations", body)
    decode(expect(answer, 200, 201), RotationAnswer, what="rotation")
    return request


def rotations_flow(
    *, org_path: str, trusted: SignedRoster
) -> Flow[tuple[list[tuple[RotationRequest, int]], list[str]]]:
    """The rotation requests waiting to be applied, verified against ``trusted``: requests
    of active members whose new key is not in the roster yet; and why others were refused."""
    answer = yield Request("GET", f"{org_path}/rotations", max_answer_bytes=16 * 1024 * 1024)
    listed = decode(expect(answer, 200), RotationList, what="rotations")
    roster = trusted.roster
    waiting: list[tuple[RotationRequest, int]] = []
    refused: list[str] = []
    for item in listed.rotations:
        try:
            org, old = RotationRequest.peek(item.rotation)
            member = roster.member(old)
            if org != roster.org_id or member is None:
                raise RotationError("the request names no member of this organisation")
            request = RotationRequest.verify(item.rotation, member.signing_key, org_id=org)
        except RotationError as exc:
            refused.append(exc.reason)
            continue
        if member.revoked_after is None and roster.member(request.new_device) is None:
            waiting.append((request, item.received_at))
    return waiting, refused


def apply_rotation_flow(
    *,
    org_path: str,
    trusted: SignedRoster,
    signing_key: SigningKey,
    requests: list[RotationRequest],
    old_device: bytes,
) -> Flow[SignedRoster]:
    """Apply the one request for ``old_device``: a roster version that adds its new key with
    the old member's role and revokes the old id at its watermark. Two requests naming
    different new keys for one device are applied by nobody (`ValueError`)."""
    if old_device in conflicting(requests):
        raise ValueError(
            "two rotation requests name different new keys for this device (its old key may"
            " be in other hands): revoke it and invite it again"
        )
    mine = [r for r in requests if r.old_device == old_device]
    if not mine:
        raise ValueError("no rotation request waits for this device")
    roster = trusted.roster
    old = roster.member(old_device)
    assert old is not None
    devices = yield from devices_flow(org_path=org_path)
    watermark = next((d.watermark for d in devices.devices if d.device_id == old_device), 0)
    member = Member(mine[0].new_device, mine[0].new_key, old.role, old.kem_key)
    candidate = (
        roster.with_member(member)
        .revoke(old_device, after_seq=watermark)
        .next_version(trusted)
        .sign(signing_key)
    )
    body = {"roster": b64encode(candidate.to_bytes())}
    expect((yield Request("POST", f"{org_path}/roster", body)), 200, 201)
    return candidate
