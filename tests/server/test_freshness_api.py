"""Roster freshness statements on the server (PROTOCOL §18.2): kept opaque, checked like a
roster post, the newest one served with the roster; bad input is a problem, never a 500."""

from __future__ import annotations

import secrets
import time
from dataclasses import replace

import pytest
from server_api import Api, b64, create_org
from starlette.testclient import TestClient

from crypto import KemPrivateKey, Purpose, SigningKey, sign_document
from sync.freshness import MAX_SKEW, Freshness
from sync.messages import b64decode
from sync.roster import Member, Role


@pytest.fixture
def org(client: TestClient):
    return create_org(Api(client))


def _statement(org, *, now: int | None = None, signer: SigningKey | None = None, **change):
    statement = Freshness.issue(org.rosters[-1], now=int(time.time()) if now is None else now)
    return replace(statement, **change).sign(signer or org.coordinator).to_bytes()


def _post(org, document: bytes, key: SigningKey | None = None):
    body = {"freshness": b64(document)}
    return org.api.call("POST", org.path + "/roster/freshness", body, key=key or org.coordinator)


def _served(org) -> bytes | None:
    answer = org.as_coordinator("GET", "/roster?since=0").json()
    return b64decode(answer["freshness"]) if answer["freshness"] else None


def test_the_newest_statement_is_kept_and_served_with_the_roster(org) -> None:
    """PROTOCOL §18.2: served beside the versions, exactly as signed; an older (v, t) does
    not replace it, a newer one does."""
    assert _served(org) is None
    now = int(time.time())
    first = _statement(org, now=now - 60)
    r = _post(org, first)
    assert r.status_code == 200 and r.json() == {"version": 1, "issued_at": now - 60}
    assert _served(org) == first
    older = _statement(org, now=now - 120)
    r = _post(org, older)
    assert r.status_code == 200 and r.json()["issued_at"] == now - 60
    assert _served(org) == first
    newer = _statement(org, now=now)
    assert _post(org, newer).json()["issued_at"] == now
    assert _served(org) == newer
    assert [b64decode(v) for v in org.as_coordinator("GET", "/roster").json()["versions"]] == [
        org.rosters[0].to_bytes()
    ]


def test_every_member_is_served_the_statement_but_only_coordinators_post(org) -> None:
    """PROTOCOL §18.2: any member reads it with the roster; a field device may not post."""
    device = org.add_device()
    document = _statement(org)
    r = _post(org, document, key=device.key)
    assert r.status_code == 403
    assert _post(org, document).status_code == 200
    answer = org.api.call("GET", org.path + "/roster?since=1", key=device.key).json()
    assert b64decode(answer["freshness"]) == document


def test_a_statement_for_an_older_version_is_a_conflict(org) -> None:
    """PROTOCOL §18.2: the coordinator is behind; 409 roster_conflict names the version."""
    stale = _statement(org)
    org.add_device()
    r = _post(org, stale)
    assert r.status_code == 409 and r.json()["code"] == "roster_conflict"
    assert r.json()["current_version"] == 2


def _second_coordinator(org) -> SigningKey:
    key = SigningKey.generate()
    member = Member(
        key.verify_key.key_id, key.verify_key, Role.COORDINATOR, KemPrivateKey.generate().public_key
    )
    assert org.publish(org.roster.with_member(member)).status_code == 200
    return key


def test_a_revoked_coordinators_statement_is_refused(org) -> None:
    """PROTOCOL §18.1: signed by an active coordinator of the version it names."""
    second = _second_coordinator(org)
    assert _post(org, _statement(org, signer=second)).status_code == 200
    assert org.publish(org.roster.revoke(second.verify_key.key_id, after_seq=0)).status_code == 200
    r = _post(org, _statement(org, signer=second), key=org.coordinator)
    assert r.status_code == 422 and r.json()["code"] == "freshness_invalid"


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda org: b"\x00garbage", id="garbage"),
        pytest.param(lambda org: org.rosters[-1].to_bytes(), id="a-roster"),
        pytest.param(lambda org: _statement(org, org_id=secrets.token_bytes(16)), id="another-org"),
        pytest.param(lambda org: _statement(org, version=2), id="unknown-version"),
        pytest.param(lambda org: _statement(org, fingerprint=bytes(32)), id="wrong-fingerprint"),
        pytest.param(lambda org: _statement(org, signer=SigningKey.generate()), id="stranger"),
        pytest.param(lambda org: _statement(org, now=int(time.time()) - 15 * 86400), id="expired"),
        pytest.param(
            lambda org: _statement(org, now=int(time.time()) + MAX_SKEW + 60), id="future"
        ),
        pytest.param(
            lambda org: sign_document(
                Purpose.FRESHNESS_SIGNATURE, {"v": 1}, org.coordinator
            ).to_bytes(),
            id="malformed-body",
        ),
    ],
)
def test_bad_statements_are_problems_and_change_nothing(org, make) -> None:
    """PROTOCOL §18.2, §10: 422 freshness_invalid, RFC 9457, nothing stored."""
    r = _post(org, make(org))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "freshness_invalid"
    assert _served(org) is None


def test_a_non_base64_body_is_a_validation_problem(org) -> None:
    r = org.as_coordinator("POST", "/roster/freshness", {"freshness": "%%%"})
    assert r.status_code == 422 and r.json()["code"] == "validation_failed"
