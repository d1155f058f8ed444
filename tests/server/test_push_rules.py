"""Push semantics through the API (docs/PROTOCOL.md §8.2-§8.4): one result per item, in order."""

from __future__ import annotations

import secrets

import pytest
from server_api import Api, b64, create_org
from starlette.testclient import TestClient

from crypto import SigningKey
from sync.messages import b64decode
from sync.receipt import Receipt


@pytest.fixture
def org(client: TestClient):
    return create_org(Api(client))


def statuses(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [r["status"] for r in response.json()["results"]]


def test_parents_may_come_earlier_in_the_same_batch_but_not_later(org) -> None:
    dev = org.add_device()
    report = secrets.token_bytes(16)
    key_env = dev.key_envelope(org.roster)
    a = dev.revision(org.roster, report, [], b"a")
    b = dev.revision(org.roster, report, [a.id], b"b")
    # §8.3 D5: b before a: b misses its parent, nothing stored for it, retryable.
    r = org.push(dev, [key_env, b, a])
    assert statuses(r) == ["created", "missing_parents", "created"]
    missing = r.json()["results"][1]
    assert missing["retryable"] is True and missing["missing"] == [b64(a.id)]
    assert "server_seq" not in missing
    assert statuses(org.push(dev, [b])) == ["created"]


def test_concurrent_edits_are_a_conflict_and_both_branches_stay(org) -> None:
    # §8.3 D6: several heads = conflict; the server never picks a winner.
    field_a, field_b = org.add_device(), org.add_device()
    report = secrets.token_bytes(16)
    root = field_a.revision(org.roster, report, [], b"root")
    assert statuses(org.push(field_a, field_a.sent)) == ["created", "created"]
    left = field_a.revision(org.roster, report, [root.id], b"left")
    right = field_b.revision(org.roster, report, [root.id], b"right")
    assert statuses(org.push(field_a, [left])) == ["created"]
    r = org.push(field_b, field_b.sent)
    assert statuses(r) == ["created", "conflict"]
    assert sorted(r.json()["results"][1]["heads"]) == sorted([b64(left.id), b64(right.id)])
    graph = org.as_coordinator("GET", f"/reports/{b64(report)}").json()
    assert sorted(graph["heads"]) == sorted([b64(left.id), b64(right.id)])
    # A coordinator's merge names both heads and resolves the conflict.
    coord = org.coordinator_chain()
    merge = coord.revision(org.roster, report, sorted([left.id, right.id]), b"merge")
    assert statuses(org.push(coord, coord.sent)) == ["created", "created"]
    graph = org.as_coordinator("GET", f"/reports/{b64(report)}").json()
    assert graph["heads"] == [b64(merge.id)]
    assert len(graph["items"]) == 4


def test_equivocation_is_kept_as_evidence_and_flags_the_device(org) -> None:
    # §8.3 D4: same device seq, different content.
    dev = org.add_device()
    report = secrets.token_bytes(16)
    dev.key_envelope(org.roster)
    saved = (dev.seq, dev.prev)
    honest = dev.revision(org.roster, report, [], b"honest")
    dev.seq, dev.prev = saved
    forked = dev.revision(org.roster, report, [], b"forked")
    r = org.push(dev, [dev.sent[0], honest, forked])
    assert statuses(r) == ["created", "created", "equivocation"]
    assert r.json()["results"][2]["retryable"] is False
    # Terminal and idempotent: a retry gives the same answers.
    assert statuses(org.push(dev, [dev.sent[0], honest, forked])) == [
        "duplicate",
        "duplicate",
        "equivocation",
    ]
    devices = org.as_coordinator("GET", "/devices").json()["devices"]
    flagged = [d for d in devices if b64decode(d["device_id"]) == dev.device_id][0]
    assert flagged["flags"] == ["equivocation"]
    items = org.changes().json()["items"]
    assert all(i["flags"] == ["device_equivocated"] for i in items)
    assert b64(forked.to_bytes()) not in [i["envelope"] for i in items]


def test_prev_that_disagrees_with_the_stored_chain_is_equivocation(org) -> None:
    dev = org.add_device()
    report = secrets.token_bytes(16)
    dev.key_envelope(org.roster)
    assert statuses(org.push(dev, dev.sent)) == ["created"]
    dev.prev = secrets.token_bytes(32)  # a chain that forks at seq 1
    bad = dev.revision(org.roster, report, [], b"x")
    assert statuses(org.push(dev, [bad])) == ["equivocation"]


def test_invalid_items_are_consumed_and_do_not_block_the_batch(org) -> None:
    # §8.3 D1: terminal results consume the item; the rest of the batch goes through.
    dev, other = org.add_device(), org.add_device()
    report = secrets.token_bytes(16)
    good = dev.revision(org.roster, report, [], b"good")
    foreign = other.revision(org.roster, report, [], b"not yours")
    body = {
        "envelopes": [
            b64(dev.sent[0].to_bytes()),
            b64(b"not an envelope"),
            b64(foreign.to_bytes()),
            b64(good.to_bytes()),
        ]
    }
    r = org.api.call("POST", org.path + "/push", body, key=dev.key)
    assert statuses(r) == ["created", "invalid", "invalid", "created"]
    results = r.json()["results"]
    assert "envelope_id" not in results[1] and results[1]["retryable"] is False
    assert "device" in results[2]["detail"]
    receipt = Receipt.verify(
        b64decode(r.json()["receipt"]), org.server_key, org_id=org.org_id, device_id=dev.device_id
    )
    assert {i.envelope_id for i in receipt.items} == {dev.sent[0].id, good.id}


def test_a_tampered_envelope_signature_is_invalid(org) -> None:
    dev = org.add_device()
    env = dev.key_envelope(org.roster)
    raw = bytearray(env.to_bytes())
    raw[-1] ^= 1  # flip a bit of the signature
    body = {"envelopes": [b64(bytes(raw))]}
    r = org.api.call("POST", org.path + "/push", body, key=dev.key)
    assert statuses(r) == ["invalid"]
    assert "signature" in r.json()["results"][0]["detail"]


def test_unknown_roster_version_is_invalid(org) -> None:
    dev = org.add_device()
    from dataclasses import replace

    future = replace(org.roster, version=org.roster.version + 5)
    env = dev.key_envelope(future)
    assert statuses(org.push(dev, [env])) == ["invalid"]


def test_revoked_device_cannot_push_after_its_revocation_point(org) -> None:
    # §8.3 D3 and §8.1 roster: revocation takes effect from the version that carries it.
    dev = org.add_device()
    report = secrets.token_bytes(16)
    early = dev.revision(org.roster, report, [], b"before")
    assert statuses(org.push(dev, dev.sent)) == ["created", "created"]
    late = dev.revision(org.roster, report, [early.id], b"after seizure")
    assert org.publish(org.roster.revoke(dev.device_id, after_seq=2)).status_code == 200
    r = org.push(dev, [late])
    assert statuses(r) == ["revoked"]
    assert r.json()["results"][0]["retryable"] is False
    devices = org.as_coordinator("GET", "/devices").json()["devices"]
    state = [d for d in devices if b64decode(d["device_id"]) == dev.device_id][0]
    assert state["state"] == "revoked" and state["revoked_after"] == 2


def test_envelopes_stored_before_a_revocation_arrives_are_flagged(org) -> None:
    dev = org.add_device()
    report = secrets.token_bytes(16)
    a = dev.revision(org.roster, report, [], b"a")
    dev.revision(org.roster, report, [a.id], b"b (after the seizure)")
    assert statuses(org.push(dev, dev.sent)) == ["created"] * 3
    assert org.publish(org.roster.revoke(dev.device_id, after_seq=2)).status_code == 200
    flags = [i["flags"] for i in org.changes().json()["items"]]
    assert flags == [[], [], ["revoked"]]


def test_watermark_and_holes(org) -> None:
    # §8.5: coordinators see each device's contiguous watermark and the holes above it.
    dev = org.add_device()
    dev.key_envelope(org.roster)
    a, b, c = (dev.revision(org.roster, secrets.token_bytes(16), [], b"x") for _ in range(3))

    def chain():
        devices = org.as_coordinator("GET", "/devices").json()["devices"]
        mine = [x for x in devices if b64decode(x["device_id"]) == dev.device_id][0]
        return mine["watermark"], mine["max_seq"], mine["holes"]

    assert chain() == (0, 0, [])
    assert statuses(org.push(dev, [dev.sent[0], a, c])) == ["created"] * 3
    assert chain() == (2, 4, [[3, 3]])
    assert statuses(org.push(dev, [b])) == ["created"]
    assert chain() == (4, 4, [])


def test_batch_over_the_limits_is_413_with_the_limits(org, client) -> None:
    dev = org.add_device()
    limit = client.get("/v1/server").json()["limits"]["max_batch_items"]
    body = {"envelopes": [b64(b"x")] * (limit + 1)}
    r = org.api.call("POST", org.path + "/push", body, key=dev.key)
    assert r.status_code == 413
    assert r.json()["code"] == "payload_too_large"
    assert r.json()["limits"]["max_batch_items"] == limit


def test_organisations_are_isolated(client: TestClient) -> None:
    api = Api(client)
    one, two = create_org(api), create_org(api)
    dev = one.add_device()
    env = dev.key_envelope(one.roster)
    # A device of org one cannot push to org two, even with a valid signature.
    body = {"envelopes": [b64(env.to_bytes())]}
    r = api.call("POST", two.path + "/push", body, key=dev.key)
    assert r.status_code == 401 and r.json()["code"] == "signature_invalid"
    # Org one's coordinator cannot read org two's feed.
    r = api.call("GET", two.path + "/changes", key=one.coordinator)
    assert r.status_code == 401
    # An envelope for org one pushed by a device of org two is invalid (wrong org).
    dev2 = two.add_device()
    r = two.push(dev2, [env])
    assert [x["status"] for x in r.json()["results"]] == ["invalid"]


def test_field_devices_cannot_read_the_feed_or_publish_rosters(org) -> None:
    dev = org.add_device()
    r = org.api.call("GET", org.path + "/changes", key=dev.key)
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    r = org.api.call("GET", org.path + "/devices", key=dev.key)
    assert r.status_code == 403
    # But members may read the roster.
    r = org.api.call("GET", org.path + "/roster", key=dev.key)
    assert r.status_code == 200 and len(r.json()["versions"]) == len(org.rosters)


def test_unknown_device_and_unknown_org(org, client) -> None:
    stranger = SigningKey.generate()
    r = org.api.call("GET", org.path + "/roster", key=stranger)
    assert r.status_code == 401
    r = org.api.call("GET", "/v1/orgs/" + b64(secrets.token_bytes(16)) + "/roster", key=stranger)
    assert r.status_code == 404 and r.json()["code"] == "unknown_org"
    r = client.get("/v1/orgs/!!!/roster")
    assert r.status_code == 404
