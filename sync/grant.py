"""Grants: the chain keys of past epochs, re-wrapped by a coordinator to another HPKE key
(PROTOCOL §19).

Theory of operation:
* A grant is a signed document (PROTOCOL §3, purpose ``"grant"``, tag
  ``sealbox/v1/sig/grant``) signed by a coordinator (the *granter*) over
  ``{v, s, o: org, n: roster version, g: grantee HPKE key id, t: granter's clock,
  w: [[key envelope id, device, c, m, wrap], ...]}``, entries sorted by key envelope id,
  unique, 1 to `MAX_GRANT_ENTRIES`.
* Each ``wrap`` is CK₀ of that epoch sealed with HPKE to the grantee's key with
  ``info = "sealbox/v1/hpke/grant" || 0x00 || o || granter id || g || u64be(n) ||
  key envelope id || m``: a wrap moved to another entry, grant, organisation, grantee or
  granter does not open, even under a signature the mover made itself.
* `open_grant` is pure: it checks the signature with the key the caller names, the
  organisation and the grantee, and opens every wrap (all or nothing). It does not accept
  any key: the caller hands each CK₀ to `crypto.accept_chain_key` with the signed key
  envelope it claims to be of, the one place a chain key is checked against ``m``
  (a grant cannot substitute a chain key, it can only repeat the committed one).
* `make_grant` takes any recipient HPKE public key: a coordinator's from the roster, or
  the organisation's recovery key.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from crypto import (
    ChainKey,
    Envelope,
    KemPrivateKey,
    KemPublicKey,
    Purpose,
    SignedDocument,
    SigningKey,
    VerificationFailed,
    VerifyKey,
    accept_chain_key,
    digest,
    sign_document,
    unwrap_chain_key,
    wrap_chain_key,
)
from crypto.suite import PROTOCOL_VERSION, SUITE_ID

__all__ = [
    "MAX_GRANT_BYTES",
    "MAX_GRANT_ENTRIES",
    "Grant",
    "GrantEntry",
    "GrantError",
    "grant_id",
    "make_grant",
    "make_grants",
    "open_grant",
    "peek_grant",
]

MAX_GRANT_ENTRIES = 256
"""Epochs per grant document; more are split into several grants (about 325 KB each)."""
MAX_GRANT_BYTES = 512 * 1024
"""The largest grant document a peer accepts (256 entries take about 325 KB)."""

_ID, _HASH, _WRAP = 16, 32, 1168
_KEYS = frozenset("vsongtw")


class GrantError(VerificationFailed):
    """A grant that is malformed, mis-signed, for another organisation or grantee, or whose
    wraps do not open. Carries the reason shown to coordinators (nothing secret)."""

    def __init__(self, reason: str) -> None:
        Exception.__init__(self, reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class GrantEntry:
    """One epoch in a grant: which key envelope, its (device, c) and commitment, the wrap."""

    key_envelope: bytes
    device: bytes
    seq: int
    commitment: bytes
    wrap: bytes


@dataclass(frozen=True, slots=True)
class Grant:
    """A parsed grant document (`peek_grant`: not verified; `open_grant`: verified)."""

    id: bytes
    document: bytes
    org_id: bytes
    granter: bytes
    grantee: bytes
    roster_version: int
    issued_at: int
    entries: tuple[GrantEntry, ...]

    def epochs(self) -> frozenset[bytes]:
        return frozenset(e.key_envelope for e in self.entries)


def grant_id(document: bytes) -> bytes:
    """``SHA-256("sealbox/v1/grant-id" || 0x00 || document)``: how peers name a grant."""
    return digest(Purpose.GRANT_ID, document)


def _info(org: bytes, granter: bytes, grantee: bytes, version: int, entry: GrantEntry) -> bytes:
    return b"".join(
        (
            Purpose.GRANT_WRAP.value,
            b"\x00",
            org,
            granter,
            grantee,
            struct.pack(">Q", version),
            entry.key_envelope,
            entry.commitment,
        )
    )


def _bytes(value: Any, length: int, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != length:
        raise GrantError(f"{what} must be {length} bytes")
    return value


def _int(value: Any, low: int, high: int, what: str) -> int:
    if type(value) is not int or not low <= value <= high:
        raise GrantError(f"{what} must be an integer in [{low}, {high}]")
    return value


def _parse_body(raw: Any) -> tuple[bytes, int, bytes, int, tuple[GrantEntry, ...]]:
    if not isinstance(raw, dict) or set(raw) != _KEYS:
        raise GrantError("a grant body has exactly the keys v, s, o, n, g, t, w")
    if type(raw["v"]) is not int or raw["v"] != PROTOCOL_VERSION:
        raise GrantError("unsupported protocol version")
    if type(raw["s"]) is not int or raw["s"] != SUITE_ID:
        raise GrantError("unsupported suite")
    org = _bytes(raw["o"], _ID, "o")
    version = _int(raw["n"], 1, 2**53, "n")
    grantee = _bytes(raw["g"], _ID, "g")
    issued_at = _int(raw["t"], 0, 2**63 - 1, "t")
    items = raw["w"]
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_GRANT_ENTRIES:
        raise GrantError(f"a grant holds 1 to {MAX_GRANT_ENTRIES} epochs")
    entries = []
    for item in items:
        if not isinstance(item, list) or len(item) != 5:
            raise GrantError("an entry is [key envelope id, device, c, m, wrap]")
        entries.append(
            GrantEntry(
                _bytes(item[0], _HASH, "key envelope id"),
                _bytes(item[1], _ID, "device"),
                _int(item[2], 1, 2**53, "c"),
                _bytes(item[3], _HASH, "m"),
                _bytes(item[4], _WRAP, "wrap"),
            )
        )
    ids = [e.key_envelope for e in entries]
    if any(a >= b for a, b in zip(ids, ids[1:], strict=False)):
        raise GrantError("entries must be sorted by key envelope id and unique")
    return org, version, grantee, issued_at, tuple(entries)


def peek_grant(document: bytes) -> Grant:
    """Parse a grant without checking its signature (the server's and the ledger's first
    step: which signer to verify with). Raises `GrantError`."""
    if not isinstance(document, bytes) or len(document) > MAX_GRANT_BYTES:
        raise GrantError(f"a grant is a byte string of at most {MAX_GRANT_BYTES} bytes")
    try:
        signed = SignedDocument.parse(document, Purpose.GRANT_SIGNATURE)
        raw = signed.unverified_body()
    except GrantError:
        raise
    except VerificationFailed:
        raise GrantError("not a signed grant document") from None
    org, version, grantee, issued_at, entries = _parse_body(raw)
    return Grant(
        grant_id(document), document, org, signed.signer, grantee, version, issued_at, entries
    )


def make_grant(
    *,
    org_id: bytes,
    roster_version: int,
    issued_at: int,
    epochs: Iterable[tuple[Envelope, ChainKey]],
    recipient: KemPublicKey,
    signing_key: SigningKey,
) -> Grant:
    """Grant ``recipient`` the chain keys of ``epochs`` (key envelopes of ``org_id`` and
    the CK₀ each opened to), signed by ``signing_key`` as a coordinator of
    ``roster_version``; ``issued_at`` is the granter's clock (shown, never compared).

    Raises:
        ValueError: no epoch, more than `MAX_GRANT_ENTRIES`, or not a key envelope of
            ``org_id``; `crypto.KeyCommitmentMismatch` if a key is not the committed one.
    """
    granter = signing_key.verify_key.key_id
    grantee = recipient.key_id
    entries = []
    for envelope, chain_key in sorted(epochs, key=lambda e: e[0].id):
        header = envelope.header
        if header.kind != "key" or header.org != org_id or header.commitment is None:
            raise ValueError("only key envelopes of this organisation can be granted")
        accept_chain_key(envelope, chain_key.raw)  # never grant a key the header disowns
        entry = GrantEntry(envelope.id, header.device, header.seq, header.commitment, b"")
        wrap = wrap_chain_key(
            chain_key, recipient, info=_info(org_id, granter, grantee, roster_version, entry)
        )
        entries.append([entry.key_envelope, entry.device, entry.seq, entry.commitment, wrap])
    if not 1 <= len(entries) <= MAX_GRANT_ENTRIES:
        raise ValueError(f"a grant holds 1 to {MAX_GRANT_ENTRIES} epochs")
    body = {
        "v": PROTOCOL_VERSION,
        "s": SUITE_ID,
        "o": org_id,
        "n": roster_version,
        "g": grantee,
        "t": issued_at,
        "w": entries,
    }
    return peek_grant(sign_document(Purpose.GRANT_SIGNATURE, body, signing_key).to_bytes())


def make_grants(
    *,
    org_id: bytes,
    roster_version: int,
    issued_at: int,
    epochs: Iterable[tuple[Envelope, ChainKey]],
    recipient: KemPublicKey,
    signing_key: SigningKey,
) -> list[Grant]:
    """`make_grant` over any number of epochs, split into grants of `MAX_GRANT_ENTRIES`."""
    ordered = sorted(epochs, key=lambda e: e[0].id)
    return [
        make_grant(
            org_id=org_id,
            roster_version=roster_version,
            issued_at=issued_at,
            epochs=ordered[i : i + MAX_GRANT_ENTRIES],
            recipient=recipient,
            signing_key=signing_key,
        )
        for i in range(0, len(ordered), MAX_GRANT_ENTRIES)
    ]


def open_grant(
    document: bytes, *, org_id: bytes, granter: VerifyKey, recipient: KemPrivateKey
) -> tuple[Grant, dict[bytes, bytes]]:
    """Verify a grant signed by ``granter`` for ``org_id`` and ``recipient`` and open every
    wrap: (the grant, {key envelope id: CK₀ bytes}). The keys are not yet trusted: each
    goes to `crypto.accept_chain_key` with its key envelope.

    Raises:
        GrantError: with the reason; nothing is returned from a grant that fails anywhere.
    """
    grant = peek_grant(document)
    if grant.granter != granter.key_id:
        raise GrantError("the grant is not signed by the key it names")
    try:
        SignedDocument.parse(document, Purpose.GRANT_SIGNATURE).verify(granter)
    except VerificationFailed:
        raise GrantError("the grant's signature does not verify") from None
    if grant.org_id != org_id:
        raise GrantError("the grant is for another organisation")
    if grant.grantee != recipient.public_key.key_id:
        raise GrantError("the grant is for another grantee")
    keys = {}
    for entry in grant.entries:
        info = _info(org_id, grant.granter, grant.grantee, grant.roster_version, entry)
        try:
            keys[entry.key_envelope] = unwrap_chain_key(entry.wrap, recipient, info=info)
        except VerificationFailed:
            raise GrantError(
                f"the wrap for key envelope {entry.key_envelope.hex()[:12]} does not open"
                " (moved from another epoch or grant)"
            ) from None
    return grant, keys
