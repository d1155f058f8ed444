"""Rosters, invites, enrollment and request authentication (docs/PROTOCOL.md §7.3, §8.1)."""

from __future__ import annotations

import secrets
import time

import pytest
from server_api import Api, b64, create_org, enroll
from starlette.testclient import TestClient

from crypto import KemPrivateKey, SigningKey
from sync.invite import Enrollment, Invite, seal_label
from sync.messages import b64decode
from sync.roster import Member, Role, SignedRoster


@pytest.fixture
def org(client: TestClient):
    return create_org(Api(client))


# --- rosters -------------------------------------------------------------------------


def test_roster_versions_are_kept_and_served_since(org) -> None:
    org.add_device()
    org.add_device()
    versions = org.as_coordinator("GET", "/roster").json()["versions"]
    assert [SignedRoster.parse(b64decode(v)).roster.version for v in versions] == [1, 2, 3]
    since = org.as_coordinator("GET", "/roster?since=2").json()["versions"]
    assert [b64decode(v) for v in since] == [org.rosters[2].to_bytes()]


def test_roster_must_extend_the_chain(org) -> None:
    # §8.1: accepted only if it extends the chain (check_successor).
    stranger = SigningKey.generate()
    r = org.publish(org.roster, signer=stranger)  # not signed by an active coordinator
    assert r.status_code == 422 and r.json()["rule"] == "R3"
    skipped = org.roster.next_version(org.rosters[-1])
    from dataclasses import replace

    skipped = replace(skipped, version=skipped.version + 1).sign(org.coordinator)
    r = org.as_coordinator("POST", "/roster", {"roster": b64(skipped.to_bytes())})
    assert r.status_code == 422 and r.json()["rule"] == "R1"


def test_roster_fork_is_a_conflict_and_a_resend_is_idempotent(org) -> None:
    base = org.rosters[-1]
    assert org.publish(org.roster).status_code == 200
    r = org.as_coordinator("POST", "/roster", {"roster": b64(org.rosters[-1].to_bytes())})
    assert r.status_code == 200 and r.json() == {"version": 2}
    other = SigningKey.generate()
    fork = base.roster.with_member(Member(other.verify_key.key_id, other.verify_key, Role.FIELD))
    fork = fork.next_version(base).sign(org.coordinator)
    r = org.as_coordinator("POST", "/roster", {"roster": b64(fork.to_bytes())})
    assert r.status_code == 409 and r.json()["code"] == "roster_conflict"


def test_malformed_roster_bytes_are_a_problem_not_a_500(org) -> None:
    r = org.as_coordinator("POST", "/roster", {"roster": b64(b"\x00garbage")})
    assert r.status_code == 422 and r.json()["code"] == "roster_invalid"


# --- invites and enrollment -------------------------------------------------------------


def _invite(org, role=Role.FIELD, expires_in=3600, signer=None):
    return Invite.create(
        org_id=org.org_id,
        role=role,
        expires_at=int(time.time()) + expires_in,
        roster_fingerprint=org.rosters[-1].hash,
        server_url="http://testserver",
        signing_key=signer or org.coordinator,
    )


def test_invite_is_single_use_and_bound_to_its_secret(org) -> None:
    document, code = _invite(org)
    assert (
        org.as_coordinator("POST", "/invites", {"invite": b64(document.to_bytes())}).status_code
        == 201
    )
    key = SigningKey.generate()
    label = seal_label(
        "x", secret=code.secret, invite_id=code.invite_id, device_id=key.verify_key.key_id
    )
    enrollment = Enrollment(org.org_id, code.invite_id, key.verify_key, Role.FIELD, label).sign(key)
    wrong = {"enrollment": b64(enrollment.to_bytes()), "secret": b64(secrets.token_bytes(32))}
    r = org.api.call("POST", org.path + "/enroll", wrong)
    assert r.status_code == 403 and r.json()["code"] == "invite_unusable"
    right = {"enrollment": b64(enrollment.to_bytes()), "secret": b64(code.secret)}
    r = org.api.call("POST", org.path + "/enroll", right)
    assert r.status_code == 201
    body = r.json()
    assert b64decode(body["device_id"]) == key.verify_key.key_id
    assert b64decode(body["invite"]) == document.to_bytes()
    assert len(body["rosters"]) == len(org.rosters)
    # The same enrollment again is a safe retry; another device with the same invite is not.
    assert org.api.call("POST", org.path + "/enroll", right).status_code == 201
    other = SigningKey.generate()
    second = Enrollment(org.org_id, code.invite_id, other.verify_key, Role.FIELD, label).sign(other)
    r = org.api.call(
        "POST",
        org.path + "/enroll",
        {"enrollment": b64(second.to_bytes()), "secret": b64(code.secret)},
    )
    assert r.status_code == 403


def test_enrollment_role_must_match_the_invite(org) -> None:
    document, code = _invite(org, role=Role.FIELD)
    org.as_coordinator("POST", "/invites", {"invite": b64(document.to_bytes())})
    key = SigningKey.generate()
    kem = KemPrivateKey.generate().public_key
    enrollment = Enrollment(
        org.org_id, code.invite_id, key.verify_key, Role.COORDINATOR, b"", kem
    ).sign(key)
    r = org.api.call(
        "POST",
        org.path + "/enroll",
        {"enrollment": b64(enrollment.to_bytes()), "secret": b64(code.secret)},
    )
    assert r.status_code == 422 and r.json()["code"] == "enrollment_invalid"


def test_invites_must_be_signed_by_an_active_coordinator_and_expire(org) -> None:
    field = org.add_device()
    document, _ = _invite(org, signer=field.key)
    r = org.as_coordinator("POST", "/invites", {"invite": b64(document.to_bytes())})
    assert r.status_code == 422 and r.json()["code"] == "invite_invalid"
    document, _ = _invite(org, expires_in=-10)
    r = org.as_coordinator("POST", "/invites", {"invite": b64(document.to_bytes())})
    assert r.status_code == 422
    # Field devices cannot register invites at all.
    document, _ = _invite(org)
    r = org.api.call(
        "POST", org.path + "/invites", {"invite": b64(document.to_bytes())}, key=field.key
    )
    assert r.status_code == 403


def test_enrolled_device_may_push_before_admission(org) -> None:
    # §8.1: a device may push before a coordinator admits it into the roster.
    dev = org.add_device(admit=False)
    env = dev.key_envelope(org.roster)
    r = org.push(dev, [env])
    assert r.status_code == 200 and r.json()["results"][0]["status"] == "created"
    devices = org.as_coordinator("GET", "/devices").json()["devices"]
    mine = [d for d in devices if b64decode(d["device_id"]) == dev.device_id][0]
    assert mine["state"] == "enrolled" and mine["enrollment"] and mine["invite"]


# --- request signatures ------------------------------------------------------------------


def test_unsigned_requests_are_refused(org, client) -> None:
    r = client.get(org.path + "/roster")
    assert r.status_code == 401 and r.json()["code"] == "unauthenticated"


def test_replayed_nonce_is_refused(org) -> None:
    # §7.3: each (keyid, nonce) once within the replay window.
    nonce = secrets.token_urlsafe(16)
    assert org.as_coordinator("GET", "/roster", nonce=nonce).status_code == 200
    r = org.as_coordinator("GET", "/roster", nonce=nonce)
    assert r.status_code == 401 and r.json()["code"] == "replayed_request"


def test_clock_skew_of_hours_is_tolerated_but_not_days(org) -> None:
    now = int(time.time())
    assert org.as_coordinator("GET", "/roster", created=now - 5 * 3600).status_code == 200
    assert org.as_coordinator("GET", "/roster", created=now + 5 * 3600).status_code == 200
    r = org.as_coordinator("GET", "/roster", created=now - 3 * 86400)
    assert r.status_code == 401 and r.json()["code"] == "signature_expired"


def test_a_body_swapped_under_a_signature_is_refused(org) -> None:
    dev = org.add_device()
    env = dev.key_envelope(org.roster)
    import json

    from sync.auth import sign_request

    signed_body = json.dumps({"envelopes": []}).encode()
    headers = sign_request(
        method="POST",
        url="http://testserver" + org.path + "/push",
        body=signed_body,
        key=dev.key,
        created=int(time.time()),
        nonce=secrets.token_urlsafe(16),
    )
    swapped = json.dumps({"envelopes": [b64(env.to_bytes())]}).encode()
    r = org.api.client.post(
        org.path + "/push", content=swapped, headers={**headers, "content-type": "application/json"}
    )
    assert r.status_code == 401 and r.json()["code"] == "signature_invalid"


def test_enroll_needs_no_signature_but_a_valid_secret(org) -> None:
    document, code = _invite(org)
    org.as_coordinator("POST", "/invites", {"invite": b64(document.to_bytes())})
    enroll(org.api, org, code, SigningKey.generate(), Role.FIELD)


def test_replayed_push_is_refused_and_stores_nothing(org) -> None:
    # §7.3: push records its nonce inside its own transaction; a replay is still refused.
    dev = org.add_device()
    env = dev.key_envelope(org.roster)
    nonce = secrets.token_urlsafe(16)
    assert org.push(dev, [env], nonce=nonce).status_code == 200
    r = org.push(dev, [env], nonce=nonce)
    assert r.status_code == 401 and r.json()["code"] == "replayed_request"
