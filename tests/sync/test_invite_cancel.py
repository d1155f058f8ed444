"""Invite cancellations (PROTOCOL §3, §6.7): the signed document, its vectors, and what a
coordinator does with one, whatever the server says."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from crypto import Purpose, SigningKey, VerificationFailed, digest
from sync.client import (
    Admission,
    AdmissionRefused,
    Request,
    Response,
    admit_flow,
    cancelled_invite,
    devices_flow,
    revoke_flow,
)
from sync.invite import Invite, InviteCancel, InviteError, InviteState, invite_state
from sync.messages import b64encode
from sync.roster import Role, SignedRoster
from tests.sync.client.support import ORG, PATH, Org, invited, play

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
h = bytes.fromhex
_ROSTER = json.loads((VECTORS / "roster_v1.json").read_text(encoding="utf-8"))["vectors"][0]
CHAIN = [SignedRoster.parse(h(v["signed"])) for v in _ROSTER["chain"]]


@pytest.mark.parametrize(
    "vector",
    json.loads((VECTORS / "invite_cancel_v1.json").read_text(encoding="utf-8"))["vectors"],
)
def test_invite_cancel_vectors_reproduce_and_cancel_exactly_their_invite(vector: dict) -> None:
    """PROTOCOL §6.7: a cancellation reproduces byte for byte (signing again is the same
    request) and cancels its invite against the chain; every refused document cancels
    nothing."""
    if "inputs" in vector:
        inputs = vector["inputs"]
        cancel = InviteCancel(h(inputs["org"]), h(inputs["invite_id"]))
        document = cancel.sign(SigningKey(h(inputs["signer_seed"])))
        assert document.body.hex() == vector["body"]
        assert document.to_bytes().hex() == vector["document"]
        assert digest(Purpose.INVITE_CANCEL_SIGNATURE, document.body).hex() == vector["digest"]
        assert InviteCancel.peek(document.to_bytes())[0] == cancel
    assert cancelled_invite(h(vector["document"]), CHAIN[-1]) == (
        h(vector["cancels"]) if vector["cancels"] else None
    )


def test_a_malformed_body_is_refused_before_any_use() -> None:
    """PROTOCOL §6.7, §3.1: wrong keys or lengths are `InviteError` / `VerificationFailed`."""
    for raw in ({"o": ORG}, {"o": ORG, "i": b"x" * 15}, {"o": ORG, "i": b"i" * 16, "x": 0}, []):
        with pytest.raises(InviteError):
            InviteCancel.from_cbor(raw)
    with pytest.raises(VerificationFailed):
        InviteCancel.peek(b"\x00garbage")


def _invite(expires_at: int) -> Invite:
    return Invite(ORG, b"i" * 16, Role.FIELD, expires_at, bytes(32), bytes(32))


def test_invite_states_say_cancelled_first_then_used_then_expired() -> None:
    """An invite is listed as created, used, expired or cancelled (PROTOCOL §6.7)."""
    invite = _invite(1000)
    assert invite_state(invite, used=False, cancelled=False, now=999) is InviteState.CREATED
    assert invite_state(invite, used=False, cancelled=False, now=1000) is InviteState.EXPIRED
    assert invite_state(invite, used=True, cancelled=False, now=5000) is InviteState.USED
    assert invite_state(invite, used=True, cancelled=True, now=5000) is InviteState.CANCELLED


def _admit(org: Org, devices: list[dict[str, Any]], **kw: Any) -> tuple[Admission, list[Any]]:
    listed, _ = play(
        devices_flow(org_path=PATH), lambda r: Response.of_json(200, {"devices": devices})
    )

    def server(request: Request) -> Response:
        assert request.path == f"{PATH}/roster"  # an admission: only when none is cancelled
        return Response.of_json(201, {"version": org.roster.roster.version + 1})

    flow = admit_flow(
        org_path=PATH, trusted=org.roster, signing_key=org.coord, devices=listed, **kw
    )
    return play(flow, server)


def test_a_device_enrolled_with_an_invite_this_coordinator_cancelled_is_never_admitted() -> None:
    """PROTOCOL §6.7: the coordinator's own record decides, even with the secret at hand and a
    server that serves no cancellation at all; nor is the device pending admission."""
    org = Org()
    device, code = invited(org, SigningKey.generate())
    admission, events = _admit(
        org,
        [device],
        invite_secrets={code.invite_id: code.secret},
        cancelled={code.invite_id},
    )
    assert admission.admitted == () and admission.verified == ()
    assert [type(e) for e in events].count(AdmissionRefused) == 1
    assert "was cancelled" in admission.refused[0] and "MISBEHAVED" not in admission.refused[0]


def test_a_server_that_said_unused_then_serves_an_enrollment_is_named() -> None:
    """PROTOCOL §6.7: acknowledged as unused, then a device enrolled with it: the server
    accepted an enrollment after the cancellation."""
    org = Org()
    device, code = invited(org, SigningKey.generate())
    admission, _ = _admit(
        org,
        [device],
        invite_secrets={},
        cancelled={code.invite_id},
        acknowledged={code.invite_id: None},
    )
    assert admission.admitted == ()
    assert "SERVER MISBEHAVED" in admission.refused[0]


def test_a_served_cancellation_by_another_coordinator_stops_admission() -> None:
    """PROTOCOL §6.7: a cancellation signed by a coordinator of the trusted roster counts; one
    signed by a field device, or for another invite, does not."""
    org = Org()
    device, code = invited(org, SigningKey.generate())
    forged = InviteCancel(ORG, code.invite_id).sign(org.field).to_bytes()
    other = InviteCancel(ORG, b"z" * 16).sign(org.coord).to_bytes()
    for ignored in (forged, other):
        admission, _ = _admit(
            org,
            [dict(device, cancellation=b64encode(ignored))],
            invite_secrets={code.invite_id: code.secret},
            cancelled=set(),
        )
        assert len(admission.admitted) == 1
    real = InviteCancel(ORG, code.invite_id).sign(org.coord).to_bytes()
    admission, _ = _admit(
        org,
        [dict(device, cancellation=b64encode(real))],
        invite_secrets={code.invite_id: code.secret},
    )
    assert admission.admitted == () and admission.verified == ()


def test_revoking_a_revoked_device_sends_nothing_and_keeps_the_roster() -> None:
    """PROTOCOL §6.7 (last item), §5.5: no new version for a device already revoked."""
    org = Org()
    field_id = org.field.verify_key.key_id
    org.extend(lambda r: r.revoke(field_id, after_seq=3))

    def server(request: Request) -> Response:
        raise AssertionError("nothing may be sent")

    result, events = play(
        revoke_flow(org_path=PATH, trusted=org.roster, signing_key=org.coord, device_id=field_id),
        server,
    )
    assert result is org.roster and events == []
