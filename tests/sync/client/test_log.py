"""The organisation's log as the client core checks it (PROTOCOL §17.5, §17.6).

The server side is played by hand: an honest `HonestLog`, and the lies a malicious server
can tell with its own key: a smaller log, a second log of the same size, a log that does
not extend the old one, a receipt whose checkpoint does not hold its items, a feed page that
is not the start of the log it signs.  Each ends in a named finding or a refusal, with the
evidence; nothing honest is flagged.
"""

from __future__ import annotations

from typing import Any

import pytest

from crypto import parse_envelope
from sync.checkpoint import Checkpoint
from sync.client import (
    Bounds,
    ChangesPulled,
    LogCheckpointAdopted,
    LogMisbehaviour,
    LogPosition,
    Request,
    Response,
    ServerMisbehaved,
    drive,
    log_flow,
    pull_flow,
    push_flow,
    seal_edit,
)
from sync.cursor import decode_cursor, encode_cursor
from sync.messages import b64encode
from sync.receipt import Receipt, ReceiptItem
from tests.sync.client.support import (
    EPOCH,
    ORG,
    PATH,
    REPORT,
    HonestLog,
    HonestServer,
    Org,
    content,
    device_with,
    fake_ids,
    feed_page,
    of_type,
    play,
    pushed_envelopes,
    sealed,
)


def _held(org: Org, log: HonestLog, size: int) -> LogPosition:
    return log.position(org.server.verify_key, held=size)


def _answering(log: HonestLog, since_seen: list[str] | None = None):
    def server(request: Request) -> Response:
        if since_seen is not None:
            since_seen.append(request.query.get("since", ""))
        return log.answer(request)

    return server


def test_an_honest_log_that_grew_is_adopted_without_a_finding() -> None:
    """PROTOCOL §17.6 item 2: the consistency proof from the held size verifies: adopt."""
    org = Org()
    log = HonestLog(org.server, fake_ids(40))
    position = _held(org, HonestLog(org.server, fake_ids(13)), 13)
    asked: list[str] = []
    checkpoint, events = play(log_flow(position, org_path=PATH), _answering(log, asked))
    assert asked == ["13"] and checkpoint.size == 40
    assert events == [LogCheckpointAdopted(log.checkpoint())]
    assert position.document == log.checkpoint() and position.size == 40
    # The same log again: nothing new, nothing said.
    _, events = play(log_flow(position, org_path=PATH), _answering(log))
    assert events == []


def test_a_first_sync_adopts_whatever_log_the_server_shows() -> None:
    """PROTOCOL §17.6 item 2: with nothing held there is nothing to compare."""
    org = Org()
    position = LogPosition(ORG, org.server.verify_key)
    asked: list[str] = []
    _, events = play(log_flow(position, org_path=PATH), _answering(HonestLog(org.server), asked))
    assert asked == [""] and [type(e) for e in events] == [LogCheckpointAdopted]


@pytest.mark.parametrize("kind", ["log-rolled-back", "log-forked", "log-inconsistent"])
def test_a_log_that_does_not_extend_the_held_checkpoint_is_a_finding_with_both_checkpoints(
    kind: str,
) -> None:
    """PROTOCOL §17.6: a smaller log, another log of the same size, or a log whose history
    differs are each named, with both signed checkpoints; the client goes on with the
    server's (a restored server is worked with), and the finding stays on record."""
    org = Org()
    honest = HonestLog(org.server, fake_ids(20))
    other = {
        "log-rolled-back": HonestLog(org.server, fake_ids(9)),
        "log-forked": HonestLog(org.server, fake_ids(20, b"fork")),
        "log-inconsistent": HonestLog(org.server, fake_ids(19, b"rewritten") + fake_ids(30)[19:]),
    }[kind]
    position = _held(org, honest, 20)
    _, events = play(log_flow(position, org_path=PATH), _answering(other))
    (finding,) = of_type(events, LogMisbehaviour)
    assert (finding.kind, finding.held, finding.offered) == (
        kind,
        honest.checkpoint(),
        other.checkpoint(),
    )
    for document in (finding.held, finding.offered):  # evidence anyone can check
        Checkpoint.verify(document, org.server.verify_key, org_id=ORG)
    assert position.document == other.checkpoint()


def test_a_log_checkpoint_that_does_not_verify_stops_the_sync() -> None:
    """PROTOCOL §17.6: only the pinned server key signs checkpoints, for this organisation."""
    org = Org()
    impostor = HonestLog(Org().server, fake_ids(5))
    with pytest.raises(ServerMisbehaved, match="checkpoint does not verify"):
        play(log_flow(LogPosition(ORG, org.server.verify_key), org_path=PATH), impostor.answer)
    elsewhere = HonestLog(org.server, fake_ids(5), org=b"X" * 16)
    with pytest.raises(ServerMisbehaved, match="checkpoint does not verify"):
        play(log_flow(LogPosition(ORG, org.server.verify_key), org_path=PATH), elsewhere.answer)


# -- receipts (§17.6 item 1)


def _push(org: Org, state: Any, server: Any, log: LogPosition) -> Any:
    flow = push_flow(
        state,
        server_key=org.server.verify_key,
        max_items=100,
        max_bytes=10**6,
        org_path=PATH,
        log=log,
    )
    return play(flow, server)


def test_a_push_proves_its_receipt_from_the_held_checkpoint() -> None:
    """PROTOCOL §17.6 item 1: the push asks ``since`` the held size; the answer's proof
    extends the held checkpoint to the receipt's, which holds every item: purge."""
    org = Org()
    server = HonestServer(org)
    position = LogPosition(ORG, org.server.verify_key)
    state = device_with(org, 2)  # a key envelope and 2 revisions
    _push(org, state, server, position)
    assert position.size == 3 and state.outbox == []
    for i in range(2):
        seal_edit(
            state,
            roster=org.roster,
            signing_key=org.field,
            report=REPORT,
            content=content(b=str(i)),
        )
    _, events = _push(org, state, server, position)
    assert server.requests[-1].query == {"since": "3"}
    assert position.size == 5 and state.outbox == [] and not of_type(events, LogMisbehaviour)


def test_a_receipt_whose_log_does_not_extend_the_held_one_purges_nothing() -> None:
    """PROTOCOL §17.6 item 1: a receipt from a rewritten log is a finding and a refusal."""
    org = Org()
    server = HonestServer(org)
    server.log.extend(fake_ids(7, b"rewritten"))  # the server's log no longer starts as held
    position = _held(org, HonestLog(org.server, fake_ids(7)), 7)
    state = device_with(org, 2)
    before = list(state.outbox)
    events: list[Any] = []
    with pytest.raises(ServerMisbehaved, match="log-inconsistent"):
        drive(
            push_flow(
                state,
                server_key=org.server.verify_key,
                max_items=100,
                max_bytes=10**6,
                org_path=PATH,
                log=position,
            ),
            server,
            events.append,
        )
    assert state.outbox == before and state.sent == 0
    assert [e.kind for e in of_type(events, LogMisbehaviour)] == ["log-inconsistent"]
    assert position.size == 7  # nothing adopted


def test_a_receipt_whose_checkpoint_does_not_hold_its_items_purges_nothing() -> None:
    """PROTOCOL §17.6 item 1: the server signs a receipt but leaves the items out of its
    log (it means to drop them once the device purged): refused before any purge."""
    org = Org()
    honest = HonestServer(org)
    state = device_with(org, 2)
    before = list(state.outbox)

    def lying(request: Request) -> Response:
        body = honest.answer(request)
        assert body is not None
        items = tuple(
            ReceiptItem(parse_envelope(e).id, parse_envelope(e).header.seq, n)
            for n, e in enumerate(pushed_envelopes(request), start=1)
        )
        elsewhere = HonestLog(org.server, fake_ids(3, b"without them"))
        forged = Receipt(ORG, org.field.verify_key.key_id, 1, items, elsewhere.checkpoint(), ())
        receipt = b64encode(forged.sign(org.server).to_bytes())
        return Response.of_json(200, {**body, "receipt": receipt})

    with pytest.raises(ServerMisbehaved, match="receipt does not verify"):
        _push(org, state, lying, LogPosition(ORG, org.server.verify_key))
    assert state.outbox == before


# -- feed pages (§17.6 item 3)


def _pull(org: Org, handle: Any, log: LogPosition, cursor: str | None = None) -> Any:
    view = org.view()
    flow = pull_flow(
        view, org_path=PATH, cursor=cursor, log=log, bounds=Bounds(page_items=2), clock=lambda: 0.0
    )
    return play(flow, handle)


def test_a_page_whose_items_are_not_the_start_of_its_log_is_refused() -> None:
    """PROTOCOL §17.6 item 3: an item swapped for another envelope the server holds, with the
    true cursor and seqs: the pulled tree's root is not a prefix of the checkpoint."""
    org = Org()
    envelopes = sealed(org, 3)
    log = HonestLog(org.server, (parse_envelope(e).id for e in envelopes))
    swapped = [envelopes[0], envelopes[2]]  # seq 2 holds envelope 3
    with pytest.raises(ServerMisbehaved, match="not the first entries of the log"):
        _pull(
            org,
            lambda r: feed_page(swapped, more=True, log=log),
            LogPosition(ORG, org.server.verify_key),
        )


def test_a_feed_that_ends_before_its_checkpoint_is_refused() -> None:
    """PROTOCOL §17.6 item 3: ``more: false`` while the checkpoint signs a longer log: the
    server admits items it does not serve."""
    org = Org()
    envelopes = sealed(org, 3)
    log = HonestLog(org.server, (parse_envelope(e).id for e in envelopes))
    with pytest.raises(ServerMisbehaved, match="ends before the log"):
        _pull(
            org,
            lambda r: feed_page(envelopes[:2], more=False, log=log),
            LogPosition(ORG, org.server.verify_key),
        )


def test_a_page_from_a_forked_log_is_a_finding_and_the_frontier_is_persisted_with_the_cursor() -> (
    None
):
    """PROTOCOL §17.6 items 2 and 3: the page is the start of the log it signs, but that log
    is not the one the coordinator held (same size, another root): log-forked, with both."""
    org = Org()
    envelopes = sealed(org, 1)  # 2 envelopes
    log = HonestLog(org.server, (parse_envelope(e).id for e in envelopes))
    held = _held(org, HonestLog(org.server, fake_ids(2, b"fork")), 2)
    _, events = _pull(org, lambda r: feed_page(envelopes, log=log, since=2), held)
    (finding,) = of_type(events, LogMisbehaviour)
    assert finding.kind == "log-forked" and finding.offered == log.checkpoint()
    (pulled,) = of_type(events, ChangesPulled)
    assert pulled.log_frontier == log.frontier.to_bytes() and pulled.cursor == encode_cursor(
        EPOCH, 2
    )
    assert decode_cursor(pulled.cursor) == (EPOCH, 2)
