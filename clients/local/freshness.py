"""Roster freshness in the reference CLI (PROTOCOL §18.3): settings, persistence, warnings.

The client core decides (`sync.client.freshness_flow`); this module only maps the profile
and the environment to `FreshnessSettings` and words the warnings `sync` and `status` show.

Environment (for operators and tests; both in whole seconds):
  SEALBOX_FRESHNESS_HORIZON   a device with no fresh statement younger than this says it is
                              stale (default 7 days);
  SEALBOX_FRESHNESS_LIFETIME  how long a coordinator's statements stay valid (default 14 days,
                              at most 31).
"""

from __future__ import annotations

import os
import time

from clients.local.profile import Profile
from crypto import VerificationFailed
from sync.client import FreshnessSettings
from sync.freshness import DEFAULT_HORIZON, DEFAULT_LIFETIME, MAX_LIFETIME, Freshness

__all__ = ["HELD_KEY", "horizon", "settings", "stale_text", "status_warnings"]

HELD_KEY = "roster_freshness"
"""The profile meta key of the held statement (the newest verified one, as signed)."""


def _seconds(name: str, default: int, *, cap: int | None = None) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        return default
    if value < 1:
        return default
    return min(value, cap) if cap is not None else value


def horizon() -> int:
    return _seconds("SEALBOX_FRESHNESS_HORIZON", DEFAULT_HORIZON)


def settings(profile: Profile) -> FreshnessSettings:
    held = profile.meta.get(HELD_KEY)
    return FreshnessSettings(
        held=bytes(held) if held else None,
        horizon=horizon(),
        lifetime=_seconds("SEALBOX_FRESHNESS_LIFETIME", DEFAULT_LIFETIME, cap=MAX_LIFETIME),
        clock=time.time,
    )


def _when(at: int | None) -> str:
    if at is None:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(at))


def stale_text(last_fresh_at: int | None, horizon_seconds: int) -> str:
    return (
        "roster: STALE: no coordinator has confirmed this device's roster within"
        f" {_span(horizon_seconds)} (last confirmed: {_when(last_fresh_at)}); a newer roster,"
        " e.g. a revocation, may be withheld from this device. Reports are still sealed and"
        " sent; sync again when you can reach the server"
    )


def _span(seconds: int) -> str:
    if seconds % 86400 == 0:
        days = seconds // 86400
        return f"{days} day" + ("s" if days != 1 else "")
    return f"{seconds} s"


def status_warnings(profile: Profile) -> list[str]:
    """What `status` says about freshness, from the held statement and the clock now."""
    held = profile.meta.get(HELD_KEY)
    statement = None
    if held:
        try:
            statement = Freshness.verify(bytes(held), profile.roster)
        except VerificationFailed:
            try:  # for an older version than the one now trusted
                statement = Freshness.peek(bytes(held))[0]
            except VerificationFailed:
                statement = None
    fresh = (
        statement is not None
        and statement.version == profile.roster.roster.version
        and statement.is_fresh(time.time(), horizon())
    )
    if fresh:
        return []
    return [stale_text(statement.issued_at if statement else None, horizon())]
