"""The API end to end through the ASGI app: orgs, rosters, invites, enrollment, push, pull.

Each test names the docs/PROTOCOL.md section whose MUST it checks.
"""

from __future__ import annotations

import secrets

from server_api import ADMIN_TOKEN, Api, b64, create_org, genesis
from starlette.testclient import TestClient

from crypto import KemPrivateKey, SigningKey, VerifyKey
from sync.messages import b64decode
from sync.receipt import Receipt


def test_create_org_needs_the_admin_token(client: TestClient) -> None:
    # PROTOCOL.md §8.1: POST /v1/orgs is gated by the operator's admin token.
    server_key = VerifyKey(b64decode(client.get("/v1/server").json()["server_key"]))
    signed = genesis(server_key, SigningKey.generate(), KemPrivateKey.generate())
    body = {"roster": b64(signed.to_bytes())}
    r = client.post("/v1/orgs", json=body)
    assert r.status_code == 401 and r.json()["code"] == "admin_token_invalid"
    r = client.post("/v1/orgs", json=body, headers={"authorization": "Bearer wrong" + "x" * 40})
    assert r.status_code == 401
    r = client.post("/v1/orgs", json=body, headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.status_code == 201
    r = client.post("/v1/orgs", json=body, headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.status_code == 409 and r.json()["code"] == "org_exists"


def test_genesis_must_pin_this_servers_key(client: TestClient) -> None:
    """PROTOCOL §7.4: a genesis pinning another receipt key is refused."""
    signed = genesis(
        SigningKey.generate().verify_key, SigningKey.generate(), KemPrivateKey.generate()
    )
    r = client.post(
        "/v1/orgs",
        json={"roster": b64(signed.to_bytes())},
        headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert r.status_code == 422 and r.json()["code"] == "roster_invalid"


def test_full_flow_push_pull_and_receipt(client: TestClient) -> None:
    api = Api(client)
    org = create_org(api)
    dev = org.add_device()
    report = secrets.token_bytes(16)
    r1 = dev.revision(org.roster, report, [], b"first")
    r2 = dev.revision(org.roster, report, [r1.id], b"second")
    key_env = dev.sent[0]
    r = org.push(dev, [key_env, r1, r2])
    assert r.status_code == 200, r.text
    body = r.json()
    assert [x["status"] for x in body["results"]] == ["created"] * 3
    assert [x["server_seq"] for x in body["results"]] == [1, 2, 3]
    receipt = Receipt.verify(
        b64decode(body["receipt"]), org.server_key, org_id=org.org_id, device_id=dev.device_id
    )
    assert receipt.covers([key_env.id, r1.id, r2.id])
    # Retrying the same batch gives duplicates with the original sequence numbers.
    again = org.push(dev, [key_env, r1, r2]).json()
    assert [x["status"] for x in again["results"]] == ["duplicate"] * 3
    assert [x["server_seq"] for x in again["results"]] == [1, 2, 3]
    # Coordinators pull the feed.
    page = org.changes().json()
    assert [i["server_seq"] for i in page["items"]] == [1, 2, 3]
    assert [b64decode(i["envelope"]) for i in page["items"]] == [
        e.to_bytes() for e in (key_env, r1, r2)
    ]
    assert page["more"] is False
    assert org.changes(page["cursor"]).json()["items"] == []
    # The report graph.
    graph = org.as_coordinator("GET", f"/reports/{b64(report)}").json()
    assert graph["heads"] == [b64(r2.id)]
    assert len(graph["items"]) == 2
    # The device fetches its receipts.
    stored = api.call("GET", org.path + "/receipts", key=dev.key).json()
    assert [r["id"] for r in stored["receipts"]] == [1, 2]  # the retry got a receipt too
    first = Receipt.verify(
        b64decode(stored["receipts"][0]["receipt"]),
        org.server_key,
        org_id=org.org_id,
        device_id=dev.device_id,
    )
    assert first == receipt


def test_wire_bytes_and_models_are_strict(client: TestClient) -> None:
    """PROTOCOL §7.2: padded or non-canonical base64url, unknown fields and unknown query
    parameters are refused with 422 validation_failed, never guessed at."""
    server_key = VerifyKey(b64decode(client.get("/v1/server").json()["server_key"]))
    signed = genesis(server_key, SigningKey.generate(), KemPrivateKey.generate())
    good = b64(signed.to_bytes())
    admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    padded = good + "=" * (-len(good) % 4 or 4)
    last = good[-1]
    # A different final character that decodes to the same bytes (unused bits set), if any.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for bad in (padded, good[:-1] + "+", good + "!", {"roster": good, "extra": 1}):
        body = bad if isinstance(bad, dict) else {"roster": bad}
        r = client.post("/v1/orgs", json=body, headers=admin)
        assert r.status_code == 422, bad if isinstance(bad, str) else body
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["code"] == "validation_failed"
    if len(signed.to_bytes()) % 3:
        aliases = [
            c for c in alphabet if c != last and good[:-1] + c != good and _same_bytes(good, c)
        ]
        for alias in aliases:
            r = client.post("/v1/orgs", json={"roster": good[:-1] + alias}, headers=admin)
            assert r.status_code == 422
    r = client.get("/v1/server", params={"surprise": "1"})
    assert r.status_code == 422 and r.json()["code"] == "validation_failed"
    r = client.post("/v1/orgs", json={"roster": good}, headers=admin)
    assert r.status_code == 201


def _same_bytes(good: str, last: str) -> bool:
    import base64

    def raw(text: str) -> bytes:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

    try:
        return raw(good[:-1] + last) == raw(good)
    except ValueError:
        return False
