"""Enrollment answers, admission and revocation (PROTOCOL §6.5, §6.6, §15.5 item 2, §15.7)."""

from __future__ import annotations

import dataclasses
import json
import secrets
from typing import Any

import pytest

from crypto import KemPrivateKey, SigningKey
from sync.client import (
    Admission,
    AdmissionRefused,
    DevicesAdmitted,
    DeviceState,
    Request,
    Response,
    ServerMisbehaved,
    SyncRefused,
    admit_flow,
    devices_flow,
    revoke_flow,
    seal_edit,
    verify_enrollment,
)
from sync.invite import Enrollment, Invite, seal_label
from sync.messages import DeviceList, b64decode, b64encode
from sync.roster import Role, SignedRoster
from tests.sync.client.support import (
    ORG,
    PATH,
    REPORT,
    Org,
    content,
    device_info,
    field_of,
    invited,
    of_type,
    play,
    problem,
)


def _device_list(devices: list[dict[str, Any]]) -> DeviceList:
    result, _ = play(
        devices_flow(org_path=PATH), lambda r: Response.of_json(200, {"devices": devices})
    )
    return result


def _admit(
    org: Org, devices: list[dict[str, Any]], secrets_by_invite: dict[bytes, bytes]
) -> tuple[Admission, list[Any]]:
    """Fetch the device list once, then run admission; checks what was posted."""
    posted: list[SignedRoster] = []

    def server(request: Request) -> Response:
        assert request.method == "POST" and request.path == f"{PATH}/roster"
        assert request.body is not None
        posted.append(SignedRoster.parse(b64decode(request.body["roster"])))
        return Response.of_json(201, {"version": posted[-1].roster.version})

    flow = admit_flow(
        org_path=PATH,
        trusted=org.roster,
        signing_key=org.coord,
        invite_secrets=secrets_by_invite,
        devices=_device_list(devices),
    )
    admission, events = play(flow, server)
    assert posted == ([admission.roster] if admission.admitted else [])
    assert events[-1] == DevicesAdmitted(admission.roster, admission.admitted, admission.documents)
    assert [e.reason for e in of_type(events, AdmissionRefused)] == list(admission.refused)
    return admission, events


def test_unknown_devices_are_held_then_shown_pending_admission_then_verified() -> None:
    # PROTOCOL §6.5, §6.6, §15.5 item 2.
    org = Org()
    newcomer = SigningKey.generate()
    state = DeviceState(org_id=ORG, device_id=newcomer.verify_key.key_id)
    seal_edit(
        state, roster=org.roster, signing_key=newcomer, report=REPORT, content=content(a="hi")
    )
    view = org.view()
    for item in state.outbox:
        assert view.ingest(item.data)  # kept, not dropped
    assert view.report(REPORT) is None
    assert {f.kind for f in view.findings()} == {"unknown-device"}

    device, code = invited(org, newcomer)
    pending, _ = _admit(org, [device], {})  # not our invite secret: vouched, not admitted
    assert pending.admitted == () and len(pending.verified) == 1
    view.update_trust(pending.roster, pending.verified)
    assert field_of(view, REPORT, "a").value == "hi"
    assert [f.kind for f in view.findings()] == ["pending-admission"]
    # Content of a device not yet admitted is flagged, and left out of what is verified.
    assert view.verification(REPORT).state == "pending-admission"
    assert REPORT in view.reports() and REPORT not in view.reports(include_unverified=False)

    admission, _ = _admit(org, [device], {code.invite_id: code.secret})
    assert admission.admitted == ((code.invite_id, newcomer.verify_key.key_id),)
    member = admission.roster.roster.member(newcomer.verify_key.key_id)
    assert member is not None and member.role is Role.FIELD
    assert admission.roster.roster.version == org.roster.roster.version + 1
    view.update_trust(admission.roster, admission.verified)
    assert view.findings() == []


def test_a_key_enrolled_by_the_server_against_a_real_invite_is_not_admitted() -> None:
    # PROTOCOL §6.5: the server holds the invite document, never the secret.
    org = Org()
    device, code = invited(org, SigningKey.generate(), prove=False)
    admission, events = _admit(org, [device], {code.invite_id: code.secret})
    assert admission.admitted == () and admission.roster is org.roster
    assert "none admitted" in admission.refused[0]
    assert isinstance(events[0], AdmissionRefused)


def test_an_invite_admits_at_most_one_device() -> None:
    # PROTOCOL §15.7 item 1: several claims on one invite admit nobody.
    org = Org()
    first, code = invited(org, SigningKey.generate())
    other = SigningKey.generate()
    label = seal_label(
        "x", secret=code.secret, invite_id=code.invite_id, device_id=other.verify_key.key_id
    )
    second = dict(
        first,
        device_id=b64encode(other.verify_key.key_id),
        enrollment=b64encode(
            Enrollment(ORG, code.invite_id, other.verify_key, Role.FIELD, label)
            .sign(other)
            .to_bytes()
        ),
    )
    admission, _ = _admit(org, [first, second], {code.invite_id: code.secret})
    assert admission.admitted == () and len(admission.refused) == 1
    assert "2 enrollments" in admission.refused[0]


def test_a_second_claim_without_the_secret_still_blocks_the_invite() -> None:
    # PROTOCOL §15.7 item 1: the server cannot tell which claim is real, so it cannot pick
    # one either: a competing enrollment (one it made itself) means nobody is admitted.
    org = Org()
    real, code = invited(org, SigningKey.generate())
    forger = SigningKey.generate()
    label = seal_label(
        "x",
        secret=secrets.token_bytes(32),
        invite_id=code.invite_id,
        device_id=forger.verify_key.key_id,
    )
    competing = dict(
        real,
        device_id=b64encode(forger.verify_key.key_id),
        enrollment=b64encode(
            Enrollment(ORG, code.invite_id, forger.verify_key, Role.FIELD, label)
            .sign(forger)
            .to_bytes()
        ),
    )
    admission, _ = _admit(org, [real, competing], {code.invite_id: code.secret})
    assert admission.admitted == () and admission.roster is org.roster
    assert "2 enrollments, 1 proving the invite secret" in admission.refused[0]


def test_an_admitted_invite_admits_nobody_else() -> None:
    # PROTOCOL §15.7 item 1: the used invite's secret is gone, so a later claim waits.
    org = Org()
    device, code = invited(org, SigningKey.generate())
    admission, _ = _admit(org, [device], {})  # the secret was forgotten when it was used
    assert admission.admitted == () and admission.refused == ()


def test_an_enrollment_bound_to_an_invite_not_signed_by_a_coordinator_is_not_admitted() -> None:
    org = Org()
    device, code = invited(org, SigningKey.generate(), signer=org.field)  # cannot invite
    admission, _ = _admit(org, [device], {code.invite_id: code.secret})
    assert admission.roster is org.roster and admission.verified == ()


def test_an_enrollment_for_another_invite_or_role_is_not_admitted() -> None:
    # PROTOCOL §15.7 item 1: bound (organisation, invite id, role) to that invite.
    org = Org()
    key = SigningKey.generate()
    device, code = invited(org, key)
    label = seal_label(
        "x", secret=code.secret, invite_id=code.invite_id, device_id=key.verify_key.key_id
    )
    kem = KemPrivateKey.generate().public_key
    as_coordinator = Enrollment(ORG, code.invite_id, key.verify_key, Role.COORDINATOR, label, kem)
    device = dict(device, enrollment=b64encode(as_coordinator.sign(key).to_bytes()))
    admission, _ = _admit(org, [device], {code.invite_id: code.secret})
    assert admission.admitted == () and admission.verified == ()


def test_a_coordinator_enrollment_is_admitted_with_its_hpke_key() -> None:
    # PROTOCOL §15.7 item 2.
    org = Org()
    newcomer, kem = SigningKey.generate(), KemPrivateKey.generate()
    device, code = invited(org, newcomer, role=Role.COORDINATOR, kem=kem.public_key)
    admission, _ = _admit(org, [device], {code.invite_id: code.secret})
    member = admission.roster.roster.member(newcomer.verify_key.key_id)
    assert member is not None
    assert member.role is Role.COORDINATOR and member.kem_key == kem.public_key
    assert kem.public_key in admission.roster.roster.recipients()


def test_a_device_list_of_the_wrong_shape_is_refused() -> None:
    # Every answer is parsed by its wire model: DeviceInfo has required fields.
    org = Org()
    device = device_info(org.field.verify_key.key_id, org.field.verify_key.raw)
    for broken in (
        {k: v for k, v in device.items() if k != "watermark"},
        {**device, "device_id": "not base64!"},
        {**device, "extra": True},
    ):
        with pytest.raises(ServerMisbehaved, match="devices"):
            _device_list([broken])


def test_revocation_uses_the_servers_watermark() -> None:
    # PROTOCOL §15.7 item 3.
    org = Org()
    device_id = org.field.verify_key.key_id
    devices = {"devices": [device_info(device_id, org.field.verify_key.raw, watermark=7)]}
    posted: list[Request] = []

    def server(request: Request) -> Response:
        if request.method == "GET":
            assert request.path == f"{PATH}/devices"
            return Response.of_json(200, devices)
        posted.append(request)
        return Response.of_json(201, {"version": 3})

    newest, _ = play(
        revoke_flow(org_path=PATH, trusted=org.roster, signing_key=org.coord, device_id=device_id),
        server,
    )
    member = newest.roster.member(device_id)
    assert member is not None and member.revoked_after == 7 and len(posted) == 1
    assert posted[0].body is not None
    assert SignedRoster.parse(b64decode(posted[0].body["roster"])) == newest
    assert newest.roster.version == 3 and newest.roster.prev == org.roster.hash


def test_revoking_a_device_not_in_the_roster_asks_nothing() -> None:
    org = Org()
    with pytest.raises(KeyError):
        play(
            revoke_flow(
                org_path=PATH, trusted=org.roster, signing_key=org.coord, device_id=bytes(32)
            ),
            lambda r: problem(500, "internal"),
        )


def test_a_refused_revocation_raises() -> None:
    org = Org()
    device_id = org.field.verify_key.key_id
    devices = {"devices": [device_info(device_id, org.field.verify_key.raw, watermark=2)]}

    def server(request: Request) -> Response:
        if request.method == "GET":
            return Response.of_json(200, devices)
        return problem(409, "roster_conflict")

    with pytest.raises(SyncRefused):
        play(
            revoke_flow(
                org_path=PATH, trusted=org.roster, signing_key=org.coord, device_id=device_id
            ),
            server,
        )


# -- verify_enrollment: the enrolling device checks the server's answer (PROTOCOL §6.5)


def _enroll_answer(org: Org, invite: bytes, chain: list[SignedRoster]) -> Response:
    return Response.of_json(
        201,
        {
            "device_id": b64encode(bytes(32)),
            "invite": b64encode(invite),
            "rosters": [b64encode(v.to_bytes()) for v in chain],
        },
    )


def _invite(org: Org, signer: SigningKey | None = None):
    return Invite.create(
        org_id=ORG,
        role=Role.FIELD,
        expires_at=2**40,
        roster_fingerprint=org.roster.hash,
        server_url="http://127.0.0.1",
        signing_key=signer or org.coord,
    )


def test_an_honest_enrollment_answer_verifies_through_the_pinned_roster() -> None:
    org = Org()
    doc, code = _invite(org)
    org.extend(lambda r: r)  # a version added after the invite: the chain passes the pin
    newest, invite, chain = verify_enrollment(code, _enroll_answer(org, doc.to_bytes(), org.chain))
    assert newest == org.roster and chain == org.chain
    assert invite.invite_id == code.invite_id


def test_an_enrollment_answer_with_another_invite_is_refused() -> None:
    org = Org()
    _, code = _invite(org)
    other, _ = _invite(org)  # a real invite, but not the one in the code
    with pytest.raises(ServerMisbehaved, match="does not match"):
        verify_enrollment(code, _enroll_answer(org, other.to_bytes(), org.chain))


def test_an_enrollment_answer_with_an_invite_for_another_secret_is_refused() -> None:
    org = Org()
    doc, code = _invite(org)
    wrong = dataclasses.replace(code, secret=secrets.token_bytes(32))
    with pytest.raises(ServerMisbehaved, match="does not match"):
        verify_enrollment(wrong, _enroll_answer(org, doc.to_bytes(), org.chain))
    assert verify_enrollment(code, _enroll_answer(org, doc.to_bytes(), org.chain))


def test_an_enrollment_answer_with_the_servers_own_roster_is_refused() -> None:
    # The code pins the roster fingerprint: the server cannot hand over its own coordinators.
    org, impostor = Org(), Org()
    doc, code = _invite(org)
    own, _ = _invite(impostor)
    with pytest.raises(ServerMisbehaved):
        verify_enrollment(code, _enroll_answer(org, own.to_bytes(), impostor.chain))


def test_an_enrollment_answer_with_an_invite_not_signed_by_a_coordinator_is_refused() -> None:
    org = Org()
    doc, code = _invite(org, signer=org.field)
    with pytest.raises(ServerMisbehaved, match="not signed by a coordinator"):
        verify_enrollment(code, _enroll_answer(org, doc.to_bytes(), org.chain))


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(lambda a: {k: v for k, v in a.items() if k != "rosters"}, id="no-rosters"),
        pytest.param(
            lambda a: {**a, "invite": b64encode(secrets.token_bytes(40))}, id="junk-invite"
        ),
        pytest.param(lambda a: {**a, "rosters": [b64encode(b"junk")]}, id="junk-roster"),
        pytest.param(lambda a: [a], id="not-a-map"),
    ],
)
def test_an_enrollment_answer_of_the_wrong_shape_is_refused(answer: Any) -> None:
    org = Org()
    doc, code = _invite(org)
    honest = _enroll_answer(org, doc.to_bytes(), org.chain)
    broken = Response.of_json(201, answer(json.loads(honest.content)))
    with pytest.raises(ServerMisbehaved):
        verify_enrollment(code, broken)
