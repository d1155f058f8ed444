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
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sync.client.events import RosterReposted, RosterRolledBack, RosterVerified
from sync.client.flow import Flow, Request, Response, ServerMisbehaved, decode, expect
from sync.messages import RosterVersions, b64encode
from sync.roster import RosterError, SignedRoster, verify_chain

__all__ = ["RosterCheck", "repair_roster_flow", "roster_flow"]

_ROSTER_ANSWER_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class RosterCheck:
    """The roster to use, and how far back the server went if it rolled back."""

    roster: SignedRoster
    rolled_back_to: int | None = None


def _versions(response: Response | tuple[Response, ...] | None) -> list[SignedRoster]:
    answer = decode(expect(response, 200), RosterVersions, what="roster")
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
    versions = _versions((yield _get(org_path, trusted.roster.version - 1)))
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
        return RosterCheck(trusted, served)
    try:
        newest = verify_chain(versions, trusted=trusted)
    except RosterError as exc:
        raise ServerMisbehaved(f"the served roster chain is not acceptable: {exc}") from exc
    fresh = tuple(v for v in versions if v.roster.version > trusted.roster.version)
    yield RosterVerified(newest, fresh)
    return RosterCheck(newest)


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
