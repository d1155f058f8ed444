"""Pulling the changes feed, each page validated whole (PROTOCOL §9.1, §9.2, §15.5, §15.6)."""

from __future__ import annotations

from typing import Any

import pytest

from crypto import parse_envelope
from sync.client import (
    Bounds,
    ChangesPulled,
    LogPosition,
    Request,
    Response,
    RunBudgetSpent,
    ServerMisbehaved,
    SyncRefused,
    drive,
    pull_flow,
    validate_page,
)
from sync.cursor import encode_cursor
from sync.messages import CBOR_MEDIA_TYPE, ChangeItem, ChangesPage, FeedLog
from tests.sync.client.support import (
    EPOCH,
    ORG,
    PATH,
    REPORT,
    HonestLog,
    Org,
    feed_page,
    field_of,
    filler_id,
    of_type,
    play,
    problem,
    sealed,
    serve_feed,
)

BOUNDS = Bounds()
OTHER_EPOCH = b"e" * 16


def _page(seqs: list[int], last: int | str, *, more: bool = False) -> ChangesPage:
    cursor = last if isinstance(last, str) else encode_cursor(EPOCH, last)
    items = [ChangeItem(server_seq=s, envelope=bytes([s % 256]), flags=[]) for s in seqs]
    log = FeedLog(checkpoint=b"checked by check_page, not here", prefix=[], consistency=[])
    return ChangesPage(items=items, cursor=cursor, more=more, log=log)


def _check(page: ChangesPage, after: int | None, *, asked: int = 500) -> int:
    cursor = None if after is None else encode_cursor(EPOCH, after)
    return validate_page(page, after_cursor=cursor, asked=asked, bounds=BOUNDS)


def _pull(
    view: Any,
    handle: Any,
    *,
    cursor: str | None = None,
    log: LogPosition | None = None,
    bounds: Bounds = BOUNDS,
    clock: Any = None,
):
    """``log``: what the coordinator holds of the log (by default nothing: a first pull)."""
    log = log or LogPosition(ORG, view.roster.roster.server_key)
    flow = pull_flow(
        view, org_path=PATH, cursor=cursor, log=log, bounds=bounds, clock=clock or (lambda: 0.0)
    )
    return play(flow, handle)


def _ids(envelopes: list[bytes]) -> list[bytes]:
    return [parse_envelope(e).id for e in envelopes]


def _pulled(events: list[Any]) -> list[tuple[Any, ...]]:
    return [(e.envelopes, e.cursor, e.last_seq, e.more) for e in of_type(events, ChangesPulled)]


# -- validate_page: one page against the cursor it answers (§9.1, §9.2)


def test_an_honest_page_is_accepted() -> None:
    assert _check(_page([1, 2, 3], 3, more=True), None) == 3
    assert _check(_page([6, 7], 7), 5) == 7
    assert _check(_page([], 5), 5) == 5  # an empty last page repeats the cursor


def test_a_page_that_drops_a_middle_item_is_refused() -> None:
    with pytest.raises(ServerMisbehaved, match="dropped, repeated or reordered"):
        _check(_page([1, 3], 3), None)


def test_a_page_that_drops_its_last_items_is_refused() -> None:
    # The true cursor (last = 4) gives away that items 3 and 4 were withheld.
    with pytest.raises(ServerMisbehaved, match="dropped, repeated or reordered"):
        _check(_page([1, 2], 4), None)
    with pytest.raises(ServerMisbehaved, match="dropped, repeated or reordered"):
        _check(_page([], 9, more=True), 5)


def test_a_page_that_repeats_an_item_is_refused() -> None:
    with pytest.raises(ServerMisbehaved, match="dropped, repeated or reordered"):
        _check(_page([1, 2, 2], 3), None)


def test_a_page_that_reorders_items_is_refused() -> None:
    with pytest.raises(ServerMisbehaved, match="dropped, repeated or reordered"):
        _check(_page([2, 1], 2), None)
    with pytest.raises(ServerMisbehaved, match="dropped, repeated or reordered"):
        _check(_page([6, 8, 7], 8), 5)


def test_a_page_whose_items_start_anywhere_but_after_the_cursor_is_refused() -> None:
    with pytest.raises(ServerMisbehaved, match="dropped, repeated or reordered"):
        _check(_page([2, 3], 3), 0)  # item 1 skipped
    with pytest.raises(ServerMisbehaved, match="dropped, repeated or reordered"):
        _check(_page([5, 6], 6), 5)  # item 5 was on the previous page


def test_a_page_with_a_cursor_of_another_epoch_is_refused() -> None:
    # PROTOCOL §9.2: a restore answers 409; a page from another epoch is misbehaviour.
    with pytest.raises(ServerMisbehaved, match="another server epoch"):
        _check(_page([6], encode_cursor(OTHER_EPOCH, 6)), 5)
    # From the start there is no epoch to compare with yet.
    assert _check(_page([1], encode_cursor(OTHER_EPOCH, 1)), None) == 1


@pytest.mark.parametrize("cursor", ["junk!", "AAAA", "", "A" * 129])
def test_a_page_with_a_junk_cursor_is_refused(cursor: str) -> None:
    with pytest.raises(ServerMisbehaved, match="cursor"):
        _check(_page([1], cursor), None)


def test_a_page_whose_cursor_goes_back_is_refused() -> None:
    with pytest.raises(ServerMisbehaved, match="goes back"):
        _check(_page([], 3), 5)


def test_a_page_that_does_not_advance_but_claims_more_is_refused() -> None:
    with pytest.raises(ServerMisbehaved, match="does not advance"):
        _check(_page([], 5, more=True), 5)
    with pytest.raises(ServerMisbehaved, match="does not advance"):
        _check(_page([], 0, more=True), None)


def test_a_page_with_more_items_than_asked_is_refused() -> None:
    with pytest.raises(ServerMisbehaved, match="at most 2"):
        _check(_page([1, 2, 3], 3), None, asked=2)


# -- pull_flow: page by page into the view


def test_the_feed_is_pulled_page_by_page_and_each_page_is_a_persistable_event() -> None:
    # PROTOCOL §15.5 item 1: envelopes and cursor are persisted together after each page.
    org = Org()
    envelopes = sealed(org, 3)  # 4 envelopes
    view = org.view()
    queries: list[dict[str, str]] = []
    log = HonestLog(org.server, _ids(envelopes))

    def server(request: Request) -> Response:
        assert request.path == f"{PATH}/changes" and request.accept == CBOR_MEDIA_TYPE
        queries.append(dict(request.query))
        if "cursor" not in request.query:
            return feed_page(envelopes[:2], more=True, log=log)
        return feed_page(envelopes[2:], after=2, log=log, since=int(request.query["since"]))

    result, events = _pull(view, server, bounds=Bounds(page_items=2))
    # The second page is asked with the size of the checkpoint the first one carried.
    second = {"limit": "2", "since": "4", "cursor": encode_cursor(EPOCH, 2)}
    assert queries == [{"limit": "2"}, second]
    assert _pulled(events) == [
        (tuple(envelopes[:2]), encode_cursor(EPOCH, 2), 2, True),
        (tuple(envelopes[2:]), encode_cursor(EPOCH, 4), 4, False),
    ]
    assert of_type(events, ChangesPulled)[-1].log_frontier == log.frontier.to_bytes()
    assert result.finished and result.pages == 2 and result.pulled == 4
    assert result.cursor == encode_cursor(EPOCH, 4) and not result.rewound
    assert field_of(view, REPORT, "a").value == "2"


def test_a_page_pulled_again_adds_nothing() -> None:
    # PROTOCOL §15.5 item 1: re-reading a page is harmless (envelopes are identified by id).
    org = Org()
    envelopes = sealed(org, 1)
    view = org.view()
    for data in envelopes:
        view.ingest(data)
    result, events = _pull(view, lambda r: feed_page(envelopes, server=org.server))
    assert _pulled(events) == [((), encode_cursor(EPOCH, 2), 2, False)]
    assert result.pulled == 0


def test_a_bad_page_after_a_good_one_keeps_only_the_good_ones_progress() -> None:
    # Nothing of a rejected page is used or persisted; the last validated cursor stands.
    org = Org()
    envelopes = sealed(org, 3)
    view = org.view()
    log = HonestLog(org.server, _ids(envelopes))

    def server(request: Request) -> Response:
        if "cursor" not in request.query:
            return feed_page(envelopes[:2], more=True, log=log)
        items = [{"server_seq": 4, "envelope": envelopes[3], "flags": []}]  # 3 is dropped
        page_log = {"checkpoint": log.checkpoint(), "prefix": [], "consistency": []}
        return Response.of_cbor(
            200,
            {"items": items, "cursor": encode_cursor(EPOCH, 4), "more": False, "log": page_log},
        )

    events: list[Any] = []
    position = LogPosition(ORG, org.server.verify_key)
    flow = pull_flow(
        view, org_path=PATH, cursor=None, log=position, bounds=BOUNDS, clock=lambda: 0.0
    )
    with pytest.raises(ServerMisbehaved, match="dropped"):
        drive(flow, server, events.append)
    assert _pulled(events) == [(tuple(envelopes[:2]), encode_cursor(EPOCH, 2), 2, True)]
    assert sorted(view.envelopes.values()) == sorted(envelopes[:2])


def test_a_cursor_from_a_restored_server_restarts_the_feed_and_says_so() -> None:
    # PROTOCOL §9.2, §15.6: said loudly, restarted from the beginning, nothing local deleted.
    org = Org()
    envelopes = sealed(org, 2)
    view = org.view()
    old = sealed(org, 1, report=b"\x01" * 16)
    view.ingest(old[0])
    calls: list[dict[str, str]] = []
    stale = encode_cursor(OTHER_EPOCH, 9)
    before = HonestLog(org.server, [filler_id(s) for s in range(1, 10)])

    def server(request: Request) -> Response:
        calls.append(dict(request.query))
        if request.query.get("cursor") == stale:
            return problem(409, "cursor_from_other_epoch", "restored")
        return feed_page(envelopes, server=org.server)

    held = before.position(org.server.verify_key, size=9)
    result, events = _pull(view, server, cursor=stale, log=held)
    assert result.rewound and result.cursor == encode_cursor(EPOCH, 3) and result.finished
    assert calls[0]["cursor"] == stale and "cursor" not in calls[1]
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["ServerWentBackInTime", "LogCheckpointAdopted", "ChangesPulled"]
    assert len(events[2].envelopes) == 3
    assert field_of(view, REPORT, "a").value == "1"
    assert old[0] in view.envelopes.values()  # kept


def test_a_server_that_refuses_the_start_of_its_own_feed_is_misbehaving() -> None:
    # PROTOCOL §15.6: the feed restarts once per run, it does not loop.
    view = Org().view()
    calls: list[Request] = []

    def server(request: Request) -> Response:
        calls.append(request)
        assert len(calls) <= 3, "the client keeps restarting the feed"
        return problem(409, "cursor_from_other_epoch")

    held = HonestLog(Org().server, [filler_id(s) for s in range(1, 4)])
    with pytest.raises(ServerMisbehaved, match="start of its own feed"):
        _pull(
            view,
            server,
            cursor=encode_cursor(EPOCH, 3),
            log=held.position(view.roster.roster.server_key, 3),
        )
    assert len(calls) == 2


def test_a_feed_refusal_raises() -> None:
    view = Org().view()
    with pytest.raises(SyncRefused) as info:
        _pull(view, lambda r: problem(403, "forbidden"))
    assert info.value.code == "forbidden"


def test_a_feed_that_does_not_advance_but_claims_more_is_stopped() -> None:
    org = Org()
    envelopes = sealed(org, 1)
    view = org.view()

    def stuck(request: Request) -> Response:
        if "cursor" not in request.query:
            return feed_page(envelopes, more=True, server=org.server)
        return feed_page([], after=2, more=True, server=org.server)

    with pytest.raises(ServerMisbehaved, match="does not advance"):
        _pull(view, stuck)


def test_an_oversized_page_is_asked_again_with_fewer_items() -> None:
    # An answer over the byte bound is never read further: the page size halves, down to one.
    org = Org()
    envelopes = sealed(org, 3)
    view = org.view()
    limits: list[int] = []

    def server(request: Request) -> Response:
        limits.append(int(request.query["limit"]))
        assert len(limits) <= 8, "the client keeps asking for the same page size"
        assert request.max_answer_bytes == 4096
        if limits[-1] > 2:
            return Response(200, b"", CBOR_MEDIA_TYPE, oversized=True)
        return serve_feed(envelopes, request, server=org.server)

    result, events = _pull(view, server, bounds=Bounds(page_items=8, max_answer_bytes=4096))
    assert limits == [8, 4, 2, 2]
    assert result.finished and result.pulled == 4 and result.pages == 2
    assert [e.last_seq for e in of_type(events, ChangesPulled)] == [2, 4]


def test_an_oversized_single_item_page_is_misbehaviour() -> None:
    view = Org().view()
    with pytest.raises(ServerMisbehaved, match="larger"):
        _pull(
            view,
            lambda r: Response(200, b"", CBOR_MEDIA_TYPE, oversized=True),
            bounds=Bounds(page_items=1),
        )


def test_a_run_stops_after_its_page_budget_and_resumes_from_verified_progress() -> None:
    org = Org()
    envelopes = sealed(org, 3)
    view = org.view()
    bounds = Bounds(page_items=1, max_pages=2)
    feed = lambda request: serve_feed(envelopes, request, server=org.server)  # noqa: E731
    held = LogPosition(ORG, org.server.verify_key)  # persisted between the runs
    first, events = _pull(view, feed, bounds=bounds, log=held)
    assert first.pages == 2 and not first.finished and first.cursor == encode_cursor(EPOCH, 2)
    assert isinstance(events[-1], RunBudgetSpent) and "2 feed pages" in events[-1].reason
    assert field_of(view, REPORT, "a").value == "0"
    second, _ = _pull(view, feed, cursor=first.cursor, bounds=bounds, log=held)
    assert second.finished and second.cursor == encode_cursor(EPOCH, 4) and second.pages == 2
    assert field_of(view, REPORT, "a").value == "2"


def test_a_run_stops_when_its_time_budget_is_spent() -> None:
    org = Org()
    envelopes = sealed(org, 3)
    view = org.view()
    now = [0.0]

    def server(request: Request) -> Response:
        now[0] += 40.0  # each page takes 40 s on a slow link
        return serve_feed(envelopes, request, server=org.server)

    result, events = _pull(
        view, server, bounds=Bounds(page_items=1, run_seconds=100.0), clock=lambda: now[0]
    )
    assert result.pages == 3 and not result.finished and result.cursor == encode_cursor(EPOCH, 3)
    assert of_type(events, RunBudgetSpent) == [events[-1]] and "time budget" in events[-1].reason


@pytest.mark.parametrize(
    "page",
    [
        [],  # not a map
        {"items": "x", "cursor": "c", "more": False},  # items not a list
        {
            "items": [{"server_seq": 1, "envelope": "text, not bytes", "flags": []}],
            "cursor": "c",
            "more": False,
        },
        {"items": [{"server_seq": 1, "envelope": b"x"}], "cursor": "c", "more": False},  # no flags
        {"items": [7], "more": False},
        {"items": [], "more": False},  # no cursor
        {"items": [], "cursor": 5, "more": False},
        {"items": [], "cursor": "", "more": False, "extra": 1},
    ],
)
def test_a_feed_page_of_the_wrong_shape_is_server_misbehaviour(page: object) -> None:
    """The coordinator pulls CBOR pages (PROTOCOL §9.1): envelopes must be byte strings."""
    view = Org().view()
    with pytest.raises(ServerMisbehaved):
        _pull(view, lambda request: Response.of_cbor(200, page))


def test_a_cbor_page_whose_envelope_is_base64_text_is_misbehaviour() -> None:
    # PROTOCOL §9.1: a page that is not a map of items with byte-string envelopes.
    view = Org().view()
    items = [{"server_seq": 1, "envelope": "AAAA", "flags": []}]
    page = {"items": items, "cursor": encode_cursor(EPOCH, 1), "more": False}
    with pytest.raises(ServerMisbehaved):
        _pull(view, lambda request: Response.of_cbor(200, page))


def test_a_feed_page_nested_too_deeply_is_misbehaviour() -> None:
    view = Org().view()
    deep: Any = []
    for _ in range(20):
        deep = [deep]
    page = {"items": [], "cursor": encode_cursor(EPOCH, 0), "more": False, "x": deep}
    with pytest.raises(ServerMisbehaved, match="does not decode"):
        _pull(view, lambda request: Response.of_cbor(200, page))
