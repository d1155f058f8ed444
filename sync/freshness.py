"""Roster freshness statements: a coordinator's short-lived, signed "roster version v is current".

Theory of operation (docs/PROTOCOL.md §18; the model is TUF's timestamp role):
* A statement is a signed document (PROTOCOL §3, purpose ``"freshness"``, tag
  ``sealbox/v1/sig/freshness``) over the canonical CBOR body ``{o: org id, v: roster
  version, h: that version's fingerprint (§5.3), t: issued at, x: expires at}`` (Unix
  seconds, the coordinator's clock), signed by an active coordinator *of version v*.
* Coordinators sign one at each sync, after the roster step; the server keeps the newest
  and serves it with the roster.  A device that verified the roster chain to version v
  checks the statement against that version (`Freshness.verify`) and calls it fresh while
  ``now < x`` and ``-MAX_SKEW <= now - t < horizon`` (`Freshness.is_fresh`).
* What it buys: a server that withholds a newer roster version (a revocation) from a
  device must also withhold every newer statement, and the device says it is stale once
  the horizon passes.  It cannot make an old statement look new: ``t`` and ``x`` are
  signed, and a statement for an older version than the device trusts is no news.
* Clocks: the statement compares the coordinator's clock with the device's, an exception
  to PROTOCOL §1.4 that orders nothing and only decides a warning.  Either clock wrong in
  the safe direction (coordinator behind, device ahead) warns sooner; in the other
  direction the warning comes at most `MAX_SKEW` later, because a statement dated more
  than `MAX_SKEW` after the device's now is not fresh.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from crypto import Purpose, SignedDocument, SigningKey, VerificationFailed, sign_document
from sync.roster import Role, SignedRoster

__all__ = [
    "DEFAULT_HORIZON",
    "DEFAULT_LIFETIME",
    "MAX_LIFETIME",
    "MAX_SKEW",
    "Freshness",
]

DEFAULT_LIFETIME = 14 * 86400
"""How long after ``t`` a coordinator's statement expires, by default."""
MAX_LIFETIME = 31 * 86400
"""The longest lifetime (``x - t``) a reader accepts: a statement is short-lived by design."""
DEFAULT_HORIZON = 7 * 86400
"""A device with no fresh statement younger than this says it is stale (a client setting)."""
MAX_SKEW = 3600
"""A statement dated further than this after the device's clock is not fresh (clock skew)."""

_KEYS = {"o", "v", "h", "t", "x"}


@dataclass(frozen=True, slots=True)
class Freshness:
    """ "Roster version ``version`` (fingerprint ``fingerprint``) is current", from ``issued_at``
    until ``expires_at``."""

    org_id: bytes
    version: int
    fingerprint: bytes
    issued_at: int
    expires_at: int

    def __post_init__(self) -> None:
        if not _valid(self.to_cbor()):
            raise ValueError(
                "a freshness statement needs a 16-byte org id, a version >= 1, a 32-byte "
                "fingerprint, a time >= 0 and an expiry after it, at most 31 days later"
            )

    def to_cbor(self) -> dict[str, Any]:
        return {
            "o": self.org_id,
            "v": self.version,
            "h": self.fingerprint,
            "t": self.issued_at,
            "x": self.expires_at,
        }

    @classmethod
    def from_cbor(cls, raw: Any) -> Freshness:
        """The statement of a decoded body. Raises `VerificationFailed` on any other shape."""
        if not _valid(raw):
            raise VerificationFailed()
        return cls(raw["o"], raw["v"], raw["h"], raw["t"], raw["x"])

    @classmethod
    def issue(
        cls, roster: SignedRoster, *, now: int, lifetime: int = DEFAULT_LIFETIME
    ) -> Freshness:
        """The statement that ``roster`` is current, issued at ``now``."""
        r = roster.roster
        return cls(r.org_id, r.version, roster.hash, now, now + lifetime)

    def sign(self, coordinator: SigningKey) -> SignedDocument:
        return sign_document(Purpose.FRESHNESS_SIGNATURE, self.to_cbor(), coordinator)

    @staticmethod
    def peek(data: bytes) -> tuple[Freshness, bytes]:
        """The statement and its signer *without* checking the signature: only to find which
        roster version to verify it against. Raises `VerificationFailed` if malformed."""
        document = SignedDocument.parse(data, Purpose.FRESHNESS_SIGNATURE)
        return Freshness.from_cbor(document.unverified_body()), document.signer

    @classmethod
    def verify(cls, data: bytes, roster: SignedRoster) -> Freshness:
        """Check a statement against the verified roster version it names: signed by an active
        coordinator of that version, for its organisation, number and fingerprint.

        Raises:
            VerificationFailed: if any of these does not hold, or the body is malformed.
        """
        document = SignedDocument.parse(data, Purpose.FRESHNESS_SIGNATURE)
        signer = roster.roster.member(document.signer)
        if signer is None or signer.role is not Role.COORDINATOR or not signer.active:
            raise VerificationFailed()
        statement = cls.from_cbor(document.verify(signer.signing_key))
        r = roster.roster
        if (statement.org_id, statement.version, statement.fingerprint) != (
            r.org_id,
            r.version,
            roster.hash,
        ):
            raise VerificationFailed()
        return statement

    def is_fresh(self, now: float, horizon: int = DEFAULT_HORIZON) -> bool:
        """Fresh at ``now`` (the device's clock): not expired, younger than ``horizon``, and not
        dated more than `MAX_SKEW` in the device's future."""
        age = now - self.issued_at
        return now < self.expires_at and -MAX_SKEW <= age < horizon


def _valid(raw: Any) -> bool:
    return (
        isinstance(raw, dict)
        and set(raw) == _KEYS
        and isinstance(raw["o"], bytes)
        and len(raw["o"]) == 16
        and type(raw["v"]) is int
        and raw["v"] >= 1
        and isinstance(raw["h"], bytes)
        and len(raw["h"]) == 32
        and type(raw["t"]) is int
        and type(raw["x"]) is int
        and 0 <= raw["t"] < raw["x"] <= raw["t"] + MAX_LIFETIME
    )
