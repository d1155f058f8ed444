"""An organisation's recovery key: one master secret, split k-of-n among trustees (SLIP-39).

Theory of operation (docs/PROTOCOL.md §20):
* The master secret is 32 random bytes.  Two keys are derived from it with HKDF-SHA256
  (no salt), each bound to its purpose and to the organisation:

      signing seed = HKDF(master, info = "sealbox/v1/recovery/signing" || 0x00 || org id)
      HPKE seed    = HKDF(master, info = "sealbox/v1/recovery/hpke"    || 0x00 || org id)

  the first an Ed25519 seed (the recovery key may sign a roster version, §5.2 R3), the
  second an X-Wing seed of suite 1's HPKE (every epoch is sealed to it too, §4.3 rule 6).
* The master secret is split with SLIP-39 (Trezor's reference implementation,
  `shamir-mnemonic`), one group, threshold k of n shares, no SLIP-39 passphrase: each
  share is 33 words.  Fewer than k shares say nothing about the secret (Shamir over
  GF(256)); SLIP-39 adds a checksum per share (a mistyped word is caught), an identifier
  per split (shares of two splits do not mix) and a digest of the secret (shares that do
  not belong together fail to combine).  This module never does Shamir arithmetic itself.
* `combine_shares` reads each share on its own first, so an error names the share
  (its position in the input) and the problem in words: `ShareError`.

Not protected here: a share on paper is as safe as the place it is kept; k trustees
together hold every power of the recovery key (docs/THREAT_MODEL.md §3.10).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import shamir_mnemonic
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from shamir_mnemonic.wordlist import WORD_INDEX_MAP

from crypto.keys import KemPrivateKey, SigningKey
from crypto.suite import Purpose

__all__ = [
    "MASTER_SECRET_LENGTH",
    "MAX_SHARES",
    "SHARE_WORDS",
    "RecoveryKey",
    "ShareError",
    "combine_shares",
    "split_master_secret",
]

MASTER_SECRET_LENGTH = 32
SHARE_WORDS = 33
"""Words in a SLIP-39 share of a 32-byte secret."""
MAX_SHARES = 16
"""SLIP-39 allows at most 16 members in a group."""


class ShareError(ValueError):
    """The shares given do not make a recovery key; the message says which and why."""


def _derive(master: bytes, purpose: Purpose, org_id: bytes) -> bytes:
    info = purpose.value + b"\x00" + org_id
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(master)


@dataclass(frozen=True, slots=True, repr=False)
class RecoveryKey:
    """The two keys of an organisation's recovery key, derived from its master secret."""

    signing_key: SigningKey
    kem_key: KemPrivateKey

    @classmethod
    def derive(cls, master: bytes, org_id: bytes) -> RecoveryKey:
        if not isinstance(master, bytes) or len(master) != MASTER_SECRET_LENGTH:
            raise TypeError("a recovery master secret is 32 bytes")
        if not isinstance(org_id, bytes) or len(org_id) != 16:
            raise TypeError("an organisation id is 16 bytes")
        return cls(
            SigningKey(_derive(master, Purpose.RECOVERY_SIGNING, org_id)),
            KemPrivateKey(_derive(master, Purpose.RECOVERY_HPKE, org_id)),
        )

    @staticmethod
    def new_master_secret() -> bytes:
        return secrets.token_bytes(MASTER_SECRET_LENGTH)

    def __repr__(self) -> str:
        return f"RecoveryKey(<{self.signing_key.verify_key.key_id.hex()}>)"


def split_master_secret(master: bytes, *, threshold: int, shares: int) -> list[str]:
    """``shares`` SLIP-39 mnemonics of ``master``, any ``threshold`` of which recover it."""
    if not isinstance(master, bytes) or len(master) != MASTER_SECRET_LENGTH:
        raise TypeError("a recovery master secret is 32 bytes")
    if not 2 <= threshold <= shares <= MAX_SHARES:
        raise ValueError(f"need 2 <= threshold <= shares <= {MAX_SHARES}")
    groups = shamir_mnemonic.generate_mnemonics(1, [(threshold, shares)], master)
    return list(groups[0])


def _words(text: str) -> str:
    return " ".join(text.lower().split())


def combine_shares(mnemonics: Sequence[str]) -> bytes:
    """The master secret from SLIP-39 shares. Raises `ShareError` naming the problem."""
    texts = [_words(m) for m in mnemonics if m.strip()]
    if not texts:
        raise ShareError("no share given")
    parsed: list[shamir_mnemonic.Share] = []
    for number, text in enumerate(texts, start=1):
        words = text.split()
        unknown = [i for i, w in enumerate(words, start=1) if w not in WORD_INDEX_MAP]
        if unknown:  # the word itself is not shown: it is part of a secret
            raise ShareError(f"share {number}: word {unknown[0]} is not in the SLIP-39 word list")
        if len(words) != SHARE_WORDS:
            raise ShareError(
                f"share {number} has {len(words)} words; a Sealbox share has {SHARE_WORDS}"
            )
        try:
            share = shamir_mnemonic.Share.from_mnemonic(text)
        except shamir_mnemonic.MnemonicError:
            raise ShareError(
                f"share {number} does not check: a word is mistyped, swapped or missing"
            ) from None
        parsed.append(share)
    first = parsed[0]
    seen: dict[int, int] = {}
    for number, share in enumerate(parsed, start=1):
        if (share.identifier, share.group_count) != (first.identifier, first.group_count) or (
            share.member_threshold != first.member_threshold
        ):
            raise ShareError(
                f"share {number} is from another split than share 1 (shares of different"
                " recovery keys, or of an earlier setup, do not mix)"
            )
        if share.index in seen:
            raise ShareError(f"share {number} is the same share as share {seen[share.index]}")
        seen[share.index] = number
    needed = first.member_threshold
    if len(parsed) < needed:
        raise ShareError(
            f"{len(parsed)} share(s) given, {needed} needed: fewer than {needed} restore nothing"
        )
    try:
        master: bytes = shamir_mnemonic.combine_mnemonics([s.mnemonic() for s in parsed[:needed]])
    except shamir_mnemonic.MnemonicError:
        raise ShareError(
            "the shares do not combine: one of them was altered, or they do not belong together"
        ) from None
    if len(master) != MASTER_SECRET_LENGTH:
        raise ShareError("these shares hold a secret that is not a Sealbox recovery key")
    return master
