"""Relay push through the API (docs/PROTOCOL.md §23.3): envelopes carried by another device.

The relay is a courier, not an author: each envelope is judged under its own author's key
and chain rules (§8.3), stored once, and the author learns of it at its own next push.
"""

from __future__ import annotations

import secrets
from dataclasses import replace

import pytest
from server_api import Api, DeviceChain, Org, b64, create_org
from starlette.testclient import TestClient

from crypto import SigningKey
from sync.messages import b64decode
from sync.receipt import Receipt


@pytest.fixture
def org(client: TestClient) -> Org:
    return create_org(Api(client))


def relay(org: Org, relay_key: SigningKey, envelopes: list) -> object:
    body = {"envelopes": [b64(e.to_bytes()) for e in envelopes]}
    return org.api.call("POST", org.path + "/relay", body, key=relay_key)


def statuses(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [r["status"] for r in response.json()["results"]]


def test_relayed_envelopes_are_stored_once_and_the_authors_push_is_a_receipted_duplicate(
    org,
) -> None:
    """PROTOCOL §23.3: stored under the author's chain, receipt to the relay; the author's
    own push of the same envelopes is answered duplicate with the original server_seq and a
    receipt listing them (so it purges, §15.3)."""
    author, courier = org.add_device(), org.add_device()
    report = secrets.token_bytes(16)
    first = author.revision(org.roster, report, [], b"first")
    author.revision(org.roster, report, [first.id], b"second")
    r = relay(org, courier.key, author.sent)
    assert statuses(r) == ["created", "created", "created"]
    seqs = [x["server_seq"] for x in r.json()["results"]]
    receipt, _ = Receipt.verify_logged(
        b64decode(r.json()["receipt"]),
        org.server_key,
        org_id=org.org_id,
        device_id=courier.device_id,
    )
    assert [i.envelope_id for i in receipt.items] == [e.id for e in author.sent]
    assert [i.device_seq for i in receipt.items] == [1, 2, 3]
    # Again, by the same relay (a replayed file): duplicates, nothing stored twice.
    assert statuses(relay(org, courier.key, author.sent)) == ["duplicate"] * 3
    mine = org.push(author, author.sent)
    assert statuses(mine) == ["duplicate"] * 3
    assert [x["server_seq"] for x in mine.json()["results"]] == seqs
    own, _ = Receipt.verify_logged(
        b64decode(mine.json()["receipt"]),
        org.server_key,
        org_id=org.org_id,
        device_id=author.device_id,
    )
    assert [(i.envelope_id, i.device_seq) for i in own.items] == [
        (e.id, e.header.seq) for e in author.sent
    ]
    items = org.changes().json()["items"]
    assert [b64decode(i["envelope"]) for i in items] == [e.to_bytes() for e in author.sent]
    listed = org.as_coordinator("GET", "/devices").json()["devices"]
    devices = {b64decode(d["device_id"]): d for d in listed}
    assert devices[author.device_id]["watermark"] == 3
    assert devices[courier.device_id]["watermark"] == 0


def test_each_item_is_judged_under_its_own_authors_rules(org) -> None:
    """PROTOCOL §23.3, §8.3: a forged signature, another organisation's envelope and an
    author who is no device of the organisation are refused item by item (invalid, with the
    rule), an envelope after its author's revocation point is revoked; the rest is stored."""
    author, courier = org.add_device(), org.add_device()
    report = secrets.token_bytes(16)
    good = author.revision(org.roster, report, [], b"good")
    pending = org.add_device(admit=False)  # enrolled: it may push, so it may be relayed
    pending.revision(org.roster, secrets.token_bytes(16), [], b"enrolled only")
    outsider = DeviceChain(key=SigningKey.generate(), org=org.org_id)
    stray = outsider.revision(org.roster, report, [], b"not a member")
    other_org = DeviceChain(key=author.key, org=secrets.token_bytes(16)).revision(
        org.roster, report, [], b"another organisation"
    )
    altered = replace(
        author.revision(org.roster, report, [good.id], b"altered"), signature=bytes(64)
    )
    batch = [*author.sent[:2], *pending.sent, stray, other_org, altered]
    r = relay(org, courier.key, batch)
    assert statuses(r) == ["created"] * 4 + ["invalid"] * 3
    details = [x.get("detail", "") for x in r.json()["results"][4:]]
    assert "not a device of this organisation" in details[0]
    assert "another organisation" in details[1]
    assert "signature" in details[2]
    garbage = org.api.call(
        "POST", org.path + "/relay", {"envelopes": [b64(b"not an envelope")]}, key=courier.key
    )
    assert statuses(garbage) == ["invalid"]
    late = author.revision(org.roster, report, [good.id], b"after seizure")
    assert org.publish(org.roster.revoke(author.device_id, after_seq=2)).status_code == 200
    assert statuses(relay(org, courier.key, [late])) == ["revoked"]


def test_only_an_admitted_unrevoked_member_relays(org) -> None:
    """PROTOCOL §23.3: a revoked relay is 403 device_revoked, an enrolled-only one 403
    forbidden, before anything is stored (a seized phone carries nothing in)."""
    author, courier = org.add_device(), org.add_device()
    author.revision(org.roster, secrets.token_bytes(16), [], b"x")
    pending = org.add_device(admit=False)
    r = relay(org, pending.key, author.sent)
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    assert org.publish(org.roster.revoke(courier.device_id, after_seq=0)).status_code == 200
    r = relay(org, courier.key, author.sent)
    assert r.status_code == 403 and r.json()["code"] == "device_revoked"
    assert r.headers["content-type"].startswith("application/problem+json")
    assert org.changes().json()["items"] == []


def test_a_coordinator_relays_too_and_a_relay_may_carry_its_own(org) -> None:
    """PROTOCOL §23.3: any admitted member relays; its own envelopes are judged as a push."""
    courier = org.coordinator_chain()
    courier.revision(org.roster, secrets.token_bytes(16), [], b"mine")
    assert statuses(relay(org, courier.key, courier.sent)) == ["created", "created"]
    assert statuses(org.push(courier, courier.sent)) == ["duplicate", "duplicate"]
