"""Envelopes sealed to a roster the coordinator already knew superseded (PROTOCOL §18.4).

A coordinator records, for each roster version ``v`` it verified, ``known(v)``: the size of
the organisation's log at the first sync that held ``v`` (`first_known`).  An envelope
stored at server seq ``s`` that names roster version ``e`` is ``stale-roster`` when some
``v > e`` with ``s > known(v)`` no longer lists as active a coordinator active in ``e``: the
server stored it after this coordinator knew that a coordinator among its recipients was
removed.  Its content is exposed to the removed coordinator, and its device was behind on
the roster (offline, or the roster withheld from it).  The log makes ``s`` trustworthy: a
feed page is checked against the tree (§17.6), so an envelope cannot sit at or below a size
this coordinator held a checkpoint of unless it was there already.

Envelopes stored before ``known(v)`` are never flagged, so a device that sealed before the
removal reached the server is not; ``known(v)`` is taken at a sync *after* ``v`` was held,
so it can only be later than the truth, which flags less, never more.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from crypto import Header
from sync.client.events import StaleRosterSeen
from sync.roster import Roster

__all__ = ["Stored", "first_known", "stale_roster"]


@dataclass(frozen=True, slots=True)
class Stored:
    """A pulled envelope's place in the log and the header fields the rule reads."""

    server_seq: int
    envelope_id: bytes
    header: Header


def first_known(
    history: Mapping[int, Roster], known: Mapping[int, int], log_size: int
) -> dict[int, int]:
    """The versions of ``history`` with no ``known`` size yet, at ``log_size`` (persist them)."""
    return {v: log_size for v in history if v not in known}


def _removed(history: Mapping[int, Roster], older: int, newer: int) -> bool:
    """Whether version ``newer`` no longer lists as active a coordinator active in ``older``."""
    before = {m.device_id for m in history[older].active_coordinators()}
    after = {m.device_id for m in history[newer].active_coordinators()}
    return bool(before - after)


def stale_roster(
    stored: Iterable[Stored], history: Mapping[int, Roster], known: Mapping[int, int]
) -> list[StaleRosterSeen]:
    """The findings among ``stored``: for each, the first superseding version it is late for."""
    findings = []
    versions = sorted(v for v in known if v in history)
    for item in stored:
        sealed_to = item.header.roster_version
        if sealed_to not in history:
            continue  # a version this client never verified: another finding's business
        for v in versions:
            if v > sealed_to and item.server_seq > known[v] and _removed(history, sealed_to, v):
                findings.append(
                    StaleRosterSeen(
                        item.envelope_id, item.header.device, sealed_to, v, item.server_seq
                    )
                )
                break
    return findings
