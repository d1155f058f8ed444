"""The recovery key: derivation, SLIP-39 shares, the roster's ``rk`` and rules R3, R5, R7
(PROTOCOL §5, §20), against the committed vectors and against an adversary who holds a
seized coordinator key, fewer than k shares, or the server."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from crypto import KemPrivateKey, SigningKey
from crypto.recovery import RecoveryKey, ShareError, combine_shares, split_master_secret
from sync.recovery import (
    RecoveryLocator,
    RecoveryMismatch,
    public_key,
    restore_roster,
    setup_roster,
)
from sync.roster import (
    Member,
    Role,
    Roster,
    RosterError,
    SignedRoster,
    check_successor,
    verify_chain,
)

VECTORS = json.loads(
    (Path(__file__).resolve().parent.parent / "vectors" / "recovery_v1.json").read_text()
)["vectors"]
ORG = bytes(range(16))
SERVER = SigningKey(bytes([9]) * 32)


def _vector(kind: str) -> dict:
    return next(v for v in VECTORS if v["type"] == kind)


def _coordinator(n: int) -> tuple[SigningKey, Member]:
    key, kem = SigningKey(bytes([n]) * 32), KemPrivateKey(bytes([n + 100]) * 32)
    return key, Member(key.verify_key.key_id, key.verify_key, Role.COORDINATOR, kem.public_key)


def _org() -> tuple[SigningKey, SignedRoster, SignedRoster, RecoveryKey]:
    founder, me = _coordinator(1)
    recovery = RecoveryKey.derive(bytes([7]) * 32, ORG)
    v1 = Roster(ORG, 1, bytes(32), SERVER.verify_key, (me,)).sign(founder)
    v2 = setup_roster(v1, public_key(recovery)).sign(founder)
    return founder, v1, v2, recovery


# --- vectors ---------------------------------------------------------------------------------


def test_derivation_vector_is_hkdf_of_the_master_secret_bound_to_the_organisation() -> None:
    """PROTOCOL §20.1: HKDF-SHA256, no salt, info = tag || 0x00 || org id, one per key."""
    v = _vector("derivation")
    master, org = bytes.fromhex(v["master_secret"]), bytes.fromhex(v["org"])

    def hkdf(tag: bytes) -> bytes:
        return HKDF(hashes.SHA256(), 32, None, tag + b"\x00" + org).derive(master)

    assert hkdf(b"sealbox/v1/recovery/signing").hex() == v["signing_seed"]
    assert hkdf(b"sealbox/v1/recovery/hpke").hex() == v["hpke_seed"]
    key = RecoveryKey.derive(master, org)
    assert key.signing_key.verify_key.raw.hex() == v["signing_public"]
    assert key.signing_key.verify_key.key_id.hex() == v["key_id"]
    assert key.kem_key.public_key.raw.hex() == v["hpke_public"]
    assert key.kem_key.public_key.key_id.hex() == v["hpke_key_id"]
    # Another organisation's key from the same master secret shares nothing with it.
    other = RecoveryKey.derive(master, bytes(16))
    assert other.signing_key.verify_key.raw.hex() != v["signing_public"]


def test_recorded_shares_combine_three_at_a_time_and_not_two() -> None:
    """PROTOCOL §20.2: any k of the n recorded SLIP-39 shares give the master secret."""
    v = _vector("shares")
    shares, master = v["shares"], bytes.fromhex(v["master_secret"])
    assert all(len(s.split()) == 33 for s in shares)
    for picked in ((0, 1, 2), (4, 2, 0), (1, 3, 4)):
        assert combine_shares([shares[i] for i in picked]) == master
    with pytest.raises(ShareError, match="2 share.s. given, 3 needed"):
        combine_shares(shares[:2])


def test_roster_vector_chain_sets_up_and_restores_with_the_recovery_key() -> None:
    """PROTOCOL §5.1, §5.2 R3: v2 carries ``rk`` (signed by the founder), v3 is signed by the
    recovery key, admits the newcomer and revokes the founder; every version re-encodes to
    the recorded bytes, and the recipients include the recovery key from v2 on (§4.3 rule 6)."""
    v = _vector("roster")
    chain = [SignedRoster.parse(bytes.fromhex(x["signed"])) for x in v["chain"]]
    newest = verify_chain(chain)
    derivation = _vector("derivation")
    assert chain[2].signer.hex() == derivation["key_id"]
    assert newest.roster.recovery is not None
    assert newest.roster.recovery.kem_key.raw.hex() == derivation["hpke_public"]
    for signed, recorded in zip(chain, v["chain"], strict=True):
        assert signed.hash.hex() == recorded["fingerprint"]
        assert signed.roster.to_cbor() == SignedRoster.parse(signed.to_bytes()).roster.to_cbor()
        assert sorted(k.key_id.hex() for k in signed.roster.recipients()) == recorded["recipients"]
    assert derivation["hpke_key_id"] not in v["chain"][0]["recipients"]
    assert derivation["hpke_key_id"] in v["chain"][1]["recipients"]
    founder = SigningKey(bytes.fromhex(v["inputs"]["founder_seed"])).verify_key.key_id
    revoked = newest.roster.member(founder)
    assert revoked is not None and revoked.revoked_after == v["inputs"]["revoked_after"]
    locator = RecoveryLocator.decode(v["locator"])
    assert locator.roster_fingerprint == chain[1].hash and locator.org_id == chain[0].roster.org_id
    # The deterministic parts are rebuilt byte for byte (Ed25519 is deterministic).
    key = RecoveryKey.derive(bytes.fromhex(derivation["master_secret"]), locator.org_id)
    assert setup_roster(chain[0], public_key(key)) == chain[1].roster


# --- rules --------------------------------------------------------------------------------------


def test_r3_the_recovery_key_signs_a_version_but_never_genesis() -> None:
    """PROTOCOL §5.2 R3: the recovery key of version n−1 may sign version n; not genesis."""
    founder, v1, v2, recovery = _org()
    _, newcomer = _coordinator(2)
    v3 = restore_roster(v2, recovery=recovery, newcomer=newcomer, revoke={})
    check_successor(v2, v3)
    # Before setup, the recovery key is nobody.
    early = v1.roster.with_member(newcomer).next_version(v1).sign(recovery.signing_key)
    with pytest.raises(RosterError) as caught:
        check_successor(v1, early)
    assert caught.value.rule == "R3"
    genesis = replace(v2.roster, version=1, prev=bytes(32)).sign(recovery.signing_key)
    with pytest.raises(RosterError) as caught:
        check_successor(None, genesis)
    assert caught.value.rule == "R3"
    # A signature by another key that claims the recovery key's id does not verify.
    forged = v3.roster.sign(SigningKey(bytes([42]) * 32))
    forged = SignedRoster(forged.roster, replace(forged.document, signer=v3.signer))
    with pytest.raises(RosterError, match="bad roster signature"):
        check_successor(v2, forged)


def test_r7_a_seized_coordinator_cannot_drop_or_swap_the_recovery_key() -> None:
    """PROTOCOL §5.2 R7: only the recovery key changes or removes ``rk``."""
    founder, _, v2, recovery = _org()
    dropped = replace(v2.roster, recovery=None).next_version(v2).sign(founder)
    swapped_key = public_key(RecoveryKey.derive(bytes([8]) * 32, ORG))
    swapped = replace(v2.roster, recovery=swapped_key).next_version(v2).sign(founder)
    for candidate in (dropped, swapped):
        with pytest.raises(RosterError) as caught:
            check_successor(v2, candidate)
        assert caught.value.rule == "R7"
    by_recovery = replace(v2.roster, recovery=swapped_key).next_version(v2)
    check_successor(v2, by_recovery.sign(recovery.signing_key))


def test_r5_the_recovery_key_keeps_an_organisation_whose_last_coordinator_left() -> None:
    """PROTOCOL §5.2 R5: no active coordinator is allowed only while a recovery key remains."""
    founder, v1, v2, recovery = _org()
    me = founder.verify_key.key_id
    alone = v2.roster.revoke(me, after_seq=0).next_version(v2).sign(founder)
    check_successor(v2, alone)
    assert [k.key_id for k in alone.roster.recipients()] == [recovery.kem_key.public_key.key_id]
    without = v1.roster.revoke(me, after_seq=0).next_version(v1).sign(founder)
    with pytest.raises(RosterError) as caught:
        check_successor(v1, without)
    assert caught.value.rule == "R5"
    # The trustees can still bring a coordinator back.
    _, newcomer = _coordinator(3)
    check_successor(alone, restore_roster(alone, recovery=recovery, newcomer=newcomer, revoke={}))


def test_malformed_recovery_keys_are_refused() -> None:
    """PROTOCOL §5.1: ``rk`` is exactly {k, e}; it is no member."""
    _, _, v2, recovery = _org()
    raw = v2.roster.to_cbor()
    rk = raw["rk"]
    for bad in ({"k": rk["k"]}, {**rk, "x": 1}, {"k": b"short", "e": rk["e"]}, [rk["k"]]):
        with pytest.raises(RosterError, match="malformed recovery key"):
            Roster.from_cbor({**raw, "rk": bad})
    clash = Member(
        recovery.signing_key.verify_key.key_id,
        recovery.signing_key.verify_key,
        Role.FIELD,
    )
    with pytest.raises(RosterError, match="not a member"):
        members = sorted([*raw["m"], clash._to_cbor()], key=lambda m: m["i"])
        Roster.from_cbor({**raw, "m": members})


def test_restore_only_extends_a_roster_that_carries_the_shares_key() -> None:
    """PROTOCOL §20.4: shares of another recovery key, or a roster without one, restore nothing."""
    _, v1, v2, _ = _org()
    _, newcomer = _coordinator(4)
    stranger = RecoveryKey.derive(bytes([5]) * 32, ORG)
    with pytest.raises(RecoveryMismatch, match="not the recovery key"):
        restore_roster(v2, recovery=stranger, newcomer=newcomer, revoke={})
    with pytest.raises(RecoveryMismatch, match="carries no recovery key"):
        restore_roster(v1, recovery=stranger, newcomer=newcomer, revoke={})


# --- shares ---------------------------------------------------------------------------------


def test_share_errors_name_the_share_and_the_problem() -> None:
    """PROTOCOL §20.2: a wrong, mistyped, repeated or mixed share is a clear error."""
    master = RecoveryKey.new_master_secret()
    shares = split_master_secret(master, threshold=3, shares=5)
    again = split_master_secret(master, threshold=3, shares=5)  # the same secret, split anew
    words = shares[1].split()
    cases = [
        ([shares[0], " ".join(words[:-1]), shares[2]], "share 2 has 32 words"),
        ([shares[0], shares[1], again[2]], "share 3 is from another split"),
        ([shares[0], shares[0], shares[2]], "share 2 is the same share as share 1"),
        ([shares[0], " ".join(["academic", *words[1:]]), shares[2]], "share 2 does not check"),
        ([], "no share given"),
    ]
    for given, message in cases:
        with pytest.raises(ShareError, match=message):
            combine_shares(given)
    # Case, spacing and line breaks do not matter; the words do.
    assert combine_shares(["  " + s.upper().replace(" ", "\n  ") for s in shares[2:]]) == master


def test_split_refuses_thresholds_slip39_cannot_hold() -> None:
    master = RecoveryKey.new_master_secret()
    for threshold, count in ((1, 5), (4, 3), (3, 17)):
        with pytest.raises(ValueError):
            split_master_secret(master, threshold=threshold, shares=count)


def test_a_damaged_locator_is_refused() -> None:
    locator = RecoveryLocator("https://x.example", ORG, bytes(32)).encode()
    assert RecoveryLocator.decode(locator[:20] + "\n " + locator[20:]).org_id == ORG
    for bad in ("sbx1:" + locator[5:], locator[:-3], locator[:12] + "!" + locator[13:]):
        with pytest.raises(ValueError):
            RecoveryLocator.decode(bad)
