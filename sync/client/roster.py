"""Roster updates at the start of every sync (PROTOCOL §15.4).

Rules:
* Ask for ``since = trusted − 1``: the server must serve the trusted version again
  (identical) and anything newer, verified with `verify_chain` from the trusted one.
  A substituted version or a broken chain rule is `ServerMisbehaved`; nothing the
  client trusts changes.
* A newest version older than the trusted one is a rollback (or a restored server):
  never adopted; `RosterRolledBack` is reported and the trusted roster stays.  What the
  server still serves must be a prefix of the verified chain, else it is a fork.
* Coordinators heal a restored server by re-posting the verified versions it lost,
  oldest first (each must extend the server's chain, so this is harmless whoever does it).
* Freshness (PROTOCOL §18.3): the roster answer carries the newest freshness statement;
  after the roster step it counts only if it verifies against the trusted version and is
  fresh by this client's clock (`RosterFresh`), else the client says `RosterStale` and goes
  on.  A coordinator signs and posts its own statement for the trusted version first.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from crypto import SigningKey, VerificationFailed
from sync.client.events import (
    RosterFresh,
    RosterReposted,
    RosterRolledBack,
    RosterStale,
    RosterVerified,
)
from sync.client.flow import Flow, Request, Response, ServerMisbehaved, decode, expect
from sync.freshness import DEFAULT_HORIZON, DEFAULT_LIFETIME, Freshness
from sync.messages import RosterVersions, b64encode
from sync.roster import RosterError, SignedRoster, verify_chain

__all__ = [
    "FreshnessSettings",
    "RosterCheck",
    "freshness_flow",
    "repair_roster_flow",
    "roster_flow",
]

_ROSTER_ANSWER_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class RosterCheck:
    """The roster to use, and how far back the server went if it rolled back."""

    roster: SignedRoster
    rolled_back_to: int | None = None
    freshness: bytes | None = None  # the statement served with the roster, not yet verified


@dataclass(frozen=True, slots=True)
class FreshnessSettings:
    """The held statement (the newest verified one), the horizon and lifetime, the clock."""

    held: bytes | None = None
    horizon: int = DEFAULT_HORIZON
    lifetime: int = DEFAULT_LIFETIME
    clock: Callable[[], float] = time.time


def _answer(response: Response | tuple[Response, ...] | None) -> RosterVersions:
    return decode(expect(response, 200), RosterVersions, what="roster")


def _versions(
    response: Response | tuple[Response, ...] | RosterVersions | None,
) -> list[SignedRoster]:
    answer = response if isinstance(response, RosterVersions) else _answer(response)
    try:
        return [SignedRoster.parse(v) for v in answer.versions]
    except (RosterError, ValueError) as exc:
        raise ServerMisbehaved(f"the served roster chain is not acceptable: {exc}") from exc


def _get(org_path: str, since: int) -> Request:
    return Request(
        "GET",
        f"{org_path}/roster",
        query={"since": str(since)},
        max_answer_bytes=_ROSTER_ANSWER_BYTES,
    )


def roster_flow(*, org_path: str, trusted: SignedRoster) -> Flow[RosterCheck]:
    """Fetch and verify the roster from the trusted version on; returns the roster to use.

    Yields `RosterVerified` (persist its ``fresh`` versions) or `RosterRolledBack`.

    Raises:
        ServerMisbehaved: a substituted version, a bad signature, a fork.
    """
    answer = _answer((yield _get(org_path, trusted.roster.version - 1)))
    versions = _versions(answer)
    served = max((v.roster.version for v in versions), default=0)
    if served < trusted.roster.version:
        # Ask for the whole chain to learn how far back the server went; what it still
        # serves must be the chain we verified (else it is a fork, not a restore).
        versions = _versions((yield _get(org_path, 0)))
        try:
            verify_chain(versions)
        except RosterError as exc:
            raise ServerMisbehaved(f"the served roster chain is not acceptable: {exc}") from exc
        if versions and versions[-1].roster.version < trusted.roster.version:
            served = versions[-1].roster.version
        if (
            trusted.roster.version - 1 == served
            and versions
            and trusted.roster.prev != versions[-1].hash
        ):
            raise ServerMisbehaved("the served roster chain forks from the verified one")
        yield RosterRolledBack(served, trusted.roster.version)
        return RosterCheck(trusted, served, answer.freshness)
    try:
        newest = verify_chain(versions, trusted=trusted)
    except RosterError as exc:
        raise ServerMisbehaved(f"the served roster chain is not acceptable: {exc}") from exc
    fresh = tuple(v for v in versions if v.roster.version > trusted.roster.version)
    yield RosterVerified(newest, fresh)
    return RosterCheck(newest, freshness=answer.freshness)


def repair_roster_flow(*, org_path: str, chain: Iterable[SignedRoster], served: int) -> Flow[int]:
    """Re-post the verified versions a restored server lost (coordinators); returns how many."""
    posted = 0
    for version in sorted(chain, key=lambda v: v.roster.version):
        if version.roster.version <= served:
            continue
        body = {"roster": b64encode(version.to_bytes())}
        expect((yield Request("POST", f"{org_path}/roster", body)), 200, 201)
        posted += 1
    if posted:
        yield RosterReposted(posted)
    return posted


def freshness_flow(
    check: RosterCheck,
    *,
    org_path: str,
    settings: FreshnessSettings,
    signing_key: SigningKey | None = None,
) -> Flow[bool]:
    """After the roster step: whether the trusted roster is fresh (PROTOCOL §18.3).

    With ``signing_key`` (coordinators) it first signs and posts a statement for the trusted
    version; accepted, that is its `RosterFresh`.  Otherwise the served and the held
    statements count only if they verify against the trusted version; the newest one,
    fresh by ``settings.clock``, gives `RosterFresh`, else `RosterStale`. Never raises for
    a stale or bad statement: being offline is normal, and the sync goes on."""
    roster, now = check.roster, settings.clock()
    if signing_key is not None:
        mine = Freshness.issue(roster, now=int(now), lifetime=settings.lifetime)
        document = mine.sign(signing_key).to_bytes()
        response = yield Request(
            "POST", f"{org_path}/roster/freshness", {"freshness": b64encode(document)}
        )
        if isinstance(response, Response) and response.status == 200:
            yield RosterFresh(mine.version, mine.issued_at, document)
            return True
    verified: list[tuple[int, bytes]] = []
    last: int | None = None
    for candidate in (check.freshness, settings.held):
        if not candidate:
            continue
        try:
            statement = Freshness.verify(candidate, roster)
        except VerificationFailed:
            if candidate is settings.held:  # verified when adopted, for an older version
                last = _issued_at(candidate, last)
            continue
        verified.append((statement.issued_at, candidate))
        last = max(last or 0, statement.issued_at)
    if verified:
        issued_at, document = max(verified)
        if Freshness.verify(document, roster).is_fresh(now, settings.horizon):
            yield RosterFresh(roster.roster.version, issued_at, document)
            return True
    yield RosterStale(last, settings.horizon)
    return False


def _issued_at(document: bytes, last: int | None) -> int | None:
    try:
        return max(last or 0, Freshness.peek(document)[0].issued_at)
    except VerificationFailed:
        return last
