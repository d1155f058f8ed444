"""The server's grant list (docs/PROTOCOL.md §19.6): opaque, coordinator-signed, bounded."""

from __future__ import annotations

import pytest
from server_api import Api, b64, create_org
from starlette.testclient import TestClient

from crypto import (
    ChainKey,
    KemPrivateKey,
    Purpose,
    SigningKey,
    encoding,
    open_sender_key,
    sign_document,
)
from sync.grant import grant_id, make_grant
from sync.messages import b64decode


@pytest.fixture
def org(client: TestClient):
    return create_org(Api(client))


def _grant(org, signer: SigningKey | None = None) -> bytes:
    field = org.add_device()
    envelope = field.key_envelope(org.roster)
    # The founder opens its own wrap, as its client does before granting.
    chain_key: ChainKey = open_sender_key(
        envelope, author=field.key.verify_key, recipient=org.coordinator_kem
    )
    return make_grant(
        org_id=org.org_id,
        roster_version=org.roster.version,
        issued_at=1,
        epochs=[(envelope, chain_key)],
        recipient=KemPrivateKey.generate().public_key,
        signing_key=signer or org.coordinator,
    ).document


def test_a_grant_is_kept_once_and_listed_to_coordinators(org) -> None:
    """PROTOCOL §19.6: idempotent by its bytes; listed ascending with the server's time."""
    document = _grant(org)
    first = org.as_coordinator("POST", "/grants", {"grant": b64(document)})
    assert first.status_code == 201 and first.json()["created"] is True
    assert b64decode(first.json()["grant_id"]) == grant_id(document)
    again = org.as_coordinator("POST", "/grants", {"grant": b64(document)})
    assert again.json() == {**first.json(), "created": False}
    listed = org.as_coordinator("GET", "/grants?after=0").json()
    assert [b64decode(g["grant"]) for g in listed["grants"]] == [document]
    assert listed["grants"][0]["seq"] == 1 and listed["more"] is False
    assert org.as_coordinator("GET", "/grants?after=1").json()["grants"] == []


def test_the_server_refuses_grants_not_signed_by_the_caller_or_for_another_org(org) -> None:
    """PROTOCOL §19.6: 422 grant_invalid, as problem+json; a field device may not post."""
    document = _grant(org, signer=SigningKey.generate())  # not the caller's key
    r = org.as_coordinator("POST", "/grants", {"grant": b64(document)})
    assert r.status_code == 422 and r.json()["code"] == "grant_invalid"
    assert r.headers["content-type"].startswith("application/problem+json")
    body = encoding.decode(encoding.decode(_grant(org))[2])
    foreign = sign_document(Purpose.GRANT_SIGNATURE, dict(body, o=bytes(16)), org.coordinator)
    r = org.as_coordinator("POST", "/grants", {"grant": b64(foreign.to_bytes())})
    assert r.status_code == 422 and "another organisation" in r.json()["detail"]
    r = org.as_coordinator("POST", "/grants", {"grant": b64(b"not a grant")})
    assert r.status_code == 422 and r.json()["code"] == "grant_invalid"
    field = org.add_device()
    r = org.api.call("POST", org.path + "/grants", {"grant": b64(document)}, key=field.key)
    assert r.status_code == 403
    r = org.as_coordinator("GET", "/grants?limit=100000")
    assert r.status_code == 422


def test_a_rotation_request_is_kept_for_coordinators_and_refused_when_forged(org) -> None:
    """PROTOCOL §19.7: signed by the calling device and proven by its new key; bounded."""
    from sync.rotation import RotationRequest

    field = org.add_device()
    new = SigningKey.generate()
    request = RotationRequest.make(org_id=org.org_id, old_key=field.key, new_key=new)
    post = {"rotation": b64(request.document)}
    r = org.api.call("POST", org.path + "/rotations", post, key=field.key)
    assert r.status_code == 201 and r.json()["created"] is True
    assert b64decode(r.json()["new_device_id"]) == new.verify_key.key_id
    again = org.api.call("POST", org.path + "/rotations", post, key=field.key)
    assert again.json()["created"] is False
    listed = org.as_coordinator("GET", "/rotations").json()["rotations"]
    assert [b64decode(x["rotation"]) for x in listed] == [request.document]
    assert org.api.call("GET", org.path + "/rotations", key=field.key).status_code == 403
    # Posted by another device than the one it names: refused.
    other = org.add_device()
    r = org.api.call("POST", org.path + "/rotations", post, key=other.key)
    assert r.status_code == 422 and r.json()["code"] == "rotation_invalid"
    for _ in range(3):
        extra = RotationRequest.make(
            org_id=org.org_id, old_key=field.key, new_key=SigningKey.generate()
        )
        body = {"rotation": b64(extra.document)}
        assert org.api.call("POST", org.path + "/rotations", body, key=field.key).status_code == 201
    extra = RotationRequest.make(
        org_id=org.org_id, old_key=field.key, new_key=SigningKey.generate()
    )
    body = {"rotation": b64(extra.document)}
    r = org.api.call("POST", org.path + "/rotations", body, key=field.key)
    assert r.status_code == 422 and "at most 4" in r.json()["detail"]
