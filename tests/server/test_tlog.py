"""The server's transparency log (PROTOCOL §17): receipts, the log endpoint, feed pages.

Each check verifies what the server answers with the client's own pure rules
(`sync.merkle`, `sync.checkpoint`, `sync.receipt`), against a tree the test builds itself
from the envelope ids it pushed, in the order of their server sequence numbers.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

import pytest
from server_api import Api, DeviceChain, Org, create_org
from sqlalchemy import Engine, text
from starlette.testclient import TestClient

from crypto import Envelope, parse_envelope
from sync.checkpoint import Checkpoint
from sync.merkle import Frontier, leaf_hash, root_of, verify_consistency
from sync.messages import b64decode, encode_push_cbor
from sync.receipt import Receipt


@pytest.fixture
def org(client: TestClient) -> Org:
    return create_org(Api(client))


def _envelopes(org: Org, device: DeviceChain, count: int) -> list[Envelope]:
    """``count`` envelopes: a key envelope first if the device has no epoch, then new reports."""
    out = [device.key_envelope(org.roster)] if device.chain is None else []
    while len(out) < count:
        out.append(device.revision(org.roster, device.seq.to_bytes(16, "big"), [], b"report"))
    return out


def _push_revisions(org: Org, device: DeviceChain, count: int) -> tuple[list[bytes], Any]:
    envelopes = _envelopes(org, device, count)
    r = org.push_cbor(device, envelopes)
    assert r.status_code == 200, r.text
    return [e.id for e in envelopes], r.json()


def _verified(org: Org, device: DeviceChain, answer: Any) -> tuple[Receipt, Checkpoint]:
    return Receipt.verify_logged(
        b64decode(answer["receipt"]), org.server_key, org_id=org.org_id, device_id=device.device_id
    )


def test_a_receipt_carries_a_checkpoint_that_holds_its_items(org: Org) -> None:
    """PROTOCOL §17.3: the receipt's checkpoint covers the batch, and its batch inclusion
    proof verifies; the checkpoint's root is the RFC 9162 root of every id pushed so far."""
    coordinator = org.coordinator_chain()
    ids, answer = _push_revisions(org, coordinator, 37)
    receipt, checkpoint = _verified(org, coordinator, answer)
    assert checkpoint.size == 37 and [i.server_seq for i in receipt.items] == list(range(1, 38))
    assert checkpoint.root == root_of([leaf_hash(e) for e in ids])
    more, answer = _push_revisions(org, coordinator, 20)
    receipt, later = _verified(org, coordinator, answer)
    assert later.size == 57 and later.root == root_of([leaf_hash(e) for e in ids + more])
    # The same batch again: duplicates are proven at their original positions.
    again = org.push_cbor(coordinator, coordinator.sent[-20:])
    receipt, same = _verified(org, coordinator, again.json())
    assert same.size == 57 and [i.server_seq for i in receipt.items] == list(range(38, 58))


def test_push_with_since_proves_consistency_from_the_held_checkpoint(org: Org) -> None:
    """PROTOCOL §17.3: ``?since=M`` on a push (covered by the request signature) answers a
    consistency proof from M to the receipt's checkpoint, which verifies against both roots."""
    coordinator = org.coordinator_chain()
    _, first = _push_revisions(org, coordinator, 21)
    _, held = _verified(org, coordinator, first)
    _push_revisions(org, coordinator, 9)
    envelopes = _envelopes(org, coordinator, 30)
    r = org.api.call(
        "POST",
        org.path + f"/push?since={held.size}",
        key=coordinator.key,
        content=encode_push_cbor([e.to_bytes() for e in envelopes]),
        headers={"content-type": "application/cbor"},
    )
    assert r.status_code == 200, r.text
    _, now = _verified(org, coordinator, r.json())
    assert now.size == 60
    proof = [b64decode(h) for h in r.json()["consistency"]]
    verify_consistency(held.size, now.size, held.root, now.root, proof)
    assert "consistency" not in first


def test_the_log_endpoint_proves_every_older_size(org: Org) -> None:
    """PROTOCOL §17.3: ``GET /log?since=M`` answers the current checkpoint and a
    consistency proof from M, for every M up to the size; an empty org has size 0."""
    r = org.as_coordinator("GET", "/log")
    assert r.status_code == 200
    empty = Checkpoint.verify(b64decode(r.json()["checkpoint"]), org.server_key, org_id=org.org_id)
    assert empty.size == 0 and r.json()["consistency"] == []
    coordinator = org.coordinator_chain()
    ids, _ = _push_revisions(org, coordinator, 50)
    leaves = [leaf_hash(e) for e in ids]
    for since in range(1, 51):
        r = org.as_coordinator("GET", f"/log?since={since}")
        state = r.json()
        now = Checkpoint.verify(b64decode(state["checkpoint"]), org.server_key, org_id=org.org_id)
        assert now.size == 50
        proof = [b64decode(h) for h in state["consistency"]]
        if since < 50:
            verify_consistency(since, 50, root_of(leaves[:since]), now.root, proof)
        else:
            assert proof == []


def test_feed_pages_are_prefixes_of_their_checkpoint(org: Org) -> None:
    """PROTOCOL §17.3: each page carries the checkpoint that covers it and a consistency
    proof from the page's last item, so the pulled leaves' root extends to it."""
    coordinator = org.coordinator_chain()
    _push_revisions(org, coordinator, 45)
    frontier, cursor, pages = Frontier.empty(), "", 0
    while True:
        r = org.as_coordinator("GET", f"/changes?cursor={cursor}&limit=16")
        page = r.json()
        ids = [parse_envelope(b64decode(i["envelope"])).id for i in page["items"]]
        frontier, _ = frontier.append(leaf_hash(e) for e in ids)
        checkpoint = Checkpoint.verify(
            b64decode(page["log"]["checkpoint"]), org.server_key, org_id=org.org_id
        )
        assert checkpoint.size == 45
        prefix = [b64decode(h) for h in page["log"]["prefix"]]
        if frontier.size < 45:
            verify_consistency(frontier.size, 45, frontier.root(), checkpoint.root, prefix)
        else:
            assert prefix == [] and frontier.root() == checkpoint.root
        cursor, pages = page["cursor"], pages + 1
        if not page["more"]:
            break
    assert pages == 3


def test_the_migration_builds_the_log_of_existing_history(org: Org, engine: Engine) -> None:
    """A server upgraded with history (no log rows, as before migration 0004) serves the
    same root once the migration rebuilt the log from the envelopes in server order."""
    coordinator = org.coordinator_chain()
    ids, answer = _push_revisions(org, coordinator, 40)
    _, before = _verified(org, coordinator, answer)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM log_nodes"))
        conn.execute(text("UPDATE orgs SET log_frontier = NULL, checkpoint = NULL"))
        import_module("migrations.versions.0004_transparency_log")._build_existing_logs(conn)
    r = org.as_coordinator("GET", "/log?since=17")
    now = Checkpoint.verify(b64decode(r.json()["checkpoint"]), org.server_key, org_id=org.org_id)
    assert (now.size, now.root) == (before.size, before.root)
    proof = [b64decode(h) for h in r.json()["consistency"]]
    verify_consistency(17, 40, root_of([leaf_hash(e) for e in ids[:17]]), now.root, proof)
