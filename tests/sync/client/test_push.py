"""Push and receipts: item-by-item results, purge on a verified receipt (PROTOCOL §15.2, §15.3)."""

from __future__ import annotations

from typing import Any

import pytest

from crypto import SigningKey, parse_envelope
from sync.client import (
    BatchAcknowledged,
    BatchSplit,
    DeviceState,
    ItemRefused,
    LogCheckpointAdopted,
    LogPosition,
    Request,
    Response,
    ServerMisbehaved,
    SyncRefused,
    push_flow,
)
from sync.messages import ItemStatus, b64encode
from sync.receipt import ReceiptItem
from tests.sync.client.support import (
    ORG,
    PATH,
    REPORT,
    HonestServer,
    Org,
    device_with,
    of_type,
    play,
    problem,
    pushed_envelopes,
    receipt_bytes,
)


def _push(
    org: Org,
    state: DeviceState,
    *,
    max_items: int = 100,
    max_bytes: int = 10**6,
    log: LogPosition | None = None,
):
    """``log``: the checkpoint the device holds (by default none yet)."""
    return push_flow(
        state,
        server_key=org.server.verify_key,
        max_items=max_items,
        max_bytes=max_bytes,
        org_path=PATH,
        log=log or LogPosition(ORG, org.server.verify_key),
    )


def _without_log(events: list[Any]) -> list[Any]:
    """The push's own events (checkpoint adoption is `tests/sync/client/test_log.py`'s)."""
    return [e for e in events if not isinstance(e, LogCheckpointAdopted)]


def _tampered(honest: HonestServer, change: Any):
    """A server that stores like ``honest`` and then edits its JSON answer with ``change``."""

    def server(request: Request) -> Response:
        body = honest.answer(request)
        assert body is not None
        return Response.of_json(200, change(body, request))

    return server


def _snapshot(state: DeviceState) -> dict[str, Any]:
    return state.to_cbor()


def test_push_purges_only_what_a_valid_receipt_covers() -> None:
    # PROTOCOL §15.3 item 2.
    org = Org()
    state = device_with(org, 5)
    server = HonestServer(org)
    summary, events = play(_push(org, state), server)
    assert state.outbox == [] and state.sent == 6 and summary.purged == 6
    assert len(server.stored) == 6
    assert _without_log(events) == [BatchAcknowledged(stored=6, purged=6, retry_later=0)]
    assert len(state.receipts) == 1 and state.last_server_seq == 6
    assert state.heads[REPORT]  # the device still knows its heads to keep editing


def test_batches_stay_within_the_servers_item_and_byte_limits() -> None:
    # PROTOCOL §15.2 item 1.
    org = Org()
    state = device_with(org, 6)
    server = HonestServer(org)
    play(_push(org, state, max_items=3), server)
    assert [len(pushed_envelopes(r)) for r in server.requests] == [3, 3, 1]
    assert state.outbox == []

    state = device_with(org, 6)
    server = HonestServer(org)
    sizes = [len(i.data) for i in state.outbox]  # a key envelope, then revisions
    byte_limit = 1024 + max(sizes[0], 2 * max(sizes[1:]))  # 1024: the CBOR framing
    play(_push(org, state, max_bytes=byte_limit), server)
    batches = [pushed_envelopes(r) for r in server.requests]
    assert all(sum(len(e) for e in batch) <= byte_limit - 1024 for batch in batches)
    assert len(batches) >= 3 and sum(len(b) for b in batches) == 7
    assert state.outbox == []


def test_push_splits_a_batch_the_server_finds_too_large() -> None:
    # PROTOCOL §15.2 item 1: on 413 the batch is halved and retried.
    org = Org()
    state = device_with(org, 7)
    server = HonestServer(org, max_items=3)
    summary, events = play(_push(org, state), server)
    assert state.outbox == [] and summary.splits == 2
    assert of_type(events, BatchSplit) == [BatchSplit(4), BatchSplit(2)]
    assert [len(pushed_envelopes(r)) for r in server.requests] == [8, 4, 2, 2, 2, 2]
    assert len(server.stored) == 8


def test_an_envelope_refused_alone_as_too_large_is_kept_aside() -> None:
    # PROTOCOL §15.2 item 1: a single envelope refused with 413 is set aside, not retried.
    org = Org()
    state = device_with(org, 1)
    first, second = state.outbox
    honest = HonestServer(org)

    def server(request: Request) -> Response:
        if second.envelope_id in {parse_envelope(e).id for e in pushed_envelopes(request)}:
            return problem(413, "payload_too_large")
        return honest(request)

    summary, events = play(_push(org, state), server)
    assert summary.rejected == 1 and summary.splits == 1
    assert state.outbox == []
    assert [(i.envelope_id, s) for i, s, _ in state.rejected] == [(second.envelope_id, "too_large")]
    assert of_type(events, ItemRefused) == [
        ItemRefused(2, "too_large", "the server refuses an envelope this large")
    ]
    assert list(honest.stored) == [first.envelope_id]


@pytest.mark.parametrize(
    "forgery",
    ["impostor key", "another device", "another organisation"],
)
def test_a_receipt_that_does_not_verify_for_this_device_purges_nothing(forgery: str) -> None:
    # PROTOCOL §15.3 item 1: verified with the pinned server key, naming this org and device.
    org = Org()
    state = device_with(org, 1)
    before = _snapshot(state)
    key, device, org_id = org.server, org.field.verify_key.key_id, ORG
    if forgery == "impostor key":
        key = SigningKey.generate()
    elif forgery == "another device":
        device = org.coord.verify_key.key_id
    else:
        org_id = b"X" * 16

    def forge(body: dict[str, Any], request: Request) -> dict[str, Any]:
        items = tuple(
            ReceiptItem(parse_envelope(e).id, parse_envelope(e).header.seq, 1)
            for e in pushed_envelopes(request)
        )
        return {**body, "receipt": b64encode(receipt_bytes(key, device, items, org_id))}

    with pytest.raises(ServerMisbehaved, match="receipt"):
        play(_push(org, state), _tampered(HonestServer(org), forge))
    assert len(state.outbox) == 2 and state.receipts == [] and state.sent == 0
    assert _snapshot(state) == before


def test_results_decide_item_by_item_terminal_ones_are_kept_aside_not_lost() -> None:
    # PROTOCOL §15.2 item 2.
    org = Org()
    state = device_with(org, 3)
    ids = [i.envelope_id for i in state.outbox]

    def mixed(request: Request) -> Response:
        statuses = [
            ("created", False),
            ("missing_parents", True),
            ("invalid", False),
            ("duplicate", False),
        ]
        results = [
            {"envelope_id": b64encode(e), "status": s, "retryable": r, "detail": f"{s} here"}
            for e, (s, r) in zip(ids, statuses, strict=True)
        ]
        items = (ReceiptItem(ids[0], 1, 1), ReceiptItem(ids[3], 4, 2))
        receipt = receipt_bytes(org.server, org.field.verify_key.key_id, items)
        return Response.of_json(200, {"results": results, "receipt": b64encode(receipt)})

    summary, events = play(_push(org, state), mixed)
    assert [i.envelope_id for i in state.outbox] == [ids[1]]  # retryable stays queued
    assert [(i.envelope_id, s) for i, s, _ in state.rejected] == [(ids[2], "invalid")]
    assert summary.purged == 2 and summary.rejected == 1 and summary.retry_later == 1
    assert _without_log(events) == [
        ItemRefused(3, "invalid", "invalid here"),
        BatchAcknowledged(stored=2, purged=2, retry_later=1),
    ]


def test_the_terminal_item_statuses_are_exactly_invalid_equivocation_and_revoked() -> None:
    # PROTOCOL §15.2 item 2: created/duplicate/conflict are stored, missing_parents retried.
    terminal = {s.value for s in ItemStatus if not s.stored and not s.retryable}
    assert terminal == {"invalid", "equivocation", "revoked"}
    assert {s.value for s in ItemStatus if s.stored} == {"created", "duplicate", "conflict"}
    assert {s.value for s in ItemStatus if s.retryable} == {"missing_parents"}


@pytest.mark.parametrize("status", ["invalid", "equivocation", "revoked"])
def test_a_terminal_result_consumes_the_item_and_keeps_it_aside(status: str) -> None:
    # PROTOCOL §15.2 item 2: one poisoned item never stalls the outbox; it is never dropped.
    org = Org()
    state = device_with(org, 1)
    key_item, revision = state.outbox

    def poison(body: dict[str, Any], request: Request) -> dict[str, Any]:
        results = [body["results"][0], {**body["results"][1], "status": status}]
        return {**body, "results": results}

    summary, events = play(_push(org, state), _tampered(HonestServer(org), poison))
    assert state.outbox == []
    assert [(i.envelope_id, s) for i, s, _ in state.rejected] == [(revision.envelope_id, status)]
    assert state.rejected[0][0].data == revision.data  # the bytes are kept to show
    assert of_type(events, ItemRefused)[0].status == status
    assert summary.purged == 1 and summary.rejected == 1


def test_stored_but_unreceipted_items_stay_queued() -> None:
    # PROTOCOL §15.3 item 2: only a receipt listing the id with its device seq purges.
    org = Org()
    state = device_with(org, 2)
    ids = [i.envelope_id for i in state.outbox]

    def partial(body: dict[str, Any], request: Request) -> dict[str, Any]:
        # ids[1] is missing from the receipt; ids[2] is listed with the wrong device seq.
        items = (ReceiptItem(ids[0], 1, 1), ReceiptItem(ids[2], 7, 3))
        receipt = receipt_bytes(org.server, org.field.verify_key.key_id, items)
        return {**body, "receipt": b64encode(receipt)}

    summary, events = play(_push(org, state), _tampered(HonestServer(org), partial))
    assert [i.envelope_id for i in state.outbox] == ids[1:]
    assert summary.stored == 3 and summary.purged == 1 and summary.retry_later == 2
    assert _without_log(events) == [BatchAcknowledged(stored=3, purged=1, retry_later=2)]
    # Re-pushing is idempotent (duplicate) and yields the receipt that purges.
    server = HonestServer(org)
    play(_push(org, state), server)
    assert state.outbox == [] and state.sent == 3


def test_each_item_is_tried_at_most_once_per_run() -> None:
    # PROTOCOL §15.2 item 2: a retryable item waits for the next sync, it does not loop.
    org = Org()
    state = device_with(org, 1)

    def retry(body: dict[str, Any], request: Request) -> dict[str, Any]:
        results = [{**r, "status": "missing_parents", "retryable": True} for r in body["results"]]
        return {**body, "results": results}

    server = HonestServer(org)
    summary, _ = play(_push(org, state), _tampered(server, retry))
    assert len(server.requests) == 1 and summary.retry_later == 2
    assert len(state.outbox) == 2 and state.rejected == []


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda b: {**b, "results": b["results"][::-1]}, id="reordered"),
        pytest.param(lambda b: {**b, "results": b["results"][:1]}, id="one-missing"),
        pytest.param(lambda b: {**b, "results": b["results"] * 2}, id="one-extra"),
        pytest.param(
            lambda b: {**b, "results": [b["results"][0], {**b["results"][1], "envelope_id": None}]},
            id="unnamed",
        ),
    ],
)
def test_results_that_are_not_one_per_item_in_request_order_are_refused(change: Any) -> None:
    # PROTOCOL §15.2 item 3: nothing of such an answer is applied.
    org = Org()
    state = device_with(org, 1)
    before = _snapshot(state)
    log = LogPosition(ORG, org.server.verify_key, device=state)
    with pytest.raises(ServerMisbehaved, match="push results"):
        play(_push(org, state, log=log), _tampered(HonestServer(org), lambda b, r: change(b)))
    assert _snapshot(state) == before and len(state.outbox) == 2
    assert log.checkpoint is None  # nor is the refused answer's checkpoint adopted (§17.6)


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(
            lambda b: {
                **b,
                "results": [{k: v for k, v in r.items() if k != "retryable"} for r in b["results"]],
            },
            id="no-retryable",
        ),
        pytest.param(
            lambda b: {**b, "results": [{**r, "status": "kept"} for r in b["results"]]},
            id="unknown-status",
        ),
        pytest.param(lambda b: {"results": b["results"]}, id="no-receipt"),
        pytest.param(lambda b: {**b, "receipt": "not base64!"}, id="receipt-not-base64"),
        pytest.param(lambda b: {**b, "extra": 1}, id="unknown-field"),
        pytest.param(lambda b: [b], id="not-a-map"),
    ],
)
def test_a_push_answer_of_the_wrong_shape_is_refused_and_nothing_applied(answer: Any) -> None:
    # PROTOCOL §15.3 item 1: every answer is parsed by its wire model before use.
    org = Org()
    state = device_with(org, 1)
    before = _snapshot(state)
    with pytest.raises(ServerMisbehaved, match="push"):
        play(_push(org, state), _tampered(HonestServer(org), lambda b, r: answer(b)))
    assert _snapshot(state) == before


def test_a_push_answer_that_is_not_json_is_refused() -> None:
    org = Org()
    state = device_with(org, 1)
    with pytest.raises(ServerMisbehaved, match="does not decode"):
        play(_push(org, state), lambda r: Response(200, b"{not json", "application/json"))
    assert len(state.outbox) == 2


def test_a_refusal_raises_and_keeps_the_outbox() -> None:
    # PROTOCOL §15.2 item 4.
    org = Org()
    state = device_with(org, 1)
    before = _snapshot(state)
    with pytest.raises(SyncRefused) as info:
        play(_push(org, state), lambda r: problem(403, "device_revoked", "revoked"))
    assert info.value.code == "device_revoked" and info.value.status == 403
    assert info.value.detail == "revoked"
    assert len(state.outbox) == 2 and _snapshot(state) == before


def test_an_empty_outbox_sends_nothing() -> None:
    org = Org()
    requests: list[Request] = []

    def server(request: Request) -> Response:
        requests.append(request)
        return problem(500, "internal")

    summary, events = play(_push(org, org.device()), server)
    assert requests == [] and events == [] and summary.batches == 0


def test_the_push_answer_is_read_with_a_bound() -> None:
    # PROTOCOL §15.3: the answer is bounded before it is decoded (an oversized one is refused).
    org = Org()
    state = device_with(org, 1)
    seen: list[Request] = []

    def huge(request: Request) -> Response:
        seen.append(request)
        return Response(200, b"", "application/json", oversized=True)

    with pytest.raises(ServerMisbehaved, match="larger"):
        play(_push(org, state), huge)
    assert 0 < seen[0].max_answer_bytes <= 65536 + 4096 * 2
    assert len(state.outbox) == 2
