"""The recovery key in the roster, and the roster versions that set it up and use it.

Theory of operation (docs/PROTOCOL.md §20):
* Setup: a coordinator signs a version that carries the organisation's recovery public key
  (``rk``: its Ed25519 and HPKE keys, `sync.roster.RecoveryPublicKey`).  From that
  version on every device seals every new epoch to the recovery key too (§4.3 rule 6).
* The *recovery locator* printed on each trustee's sheet says where to restore: the
  server, the organisation, and the fingerprint of the setup version, which the restored
  device's chain must contain (as an invite pins its roster, §5.3):
  ``"sbr1:" || base64url(CBOR [server url, org id, roster fingerprint])``.  It is not
  secret; without k shares it opens nothing.
* Restore: with the master secret rebuilt from k shares, a new coordinator device signs,
  with the recovery key, the version that admits it and revokes the lost coordinators
  (R3 admits the recovery key as the signer).  Only a roster whose ``rk`` is the key the
  shares derive is extended (`RecoveryMismatch` otherwise).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, replace

from crypto import encoding
from crypto.recovery import RecoveryKey
from sync.roster import Member, RecoveryPublicKey, Role, Roster, SignedRoster

__all__ = [
    "LOCATOR_PREFIX",
    "RecoveryLocator",
    "RecoveryMismatch",
    "public_key",
    "restore_roster",
    "setup_roster",
]

LOCATOR_PREFIX = "sbr1:"
_MAX_LOCATOR = 4096


class RecoveryMismatch(ValueError):
    """The shares' recovery key is not the one the roster carries (or it carries none)."""


def public_key(recovery: RecoveryKey) -> RecoveryPublicKey:
    return RecoveryPublicKey(recovery.signing_key.verify_key, recovery.kem_key.public_key)


@dataclass(frozen=True, slots=True)
class RecoveryLocator:
    """Where a restore goes: server URL, organisation, the setup version's fingerprint."""

    server_url: str
    org_id: bytes
    roster_fingerprint: bytes

    def encode(self) -> str:
        raw = encoding.encode([self.server_url, self.org_id, self.roster_fingerprint])
        return LOCATOR_PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    @classmethod
    def decode(cls, text: str) -> RecoveryLocator:
        compact = "".join(text.split())
        if not compact.startswith(LOCATOR_PREFIX) or len(compact) > _MAX_LOCATOR:
            raise ValueError("not a recovery locator (it starts with sbr1:)")
        body = compact[len(LOCATOR_PREFIX) :]
        try:
            raw = encoding.decode(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except (ValueError, encoding.CanonicalError):
            raise ValueError("the recovery locator is damaged (a character is wrong)") from None
        if not (
            isinstance(raw, list)
            and len(raw) == 3
            and isinstance(raw[0], str)
            and isinstance(raw[1], bytes)
            and len(raw[1]) == 16
            and isinstance(raw[2], bytes)
            and len(raw[2]) == 32
        ):
            raise ValueError("the recovery locator is damaged (a character is wrong)")
        return cls(raw[0], raw[1], raw[2])


def setup_roster(trusted: SignedRoster, recovery: RecoveryPublicKey) -> Roster:
    """The next version: ``trusted`` carrying ``recovery`` (to be signed by a coordinator)."""
    return replace(trusted.roster, recovery=recovery).next_version(trusted)


def restore_roster(
    trusted: SignedRoster,
    *,
    recovery: RecoveryKey,
    newcomer: Member,
    revoke: Mapping[bytes, int],
) -> SignedRoster:
    """The version that admits ``newcomer`` as a coordinator and revokes each device of
    ``revoke`` after its given sequence number, signed by the recovery key.

    Raises:
        RecoveryMismatch: ``trusted`` carries no recovery key, or another one.
        KeyError: a device to revoke is not a member.
    """
    if trusted.roster.recovery != public_key(recovery):
        raise RecoveryMismatch(
            "these shares are not the recovery key of this organisation's roster"
            if trusted.roster.recovery is not None
            else "this organisation's roster carries no recovery key"
        )
    if newcomer.role is not Role.COORDINATOR or trusted.roster.member(newcomer.device_id):
        raise ValueError("the restored device must be a new coordinator")
    roster = trusted.roster.with_member(newcomer)
    for device_id, after_seq in sorted(revoke.items()):
        roster = roster.revoke(device_id, after_seq=after_seq)
    return roster.next_version(trusted).sign(recovery.signing_key)
