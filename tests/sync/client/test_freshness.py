"""Roster freshness in the client core (PROTOCOL §18.3): a device says it is stale when no
fresh coordinator statement for its trusted roster arrives, and still syncs; coordinators
post their own; a withheld revocation shows once the horizon passes."""

from __future__ import annotations

from dataclasses import replace

from crypto import SigningKey
from sync.client import (
    BatchAcknowledged,
    FreshnessSettings,
    Request,
    Response,
    RosterCheck,
    RosterFresh,
    RosterStale,
    freshness_flow,
    sync_flow,
)
from sync.freshness import DEFAULT_HORIZON, MAX_SKEW, Freshness
from sync.roster import Role

from .support import PATH, Org, of_type, play, problem
from .test_session import OrgServer, _edits, _inputs

T = 1_780_000_000
DAY = 86400


def _statement(org: Org, version: int | None = None, *, at: int = T, key=None) -> bytes:
    roster = org.chain[(version or org.roster.roster.version) - 1]
    return Freshness.issue(roster, now=at).sign(key or org.coord).to_bytes()


def _check(org: Org, served: bytes | None, trusted_version: int | None = None) -> RosterCheck:
    roster = org.chain[(trusted_version or org.roster.roster.version) - 1]
    return RosterCheck(roster, freshness=served)


def _nothing(request: Request) -> Response:
    raise AssertionError(f"a field device posts nothing: {request}")


def _run(check: RosterCheck, now: float, held: bytes | None = None, **kw):
    settings = FreshnessSettings(held=held, clock=lambda: now, **kw)
    return play(freshness_flow(check, org_path=PATH, settings=settings), _nothing)


def test_a_fresh_statement_for_the_trusted_roster_is_fresh_and_held() -> None:
    """PROTOCOL §18.3 items 1-2: verified against the trusted version, fresh by the clock."""
    org = Org()
    document = _statement(org)
    fresh, events = _run(_check(org, document), T + DAY)
    assert fresh and events == [RosterFresh(2, T, document)]


def test_no_statement_is_stale_with_no_last_time() -> None:
    org = Org()
    fresh, events = _run(_check(org, None), T)
    assert not fresh and events == [RosterStale(None, DEFAULT_HORIZON)]


def test_an_old_statement_is_stale_past_the_horizon_and_names_its_time() -> None:
    """PROTOCOL §18.3 item 2: fresh while now - t < horizon; the horizon is a setting."""
    org = Org()
    document = _statement(org)
    assert _run(_check(org, document), T + DEFAULT_HORIZON - 1)[0]
    fresh, events = _run(_check(org, document), T + DEFAULT_HORIZON)
    assert not fresh and events == [RosterStale(T, DEFAULT_HORIZON)]
    fresh, events = _run(_check(org, document), T + 2 * DAY, horizon=DAY)
    assert not fresh and events == [RosterStale(T, DAY)]


def test_a_statement_from_the_devices_future_is_not_fresh() -> None:
    """PROTOCOL §18.3 "Clocks": dated over an hour after the device's now."""
    org = Org()
    document = _statement(org)
    assert _run(_check(org, document), T - MAX_SKEW)[0]
    assert not _run(_check(org, document), T - MAX_SKEW - 1)[0]


def test_the_held_statement_counts_while_fresh_when_the_server_serves_an_older_one() -> None:
    org = Org()
    held, older = _statement(org, at=T), _statement(org, at=T - DAY)
    fresh, events = _run(_check(org, older), T + DAY, held=held)
    assert fresh and events == [RosterFresh(2, T, held)]


def test_statements_for_another_version_or_by_a_non_coordinator_are_no_news() -> None:
    """PROTOCOL §18.3 item 1: only the trusted version's own statement counts; a bad one is
    ignored, never an error (the device goes on)."""
    org = Org()
    old_version = _statement(org, 1)  # the device trusts version 2
    by_field = _statement(org, key=org.field)
    by_stranger = _statement(org, key=SigningKey.generate())
    for served in (old_version, by_field, by_stranger, b"garbage"):
        fresh, events = _run(_check(org, served), T + 60)
        assert not fresh and of_type(events, RosterStale), served
    org.extend(lambda r: r)  # version 3 exists, but the device verified only version 2
    fresh, events = _run(_check(org, _statement(org, 3), trusted_version=2), T + 60)
    assert not fresh and events == [RosterStale(None, DEFAULT_HORIZON)]


def test_a_withheld_revocation_is_stale_past_the_horizon_and_the_device_still_pushes() -> None:
    """THREAT_MODEL §7.4: the server keeps serving version 2 and its last statement for it,
    hiding version 3 (a revocation); past the horizon the device says so and still syncs."""
    org = Org()
    server = OrgServer(org)
    server.freshness = _statement(org, 2, at=T)
    org.extend(lambda r: r)  # version 3, withheld: the server's chain stops at 2
    state = org.device()
    trusted = org.chain[1]
    _edits(org, state, org.field, 2)
    clock = FreshnessSettings(clock=lambda: T + DEFAULT_HORIZON + 1)
    report, events = play(sync_flow(_inputs(org, state, trusted=trusted, freshness=clock)), server)
    assert report.fresh is False and RosterStale(T, DEFAULT_HORIZON) in events
    assert of_type(events, BatchAcknowledged) and not state.outbox


def test_a_coordinator_posts_its_statement_and_devices_then_see_it_fresh() -> None:
    """PROTOCOL §18.3 item 4, §18.2: one coordinator sync makes the next device sync fresh."""
    org = Org()
    server = OrgServer(org)
    coordinator = replace(org.device(), device_id=org.coord.verify_key.key_id)
    settings = FreshnessSettings(clock=lambda: T)
    report, events = play(
        sync_flow(
            _inputs(org, coordinator, role=Role.COORDINATOR, view=org.view(), freshness=settings)
        ),
        server,
    )
    assert report.fresh and ("POST", "/roster/freshness") in server.steps()
    (mine,) = of_type(events, RosterFresh)
    assert mine.issued_at == T and Freshness.verify(mine.document, org.roster).version == 2
    report, events = play(
        sync_flow(_inputs(org, org.device(), freshness=replace(settings, clock=lambda: T + DAY))),
        server,
    )
    assert report.fresh and of_type(events, RosterFresh) == [mine]


def test_a_coordinator_whose_post_is_refused_falls_back_to_the_served_statement() -> None:
    org = Org()
    served = _statement(org, at=T, key=org.coord)

    def refuse(request: Request) -> Response:
        assert request.path == f"{PATH}/roster/freshness"
        return problem(409, "roster_conflict", "a newer roster version exists")

    settings = FreshnessSettings(clock=lambda: T + 60)
    flow = freshness_flow(
        _check(org, served), org_path=PATH, settings=settings, signing_key=org.coord
    )
    fresh, events = play(flow, refuse)
    assert fresh and events == [RosterFresh(2, T, served)]
