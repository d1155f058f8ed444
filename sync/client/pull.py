"""Pull the changes feed into a `CoordinatorView`, page by page (PROTOCOL §9, §15.5).

Rules (each page is validated whole before anything of it is used or persisted):
* The page is a `ChangesPage`, decoded within the client's `Bounds`, with at most
  the number of items asked for.
* Its cursor decodes (§9.2) to the server epoch of the cursor it answers (a page
  from another epoch is not a restore, which answers 409: it is misbehaviour) and to
  a sequence number ``last`` at or after the one asked from, ``after``.
* Server sequence numbers are gapless per organisation (§7.7), so the items are
  exactly the numbers ``after + 1 .. last``, ascending, each once: a page that drops,
  repeats or reorders items is caught (§9.1).  Withholding the *newest* envelopes,
  past the last cursor, is not detectable this way (THREAT_MODEL §7.4).
* An answer over `Bounds.max_answer_bytes` is not read further; the page size is
  halved and asked again (large attachments' envelopes), down to one item.
* A page that does not advance while claiming ``more`` is a stuck feed; the run also
  ends after `Bounds.max_pages` pages or `Bounds.run_seconds`, with `RunBudgetSpent`,
  and the next run resumes from the last validated page.
* Each page also extends the pulled log and must be a prefix of the checkpoint it
  carries (`sync.client.log.check_page`, §17.6): withholding the newest envelopes is then
  seen by whoever compares checkpoints, and a forked log by the coordinator itself.
* A 409 means the server went back in time: said loudly, the feed restarts from the
  beginning once per run, nothing local is deleted (§15.6).
"""

from __future__ import annotations

from collections.abc import Callable

from crypto import MalformedEnvelope, parse_envelope
from sync.client.events import (
    CarriedSeenInFeed,
    ChangesPulled,
    RunBudgetSpent,
    ServerWentBackInTime,
)
from sync.client.flow import DEFAULT_BOUNDS, Bounds, Flow, Request, ServerMisbehaved, decode, expect
from sync.client.log import LogPosition, check_page
from sync.client.staleness import Stored
from sync.client.view import CoordinatorView
from sync.cursor import CursorError, decode_cursor
from sync.merkle import Frontier
from sync.messages import CBOR_MEDIA_TYPE, ChangesPage

__all__ = ["PullResult", "cursor_position", "pull_flow", "validate_page"]


class PullResult:
    __slots__ = ("cursor", "pages", "pulled", "rewound", "finished", "stored")

    def __init__(self) -> None:
        self.cursor: str | None = None
        self.pages = 0
        self.pulled = 0
        self.rewound = False
        self.finished = False
        # The fresh envelopes' places in the log, for `witness_flow` and `stale_roster`.
        self.stored: list[Stored] = []


def cursor_position(cursor: str | None) -> tuple[bytes | None, int]:
    """(epoch, seq) of a cursor this client adopted earlier (None, 0 for the start)."""
    if not cursor:
        return None, 0
    try:
        decoded = decode_cursor(cursor)
    except CursorError:
        return None, 0  # not ours to judge: the server will say cursor_invalid
    return decoded if decoded is not None else (None, 0)


def validate_page(
    page: ChangesPage, *, after_cursor: str | None, asked: int, bounds: Bounds
) -> int:
    """Check one decoded page against the cursor it answers; its last sequence number."""
    if len(page.cursor) > bounds.max_cursor_length:
        raise ServerMisbehaved("feed: the page's cursor is longer than any server issues")
    try:
        decoded = decode_cursor(page.cursor)
    except CursorError:
        raise ServerMisbehaved("feed: the page's cursor does not decode") from None
    if decoded is None:
        raise ServerMisbehaved("feed: the page's cursor is empty")
    epoch, last = decoded
    asked_epoch, after = cursor_position(after_cursor)
    if asked_epoch is not None and epoch != asked_epoch:
        raise ServerMisbehaved("feed: the page's cursor is from another server epoch")
    if len(page.items) > asked:
        raise ServerMisbehaved(f"feed: {len(page.items)} items where at most {asked} were asked")
    if last < after:
        raise ServerMisbehaved("feed: the page's cursor goes back")
    if last - after != len(page.items) or any(
        item.server_seq != after + 1 + i for i, item in enumerate(page.items)
    ):
        raise ServerMisbehaved(
            f"feed: the page covers server seqs {after + 1}..{last} but does not hold"
            " each of them once, in order (items dropped, repeated or reordered)"
        )
    if last == after and page.more:
        raise ServerMisbehaved("feed: the page does not advance but claims more")
    return last


def pull_flow(
    view: CoordinatorView,
    *,
    org_path: str,
    cursor: str | None,
    log: LogPosition,
    bounds: Bounds = DEFAULT_BOUNDS,
    clock: Callable[[], float],
    carried: frozenset[bytes] = frozenset(),
) -> Flow[PullResult]:
    """Pull the feed into ``view``; one `ChangesPulled` per validated page (persist it).

    ``log.frontier`` must be the pulled tree at ``cursor``; when it is not (a store from
    before the log, or a lost frontier), the feed is pulled again from the start."""
    result = PullResult()
    if log.frontier.size != cursor_position(cursor)[1]:
        cursor, log.frontier = None, Frontier.empty()
    result.cursor = cursor
    started = clock()
    asked = bounds.page_items
    while True:
        if result.pages >= bounds.max_pages:
            yield RunBudgetSpent(f"{result.pages} feed pages in one run (the cap)")
            return result
        if clock() - started > bounds.run_seconds:
            yield RunBudgetSpent(f"the run's time budget ({bounds.run_seconds:.0f} s) is spent")
            return result
        query = {"limit": str(asked), **log.query()}
        if result.cursor:
            query["cursor"] = result.cursor
        response = yield Request(
            "GET",
            f"{org_path}/changes",
            query=query,
            accept=CBOR_MEDIA_TYPE,
            max_answer_bytes=bounds.max_answer_bytes,
        )
        if isinstance(response, tuple) or response is None:
            raise TypeError("the driver must send a Response back for a Request")
        if response.oversized and asked > 1:
            asked //= 2  # large envelopes: ask for fewer per page, never read more
            continue
        if response.status == 409:
            if result.rewound:
                raise ServerMisbehaved("feed: the server refused the start of its own feed")
            result.rewound, result.cursor, log.frontier = True, None, Frontier.empty()
            yield ServerWentBackInTime()
            continue
        page = decode(expect(response, 200), ChangesPage, what="feed", max_depth=bounds.max_depth)
        last = validate_page(page, after_cursor=result.cursor, asked=asked, bounds=bounds)
        try:  # once per item: the log's leaves, the witnesses and the rosters need them
            envelopes = [parse_envelope(item.envelope) for item in page.items]
        except MalformedEnvelope:
            raise ServerMisbehaved(
                "feed: an item is not an envelope the server could store"
            ) from None
        after = cursor_position(result.cursor)[1]
        ids = [e.id for e in envelopes]
        frontier = yield from check_page(log, page, ids, after=after, last=last)
        fresh, seen = [], []
        for item, envelope in zip(page.items, envelopes, strict=True):
            if view.ingest(envelope):  # parsed once, above
                fresh.append(item.envelope)
            elif envelope.id in carried:
                seen.append(envelope.id)
            else:
                continue
            result.stored.append(Stored(item.server_seq, envelope.id, envelope.header))
        result.cursor, result.pages = page.cursor, result.pages + 1
        result.pulled += len(fresh)
        yield ChangesPulled(
            tuple(fresh), page.cursor, last, page.more, frontier.to_bytes(), tuple(ids)
        )
        if seen:
            yield CarriedSeenInFeed(tuple(seen))
        if not page.more:
            result.finished = True
            return result
