"""Invite cancellation on the server (PROTOCOL §6.7, §8.1, §10): who may cancel, what is
kept, and that a cancelled invite enrolls nobody, an earlier enrollment's retry included.
Every refusal is problem+json, never a 500."""

from __future__ import annotations

import secrets
import time
from typing import Any

from server_api import Api, b64, create_org
from starlette.testclient import TestClient

from crypto import KemPrivateKey, SigningKey, sign_document
from crypto.suite import Purpose
from sync.invite import Enrollment, Invite, InviteCancel, InviteCode, seal_label
from sync.messages import b64decode
from sync.roster import Member, Role


def _invite(org: Any, role: Role = Role.FIELD) -> InviteCode:
    document, code = Invite.create(
        org_id=org.org_id,
        role=role,
        expires_at=int(time.time()) + 3600,
        roster_fingerprint=org.rosters[-1].hash,
        server_url="http://testserver",
        signing_key=org.coordinator,
    )
    r = org.as_coordinator("POST", "/invites", {"invite": b64(document.to_bytes())})
    assert r.status_code == 201, r.text
    return code


def _enroll(org: Any, code: InviteCode, key: SigningKey) -> Any:
    sealed = seal_label(
        "phone", secret=code.secret, invite_id=code.invite_id, device_id=key.verify_key.key_id
    )
    enrollment = Enrollment(org.org_id, code.invite_id, key.verify_key, Role.FIELD, sealed)
    body = {"enrollment": b64(enrollment.sign(key).to_bytes()), "secret": b64(code.secret)}
    return org.api.call("POST", org.path + "/enroll", body)


def _cancel(org: Any, document: bytes, key: SigningKey | None = None) -> Any:
    return org.api.call(
        "POST",
        org.path + "/invites/cancel",
        {"cancellation": b64(document)},
        key=key or org.coordinator,
    )


def test_a_cancelled_invite_enrolls_nobody_and_cancelling_again_is_the_same_answer(
    client: TestClient,
) -> None:
    """PROTOCOL §6.7: 200 {invite_id, used_by}; the same bytes again, same answer; then 403
    invite_cancelled for the holder of the secret, and invite_unusable without it."""
    org = create_org(Api(client))
    code = _invite(org)
    document = InviteCancel(org.org_id, code.invite_id).sign(org.coordinator).to_bytes()
    first = _cancel(org, document)
    assert first.status_code == 200, first.text
    assert first.json() == {"invite_id": b64(code.invite_id), "used_by": None}
    assert _cancel(org, document).json() == first.json()
    refused = _enroll(org, code, SigningKey.generate())
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["code"] == "invite_cancelled"
    wrong = InviteCode(code.server_url, org.org_id, code.roster_fingerprint, code.invite_id,
                       secrets.token_bytes(32))  # fmt: skip
    assert _enroll(org, wrong, SigningKey.generate()).json()["code"] == "invite_unusable"
    listed = org.as_coordinator("GET", "/invites").json()["invites"]
    assert [b64decode(i["cancellation"]) for i in listed] == [document]


def test_a_used_invite_can_be_cancelled_and_its_device_carries_the_cancellation(
    client: TestClient,
) -> None:
    """PROTOCOL §6.7: the answer names the device that used it; the device list carries the
    cancellation for coordinators; the device's own retry is refused from then on."""
    org = create_org(Api(client))
    code = _invite(org)
    key = SigningKey.generate()
    assert _enroll(org, code, key).status_code == 201
    document = InviteCancel(org.org_id, code.invite_id).sign(org.coordinator).to_bytes()
    answer = _cancel(org, document).json()
    assert b64decode(answer["used_by"]) == key.verify_key.key_id
    devices = org.as_coordinator("GET", "/devices").json()["devices"]
    enrolled = [d for d in devices if b64decode(d["device_id"]) == key.verify_key.key_id]
    assert b64decode(enrolled[0]["cancellation"]) == document
    assert _enroll(org, code, key).json()["code"] == "invite_cancelled"


def test_a_second_coordinator_may_cancel_and_the_first_cancellation_is_kept(
    client: TestClient,
) -> None:
    """PROTOCOL §6.7: any active coordinator of the newest version may cancel; the server
    keeps the first valid cancellation and answers later ones with the stored state."""
    org = create_org(Api(client))
    deputy, kem = SigningKey.generate(), KemPrivateKey.generate()
    member = Member(deputy.verify_key.key_id, deputy.verify_key, Role.COORDINATOR, kem.public_key)
    assert org.publish(org.roster.with_member(member)).status_code == 200
    code = _invite(org)
    by_deputy = InviteCancel(org.org_id, code.invite_id).sign(deputy).to_bytes()
    assert _cancel(org, by_deputy, deputy).status_code == 200
    by_founder = InviteCancel(org.org_id, code.invite_id).sign(org.coordinator).to_bytes()
    assert _cancel(org, by_founder).status_code == 200
    listed = org.as_coordinator("GET", "/invites").json()["invites"]
    assert b64decode(listed[0]["cancellation"]) == by_deputy


def test_bad_cancellations_are_refused_with_problems_and_change_nothing(
    client: TestClient,
) -> None:
    """PROTOCOL §6.7, §10: garbage, another purpose, another org, a field device's signature,
    an unknown invite: 4xx problem+json, and the invite still enrolls."""
    org = create_org(Api(client))
    field = org.add_device()
    code = _invite(org)
    ours = {"o": org.org_id, "i": code.invite_id}
    cases = [
        (b"\x00not cbor", 422, "invite_invalid", None),
        (sign_document(Purpose.INVITE_SIGNATURE, ours, org.coordinator).to_bytes(), 422,
         "invite_invalid", None),
        (InviteCancel(secrets.token_bytes(16), code.invite_id).sign(org.coordinator).to_bytes(),
         422, "invite_invalid", None),
        (InviteCancel(org.org_id, code.invite_id).sign(field.key).to_bytes(), 422,
         "invite_invalid", None),
        (sign_document(Purpose.INVITE_CANCEL_SIGNATURE, {**ours, "t": 1}, org.coordinator)
         .to_bytes(), 422, "invite_invalid", None),
        (InviteCancel(org.org_id, secrets.token_bytes(16)).sign(org.coordinator).to_bytes(),
         404, "not_found", None),
        # A field device may not cancel, even with a coordinator's signed document.
        (InviteCancel(org.org_id, code.invite_id).sign(org.coordinator).to_bytes(), 403,
         "forbidden", field.key),
    ]  # fmt: skip
    for document, status, problem, key in cases:
        r = _cancel(org, document, key)
        assert r.status_code == status, (problem, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == problem
    r = org.api.call("POST", org.path + "/invites/cancel", {"cancellation": "!"},
                     key=org.coordinator)  # fmt: skip
    assert r.status_code == 422 and r.json()["code"] == "validation_failed"
    assert _enroll(org, code, SigningKey.generate()).status_code == 201
    assert org.api.call("GET", org.path + "/invites", key=field.key).status_code == 403
