"""The relay flow and carried envelopes in the feed (PROTOCOL §23.3, §23.4), against hand-played
servers, honest and not.

A relay drops a carried envelope only on a verified receipt naming it; a coordinator that
imported envelopes from a carried file still checks them against the log when the feed
delivers them, and applies nothing twice.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import pytest

from crypto import SigningKey, parse_envelope
from sync.client import (
    CarriedSeenInFeed,
    ChangesPulled,
    LogPosition,
    RelayDelivered,
    Request,
    Response,
    ServerMisbehaved,
    pull_flow,
    relay_flow,
)
from sync.messages import b64encode
from sync.receipt import ReceiptItem
from tests.sync.client.support import (
    ORG,
    PATH,
    HonestServer,
    Org,
    of_type,
    play,
    pushed_envelopes,
    receipt_bytes,
    sealed,
    serve_feed,
)

RELAY = SigningKey.generate()


class RelayServer(HonestServer):
    """Stores like `HonestServer`, at ``/relay``, and receipts to the relay (§23.3);
    ``change`` edits each answer (an adversary)."""

    def __init__(self, org: Org, change: Any = None, receipt_for: bytes | None = None) -> None:
        super().__init__(org)
        self.change = change
        self.receipt_for = receipt_for or RELAY.verify_key.key_id

    def answer(self, request: Request) -> dict[str, Any] | None:
        assert request.path == f"{PATH}/relay"
        body = super().answer(replace(request, path=f"{PATH}/push"))
        assert body is not None
        parsed = [parse_envelope(e) for e in pushed_envelopes(request)]
        items = tuple(ReceiptItem(e.id, e.header.seq, self.stored[e.id]) for e in parsed)
        receipt = receipt_bytes(self.org.server, self.receipt_for, items, log=self.log)
        body["receipt"] = b64encode(receipt)
        return self.change(body) if self.change else body


def _relay(org: Org, queue: list[bytes], server: Any) -> tuple[Any, list[Any]]:
    flow = relay_flow(
        queue,
        org_id=ORG,
        device_id=RELAY.verify_key.key_id,
        server_key=org.server.verify_key,
        max_items=100,
        max_bytes=10**6,
        org_path=PATH,
        log=LogPosition(ORG, org.server.verify_key),
    )
    return play(flow, server)


def test_a_relay_pushes_each_authors_chain_in_order_and_drops_what_the_receipt_names() -> None:
    """PROTOCOL §23.3: one batch to /relay, chain order (parents first), then one event."""
    org = Org()
    envelopes = sealed(org, 4)
    shuffled = random.Random(7).sample(envelopes, len(envelopes))
    server = RelayServer(org)
    summary, events = _relay(org, shuffled, server)
    assert pushed_envelopes(server.requests[0]) == envelopes
    assert (summary.delivered, summary.refused, summary.waiting) == (5, 0, 0)
    [delivered] = of_type(events, RelayDelivered)
    assert delivered.delivered == tuple(parse_envelope(e).id for e in envelopes)
    assert delivered.refused == () and len(delivered.receipts) == 1


def test_a_receipt_for_another_device_drops_nothing() -> None:
    """PROTOCOL §23.3, §15.3 item 1: the receipt must name this organisation and the relay
    itself; the author's receipt (or anyone else's) is misbehaviour and nothing is dropped."""
    org = Org()
    server = RelayServer(org, receipt_for=org.field.verify_key.key_id)
    with pytest.raises(ServerMisbehaved, match="receipt"):
        _relay(org, sealed(org, 2), server)


def test_refused_items_leave_with_their_reason_and_unreceipted_ones_stay() -> None:
    """PROTOCOL §23.3: terminal refusals are kept with the reason; missing_parents and
    stored-but-unreceipted items stay queued for the next sync."""
    org = Org()
    envelopes = sealed(org, 3)

    def change(body: dict[str, Any]) -> dict[str, Any]:
        body["results"][1].update(status="revoked", detail="after revocation")
        body["results"][2].update(status="missing_parents", retryable=True, missing=[])
        return body

    server = RelayServer(org, change)
    summary, events = _relay(org, envelopes, server)
    [delivered] = of_type(events, RelayDelivered)
    ids = [parse_envelope(e).id for e in envelopes]
    assert delivered.refused == ((ids[1], "revoked", "after revocation"),)
    assert ids[2] not in delivered.delivered and ids[1] not in delivered.delivered
    assert set(delivered.delivered) == {ids[0], ids[3]}
    assert (summary.delivered, summary.refused, summary.waiting) == (2, 1, 1)


def test_the_feed_checks_carried_envelopes_once_and_applies_nothing_twice() -> None:
    """PROTOCOL §23.4: an envelope the view took from a carried file, delivered by the feed,
    is not ingested again, but counts as fresh for the log's later checks (its place in the
    log is new) and is reported seen."""
    org = Org()
    envelopes = sealed(org, 3)
    view = org.view()
    for data in envelopes[:2]:  # imported from a carried file, before the link returned
        assert view.ingest(data)
    carried = frozenset(parse_envelope(e).id for e in envelopes[:2])
    before = view.reports()

    def server(request: Request) -> Response:
        return serve_feed(envelopes, request, server=org.server)

    flow = pull_flow(
        view,
        org_path=PATH,
        cursor=None,
        log=LogPosition(ORG, org.server.verify_key),
        clock=lambda: 0.0,
        carried=carried,
    )
    result, events = play(flow, server)
    [page] = of_type(events, ChangesPulled)
    assert page.envelopes == tuple(envelopes[2:])  # only the new ones are kept again
    ids = [parse_envelope(e).id for e in envelopes]
    assert of_type(events, CarriedSeenInFeed) == [CarriedSeenInFeed(tuple(ids[:2]))]
    assert [s.envelope_id for s in result.stored] == ids
    assert [s.server_seq for s in result.stored] == [1, 2, 3, 4]
    assert len(view.envelopes) == 4 and view.reports().keys() == before.keys()
