"""The organisation roster: a hash chain of coordinator-signed versions.

Theory of operation (docs/PROTOCOL.md §5):
* A roster version lists every member device of an organisation: its id, its
  Ed25519 key, its role, for coordinators their HPKE key, and for revoked
  devices the last device sequence number that stays valid.  It also pins the
  server's receipt key.
* Version 1 (genesis) is signed by a coordinator it lists.  Version n+1 names
  the hash of version n and is signed by a coordinator who is active in
  version n, so the server, which holds no coordinator key, cannot add a key,
  drop a revocation or fork the chain without detection.
* The fingerprint of a version is its hash; an invite pins it, and a device
  checks that the chain it is served passes through the pinned version.
* Clients remember the newest version they have verified and refuse a roster
  older than that (rollback, docs/PROTOCOL.md §5.4).

Rules (each has a test that names it):
  R1 version numbers start at 1 and increase by exactly 1;
  R2 ``prev`` is all-zero for version 1 and the hash of the previous version otherwise;
  R3 the signer is an active coordinator of the previous version (of itself for genesis), or,
     after genesis, the previous version's recovery key (``rk``, PROTOCOL §20);
  R4 a revocation is never undone and its point never moves later;
  R5 at least one active coordinator remains, or the recovery key (which can admit one);
     the server receipt key never changes silently
     (a change needs a new version signed like any other);
  R6 member ids equal the key id of their signing key, and exactly the coordinators carry an
     HPKE key;
  R7 once a version carries a recovery key, a later version changes or drops it only when
     signed by that recovery key.
The recovery key's HPKE key is a recipient of every epoch (`Roster.recipients`, §4.3 rule 6).
A chain older than the newest version a client verified is a rollback.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from crypto import Purpose, SignedDocument, SigningKey, VerificationFailed, VerifyKey, digest
from crypto.keys import KemPublicKey
from crypto.suite import PROTOCOL_VERSION, SUITE_ID

__all__ = [
    "MAX_MEMBERS",
    "Member",
    "RecoveryPublicKey",
    "Role",
    "Roster",
    "RosterError",
    "SignedRoster",
    "format_fingerprint",
    "verify_chain",
]

MAX_MEMBERS = 10_000
ZERO_HASH = bytes(32)


class Role(StrEnum):
    COORDINATOR = "coordinator"
    FIELD = "field"


class RosterError(ValueError):
    """A roster version breaks a chain rule; ``rule`` names it (R1-R6)."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(f"{rule}: {message}")
        self.rule = rule


@dataclass(frozen=True, slots=True)
class Member:
    """One enrolled device. ``revoked_after`` is the last valid device sequence number."""

    device_id: bytes
    signing_key: VerifyKey
    role: Role
    kem_key: KemPublicKey | None = None
    revoked_after: int | None = None

    @property
    def active(self) -> bool:
        return self.revoked_after is None

    def accepts_seq(self, seq: int) -> bool:
        """Whether a revision at device sequence ``seq`` is within this member's valid range."""
        return self.revoked_after is None or seq <= self.revoked_after

    def _to_cbor(self) -> dict[str, Any]:
        out: dict[str, Any] = {"i": self.device_id, "k": self.signing_key.raw, "r": str(self.role)}
        if self.kem_key is not None:
            out["e"] = self.kem_key.raw
        if self.revoked_after is not None:
            out["x"] = self.revoked_after
        return out

    @classmethod
    def _from_cbor(cls, raw: Any) -> Member:
        if not isinstance(raw, dict) or not {"i", "k", "r"} <= set(raw) <= {
            "i",
            "k",
            "r",
            "e",
            "x",
        }:
            raise RosterError("format", "malformed member")
        try:
            signing_key = VerifyKey(raw["k"])
            role = Role(raw["r"])
            kem_key = KemPublicKey(raw["e"]) if "e" in raw else None
        except (TypeError, ValueError) as exc:
            raise RosterError("format", "malformed member key or role") from exc
        revoked = raw.get("x")
        if revoked is not None and (type(revoked) is not int or revoked < 0):
            raise RosterError("format", "malformed revocation point")
        if raw["i"] != signing_key.key_id:
            raise RosterError("R6", "member id is not the key id of its signing key")
        if (role is Role.COORDINATOR) != (kem_key is not None):
            raise RosterError("R6", "coordinators, and only they, carry an HPKE key")
        return cls(raw["i"], signing_key, role, kem_key, revoked)


@dataclass(frozen=True, slots=True)
class RecoveryPublicKey:
    """The public half of the organisation's recovery key (PROTOCOL §20): ``rk`` in a roster."""

    signing_key: VerifyKey
    kem_key: KemPublicKey

    @property
    def key_id(self) -> bytes:
        """Its id: the key id of its Ed25519 key (what signs a roster version, R3)."""
        return self.signing_key.key_id

    def _to_cbor(self) -> dict[str, Any]:
        return {"k": self.signing_key.raw, "e": self.kem_key.raw}

    @classmethod
    def _from_cbor(cls, raw: Any) -> RecoveryPublicKey:
        if not isinstance(raw, dict) or set(raw) != {"k", "e"}:
            raise RosterError("format", "malformed recovery key")
        try:
            return cls(VerifyKey(raw["k"]), KemPublicKey(raw["e"]))
        except (TypeError, ValueError) as exc:
            raise RosterError("format", "malformed recovery key") from exc


@dataclass(frozen=True, slots=True)
class Roster:
    """The content of one roster version (unsigned)."""

    org_id: bytes
    version: int
    prev: bytes
    server_key: VerifyKey
    members: tuple[Member, ...] = field(default=())
    recovery: RecoveryPublicKey | None = None

    def __post_init__(self) -> None:
        ids = [m.device_id for m in self.members]
        if ids != sorted(set(ids)):
            object.__setattr__(
                self, "members", tuple(sorted(self.members, key=lambda m: m.device_id))
            )
            if len(set(ids)) != len(ids):
                raise RosterError("format", "duplicate member")
        if len(self.members) > MAX_MEMBERS:
            raise RosterError("format", "too many members")

    # --- queries -----------------------------------------------------------------
    def member(self, device_id: bytes) -> Member | None:
        for m in self.members:
            if m.device_id == device_id:
                return m
        return None

    def active_coordinators(self) -> tuple[Member, ...]:
        return tuple(m for m in self.members if m.role is Role.COORDINATOR and m.active)

    def recipients(self) -> tuple[KemPublicKey, ...]:
        """The HPKE keys a device seals to under this version: the active coordinators' and
        the recovery key's, if the version carries one (PROTOCOL §4.3 rule 6)."""
        keys = tuple(m.kem_key for m in self.active_coordinators() if m.kem_key is not None)
        return keys if self.recovery is None else (*keys, self.recovery.kem_key)

    # --- derivations ---------------------------------------------------------------
    def with_member(self, member: Member) -> Roster:
        others = tuple(m for m in self.members if m.device_id != member.device_id)
        return replace(self, members=(*others, member))

    def revoke(self, device_id: bytes, *, after_seq: int) -> Roster:
        current = self.member(device_id)
        if current is None:
            raise KeyError("no such member")
        point = (
            after_seq if current.revoked_after is None else min(after_seq, current.revoked_after)
        )
        return self.with_member(replace(current, revoked_after=point))

    def next_version(self, signed_previous: SignedRoster) -> Roster:
        """A copy of this content that extends ``signed_previous`` (R1, R2)."""
        return replace(self, version=signed_previous.roster.version + 1, prev=signed_previous.hash)

    # --- encoding ----------------------------------------------------------------
    def to_cbor(self) -> dict[str, Any]:
        out = {
            "v": PROTOCOL_VERSION,
            "s": SUITE_ID,
            "o": self.org_id,
            "n": self.version,
            "h": self.prev,
            "sv": self.server_key.raw,
            "m": [m._to_cbor() for m in self.members],
        }
        if self.recovery is not None:
            out["rk"] = self.recovery._to_cbor()
        return out

    @classmethod
    def from_cbor(cls, raw: Any) -> Roster:
        required = {"v", "s", "o", "n", "h", "sv", "m"}
        if not isinstance(raw, dict) or not required <= set(raw) <= required | {"rk"}:
            raise RosterError("format", "malformed roster")
        if type(raw["v"]) is not int or type(raw["s"]) is not int:
            raise RosterError("format", "unsupported version or suite")
        if raw["v"] != PROTOCOL_VERSION or raw["s"] != SUITE_ID:
            raise RosterError("format", "unsupported version or suite")
        if not (isinstance(raw["o"], bytes) and len(raw["o"]) == 16):
            raise RosterError("format", "malformed organisation id")
        if type(raw["n"]) is not int or raw["n"] < 1:
            raise RosterError("R1", "version must be a positive integer")
        if not (isinstance(raw["h"], bytes) and len(raw["h"]) == 32):
            raise RosterError("format", "malformed prev hash")
        if not isinstance(raw["m"], list) or len(raw["m"]) > MAX_MEMBERS:
            raise RosterError("format", "malformed member list")
        try:
            server_key = VerifyKey(raw["sv"])
        except TypeError as exc:
            raise RosterError("format", "malformed server key") from exc
        members = tuple(Member._from_cbor(m) for m in raw["m"])
        ids = [m.device_id for m in members]
        if ids != sorted(set(ids)):
            raise RosterError("format", "members must be sorted by id and unique")
        recovery = RecoveryPublicKey._from_cbor(raw["rk"]) if "rk" in raw else None
        if recovery is not None and any(m.device_id == recovery.key_id for m in members):
            raise RosterError("format", "the recovery key is not a member")
        return cls(raw["o"], raw["n"], raw["h"], server_key, members, recovery)

    def sign(self, signing_key: SigningKey) -> SignedRoster:
        from crypto import sign_document

        document = sign_document(Purpose.ROSTER_SIGNATURE, self.to_cbor(), signing_key)
        return SignedRoster(roster=self, document=document)


@dataclass(frozen=True, slots=True)
class SignedRoster:
    """A roster version with its coordinator signature; ``hash`` is its fingerprint."""

    roster: Roster
    document: SignedDocument

    @property
    def hash(self) -> bytes:
        return digest(Purpose.ROSTER_FINGERPRINT, self.document.body)

    @property
    def signer(self) -> bytes:
        return self.document.signer

    def to_bytes(self) -> bytes:
        return self.document.to_bytes()

    @classmethod
    def parse(cls, data: bytes) -> SignedRoster:
        """Parse without checking the signature (see `verify_chain`). Raises RosterError."""
        try:
            document = SignedDocument.parse(data, Purpose.ROSTER_SIGNATURE)
            roster = Roster.from_cbor(document.unverified_body())
        except VerificationFailed as exc:
            raise RosterError("format", "not a signed roster") from exc
        return cls(roster=roster, document=document)


def _check_signature(candidate: SignedRoster, signers: Roster, *, genesis: bool) -> None:
    signer = signers.member(candidate.signer)
    recovery = signers.recovery
    if recovery is not None and not genesis and candidate.signer == recovery.key_id:
        key = recovery.signing_key
    elif signer is None or signer.role is not Role.COORDINATOR or not signer.active:
        raise RosterError(
            "R3", "signer is neither an active coordinator nor the recovery key of the previous"
            " version"
        )  # fmt: skip
    else:
        key = signer.signing_key
    try:
        candidate.document.verify(key)
    except VerificationFailed as exc:
        raise RosterError("R3", "bad roster signature") from exc


def check_successor(previous: SignedRoster | None, candidate: SignedRoster) -> None:
    """Raise `RosterError` unless ``candidate`` may follow ``previous`` (None: genesis)."""
    new = candidate.roster
    if previous is None:
        if new.version != 1:
            raise RosterError("R1", "the first version must be 1")
        if new.prev != ZERO_HASH:
            raise RosterError("R2", "genesis prev must be zero")
        _check_signature(candidate, new, genesis=True)
    else:
        old = previous.roster
        if new.org_id != old.org_id:
            raise RosterError("format", "organisation id changed")
        if new.version != old.version + 1:
            raise RosterError("R1", "version must increase by exactly 1")
        if new.prev != previous.hash:
            raise RosterError("R2", "prev does not match the previous version's hash")
        _check_signature(candidate, old, genesis=False)
        if (
            old.recovery is not None
            and new.recovery != old.recovery
            and candidate.signer != old.recovery.key_id
        ):
            raise RosterError("R7", "only the recovery key may change or remove the recovery key")
        for before in old.members:
            after = new.member(before.device_id)
            if before.revoked_after is None:
                continue
            if (
                after is None
                or after.revoked_after is None
                or after.revoked_after > before.revoked_after
            ):
                raise RosterError("R4", "a revocation was undone or moved later")
    if not new.active_coordinators() and new.recovery is None:
        raise RosterError("R5", "no active coordinator left, and no recovery key")


def verify_chain(
    versions: Sequence[SignedRoster],
    *,
    trusted: SignedRoster | None = None,
    pinned_fingerprint: bytes | None = None,
) -> SignedRoster:
    """Verify consecutive ``versions`` and return the newest.

    ``trusted`` is the newest version the caller already verified (the chain must
    extend it and may not be older: rollback).  Without it the chain must start
    at genesis.  ``pinned_fingerprint`` (from an invite) must be the hash of one
    version in the chain or of ``trusted``.
    """
    if not versions:
        if trusted is None:
            raise RosterError("R1", "empty roster chain")
        return trusted
    previous = trusted
    if trusted is not None and versions[-1].roster.version < trusted.roster.version:
        raise RosterError("rollback", "the server served a roster older than one already verified")
    if trusted is not None and versions[0].roster.version <= trusted.roster.version:
        # Already-known versions may be re-served; they must be identical.
        known = [v for v in versions if v.roster.version <= trusted.roster.version]
        if known[-1].roster.version == trusted.roster.version and known[-1].hash != trusted.hash:
            raise RosterError("R2", "the server served a different version than the one trusted")
        versions = [v for v in versions if v.roster.version > trusted.roster.version]
    for candidate in versions:
        check_successor(previous, candidate)
        previous = candidate
    assert previous is not None
    if pinned_fingerprint is not None:
        seen: Iterable[bytes] = [v.hash for v in versions] + ([trusted.hash] if trusted else [])
        if pinned_fingerprint not in seen:
            raise RosterError("pin", "the roster chain does not contain the pinned fingerprint")
    return previous


def format_fingerprint(fingerprint: bytes) -> str:
    """Human-comparable form: the first 20 bytes as ten groups of four hex digits."""
    text = fingerprint[:20].hex()
    return " ".join(text[i : i + 4] for i in range(0, len(text), 4))
