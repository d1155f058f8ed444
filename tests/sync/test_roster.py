"""The roster chain: format, rules R1-R6, fingerprint pinning and rollback (PROTOCOL §5).

Each rule has tests named after it.  The adversary here is the server: it holds no
coordinator key, so everything it can do is serve, withhold, reorder, splice or alter bytes.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crypto import KemPrivateKey, Purpose, SigningKey, sign_document
from crypto.signed import SignedDocument
from sync.roster import (
    Member,
    Role,
    Roster,
    RosterError,
    SignedRoster,
    check_successor,
    format_fingerprint,
    verify_chain,
)

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
ORG = bytes(range(16))
ZERO = bytes(32)
SERVER = SigningKey(bytes([9]) * 32)


def coordinator_member(key: SigningKey, kem: KemPrivateKey) -> Member:
    return Member(key.verify_key.key_id, key.verify_key, Role.COORDINATOR, kem.public_key)


def field_member(key: SigningKey) -> Member:
    return Member(key.verify_key.key_id, key.verify_key, Role.FIELD)


class Org:
    """A small organisation: two coordinators and two field devices, three roster versions."""

    def __init__(self) -> None:
        self.alice = SigningKey(bytes([1]) * 32)
        self.alice_kem = KemPrivateKey(bytes([2]) * 32)
        self.bob = SigningKey(bytes([3]) * 32)
        self.bob_kem = KemPrivateKey(bytes([4]) * 32)
        self.phone = SigningKey(bytes([5]) * 32)
        self.laptop = SigningKey(bytes([6]) * 32)
        genesis = Roster(
            ORG, 1, ZERO, SERVER.verify_key, (coordinator_member(self.alice, self.alice_kem),)
        )
        self.v1 = genesis.sign(self.alice)
        self.v2 = (
            self.v1.roster.with_member(field_member(self.phone))
            .with_member(coordinator_member(self.bob, self.bob_kem))
            .next_version(self.v1)
            .sign(self.alice)
        )
        self.v3 = (
            self.v2.roster.with_member(field_member(self.laptop))
            .next_version(self.v2)
            .sign(self.bob)
        )

    @property
    def chain(self) -> list[SignedRoster]:
        return [self.v1, self.v2, self.v3]


@pytest.fixture(scope="module")
def org() -> Org:
    return Org()


def reparse(signed: SignedRoster) -> SignedRoster:
    return SignedRoster.parse(signed.to_bytes())


def raw_signed(body: dict[str, Any], signer: SigningKey) -> bytes:
    """A roster document signed over an arbitrary body (to craft what Roster refuses to build)."""
    return sign_document(Purpose.ROSTER_SIGNATURE, body, signer).to_bytes()


# --- vectors -------------------------------------------------------------------------------


def test_roster_vectors_parse_verify_and_reproduce() -> None:
    """PROTOCOL §5.1, §5.3: the committed chain parses, verifies, and rebuilds byte for byte."""
    document = json.loads((VECTORS / "roster_v1.json").read_text(encoding="utf-8"))
    (vector,) = document["vectors"]
    inputs = vector["inputs"]
    versions = [SignedRoster.parse(bytes.fromhex(v["signed"])) for v in vector["chain"]]
    for parsed, recorded in zip(versions, vector["chain"], strict=True):
        assert parsed.roster.version == recorded["version"]
        assert parsed.to_bytes().hex() == recorded["signed"]
        assert parsed.document.body.hex() == recorded["body"]
        assert parsed.hash.hex() == recorded["fingerprint"]
        assert format_fingerprint(parsed.hash) == recorded["fingerprint_text"]
        # Ed25519 is deterministic: re-signing the parsed content reproduces the bytes.
        signer = SigningKey(bytes.fromhex(recorded["signer_seed"]))
        assert parsed.roster.sign(signer).to_bytes().hex() == recorded["signed"]
    newest = verify_chain(versions, pinned_fingerprint=versions[0].hash)
    assert newest.roster.version == 3
    field_id = SigningKey(bytes.fromhex(inputs["field_seed"])).verify_key.key_id
    member = newest.roster.member(field_id)
    assert member is not None and member.revoked_after == inputs["revoked_after"]
    assert len(newest.roster.recipients()) == 2
    assert newest.roster.server_key == SigningKey(bytes.fromhex(inputs["server_seed"])).verify_key


# --- the happy path ---------------------------------------------------------------------------


def test_roster_chain_round_trips_and_verifies(org: Org) -> None:
    """PROTOCOL §5.2: a well-formed chain from genesis verifies and yields the newest version."""
    served = [reparse(v) for v in org.chain]
    assert verify_chain(served).hash == org.v3.hash
    assert verify_chain(served, pinned_fingerprint=org.v2.hash).roster.version == 3


def test_fingerprint_is_tagged_hash_of_body(org: Org) -> None:
    """PROTOCOL §5.3: fingerprint = SHA-256(tag || 0x00 || body); text is 10 groups of 4 hex."""
    import hashlib

    expected = hashlib.sha256(b"sealbox/v1/roster-fingerprint\x00" + org.v1.document.body).digest()
    assert org.v1.hash == expected
    text = format_fingerprint(org.v1.hash)
    assert text.split() == [expected[:20].hex()[i : i + 4] for i in range(0, 40, 4)]


# --- R1 -------------------------------------------------------------------------------------


def test_R1_genesis_must_be_version_1(org: Org) -> None:
    """PROTOCOL §5.2 R1: a chain starts at version 1."""
    bogus = replace(org.v1.roster, version=2).sign(org.alice)
    with pytest.raises(RosterError) as info:
        check_successor(None, bogus)
    assert info.value.rule == "R1"


def test_R1_version_must_increase_by_exactly_one(org: Org) -> None:
    """PROTOCOL §5.2 R1: skipping or repeating a version number is refused."""
    skip = replace(org.v2.roster.next_version(org.v2), version=4).sign(org.alice)
    with pytest.raises(RosterError) as info:
        check_successor(org.v2, skip)
    assert info.value.rule == "R1"
    repeat = replace(org.v2.roster, prev=org.v2.hash).sign(org.alice)
    with pytest.raises(RosterError) as info:
        check_successor(org.v2, repeat)
    assert info.value.rule == "R1"


def test_R1_withheld_version_breaks_chain(org: Org) -> None:
    """PROTOCOL §5.2 R1: a server that withholds a middle version cannot serve a valid chain."""
    with pytest.raises(RosterError) as info:
        verify_chain([org.v1, org.v3])
    assert info.value.rule == "R1"


def test_R1_version_number_must_be_positive_integer(org: Org) -> None:
    """PROTOCOL §5.1, R1: version 0 or a non-integer version does not parse."""
    for bad in (0, -1, "1"):
        body = {**org.v1.roster.to_cbor(), "n": bad}
        with pytest.raises(RosterError):
            SignedRoster.parse(raw_signed(body, org.alice))


# --- R2 -------------------------------------------------------------------------------------


def test_R2_genesis_prev_must_be_zero(org: Org) -> None:
    """PROTOCOL §5.2 R2: version 1 has an all-zero prev."""
    bogus = replace(org.v1.roster, prev=bytes([1]) * 32).sign(org.alice)
    with pytest.raises(RosterError) as info:
        check_successor(None, bogus)
    assert info.value.rule == "R2"


def test_R2_prev_must_be_fingerprint_of_previous(org: Org) -> None:
    """PROTOCOL §5.2 R2: version n names the fingerprint of version n-1."""
    bogus = replace(org.v2.roster.next_version(org.v2), prev=org.v1.hash).sign(org.alice)
    with pytest.raises(RosterError) as info:
        check_successor(org.v2, bogus)
    assert info.value.rule == "R2"


def test_R2_fork_spliced_onto_chain_is_refused(org: Org) -> None:
    """PROTOCOL §5.2 R2: a v3 that extends another v2 (a fork) does not follow this v2."""
    other_v2 = (
        org.v1.roster.with_member(field_member(org.laptop)).next_version(org.v1).sign(org.alice)
    )
    fork_v3 = other_v2.roster.next_version(other_v2).sign(org.alice)
    with pytest.raises(RosterError) as info:
        verify_chain([org.v1, org.v2, fork_v3])
    assert info.value.rule == "R2"


# --- R3 -------------------------------------------------------------------------------------


def test_R3_genesis_signed_by_listed_coordinator(org: Org) -> None:
    """PROTOCOL §5.2 R3: genesis must be signed by a coordinator it lists."""
    stranger = SigningKey(bytes([7]) * 32)
    with pytest.raises(RosterError) as info:
        check_successor(None, org.v1.roster.sign(stranger))
    assert info.value.rule == "R3"


@pytest.mark.parametrize("who", ["field device", "stranger", "coordinator added in this version"])
def test_R3_signer_must_be_active_coordinator_of_previous(org: Org, who: str) -> None:
    """PROTOCOL §5.2 R3: only an active coordinator of version n-1 may sign version n."""
    newcomer = SigningKey(bytes([8]) * 32)
    newcomer_kem = KemPrivateKey(bytes([8]) * 32)
    content = org.v3.roster.next_version(org.v3)
    if who == "field device":
        signer = org.phone
    elif who == "stranger":
        signer = newcomer
    else:
        signer = newcomer
        content = content.with_member(coordinator_member(newcomer, newcomer_kem))
    with pytest.raises(RosterError) as info:
        check_successor(org.v3, content.sign(signer))
    assert info.value.rule == "R3"


def test_R3_revoked_coordinator_cannot_sign(org: Org) -> None:
    """PROTOCOL §5.2 R3: once revoked, a coordinator's key signs nothing further."""
    v4 = org.v3.roster.revoke(org.bob.verify_key.key_id, after_seq=10).next_version(org.v3)
    v4_signed = v4.sign(org.alice)
    check_successor(org.v3, v4_signed)
    v5 = v4_signed.roster.with_member(field_member(SigningKey(bytes([7]) * 32)))
    with pytest.raises(RosterError) as info:
        check_successor(v4_signed, v5.next_version(v4_signed).sign(org.bob))
    assert info.value.rule == "R3"


def test_R3_altered_body_fails_signature(org: Org) -> None:
    """PROTOCOL §3.1, R3: a server that edits a signed body (same signer id) is caught."""
    body = org.v2.roster.to_cbor()
    body["m"] = [m for m in body["m"] if m["i"] != org.phone.verify_key.key_id]
    from crypto import encoding

    forged = SignedDocument(
        purpose=Purpose.ROSTER_SIGNATURE,
        body=encoding.encode(body),
        signer=org.v2.document.signer,
        signature=org.v2.document.signature,
    )
    candidate = SignedRoster.parse(forged.to_bytes())
    with pytest.raises(RosterError) as info:
        check_successor(org.v1, candidate)
    assert info.value.rule == "R3"


# --- R4 -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def revoked(org: Org) -> SignedRoster:
    return (
        org.v3.roster.revoke(org.phone.verify_key.key_id, after_seq=41)
        .next_version(org.v3)
        .sign(org.alice)
    )


def test_R4_revocation_cannot_be_undone(org: Org, revoked: SignedRoster) -> None:
    """PROTOCOL §5.2 R4: a later version that re-activates a revoked device is refused."""
    undone = revoked.roster.with_member(field_member(org.phone)).next_version(revoked)
    with pytest.raises(RosterError) as info:
        check_successor(revoked, undone.sign(org.alice))
    assert info.value.rule == "R4"


def test_R4_revocation_point_cannot_move_later(org: Org, revoked: SignedRoster) -> None:
    """PROTOCOL §5.2 R4: raising revoked_after (accepting more of a seized device) is refused."""
    member = revoked.roster.member(org.phone.verify_key.key_id)
    assert member is not None
    later = revoked.roster.with_member(replace(member, revoked_after=42)).next_version(revoked)
    with pytest.raises(RosterError) as info:
        check_successor(revoked, later.sign(org.alice))
    assert info.value.rule == "R4"


def test_R4_revoked_member_cannot_be_dropped(org: Org, revoked: SignedRoster) -> None:
    """PROTOCOL §5.2 R4: removing the revoked entry would erase the revocation; refused."""
    dropped = replace(
        revoked.roster,
        members=tuple(
            m for m in revoked.roster.members if m.device_id != org.phone.verify_key.key_id
        ),
    ).next_version(revoked)
    with pytest.raises(RosterError) as info:
        check_successor(revoked, dropped.sign(org.alice))
    assert info.value.rule == "R4"


def test_R4_revocation_point_may_move_earlier(org: Org, revoked: SignedRoster) -> None:
    """PROTOCOL §5.2 R4: moving the point earlier only distrusts more; accepted."""
    earlier = revoked.roster.revoke(org.phone.verify_key.key_id, after_seq=10).next_version(revoked)
    signed = earlier.sign(org.alice)
    check_successor(revoked, signed)
    member = signed.roster.member(org.phone.verify_key.key_id)
    assert member is not None and member.revoked_after == 10
    assert member.accepts_seq(10) and not member.accepts_seq(11)


# --- R5 -------------------------------------------------------------------------------------


def test_R5_last_coordinator_cannot_be_revoked(org: Org) -> None:
    """PROTOCOL §5.2 R5: at least one active coordinator must remain."""
    none_left = (
        org.v3.roster.revoke(org.alice.verify_key.key_id, after_seq=1)
        .revoke(org.bob.verify_key.key_id, after_seq=1)
        .next_version(org.v3)
    )
    with pytest.raises(RosterError) as info:
        check_successor(org.v3, none_left.sign(org.alice))
    assert info.value.rule == "R5"


def test_R5_genesis_needs_an_active_coordinator(org: Org) -> None:
    """PROTOCOL §5.2 R5 (with R3): a genesis without an active coordinator is refused."""
    member = replace(coordinator_member(org.alice, org.alice_kem), revoked_after=0)
    genesis = Roster(ORG, 1, ZERO, SERVER.verify_key, (member,)).sign(org.alice)
    with pytest.raises(RosterError) as info:
        check_successor(None, genesis)
    assert info.value.rule in {"R3", "R5"}


# --- R6 -------------------------------------------------------------------------------------


def test_R6_member_id_must_be_key_id(org: Org) -> None:
    """PROTOCOL §5.2 R6: a member whose id is not its signing key's key id is refused."""
    body = org.v2.roster.to_cbor()
    phone = next(m for m in body["m"] if m["i"] == org.phone.verify_key.key_id)
    phone["k"] = org.laptop.verify_key.raw  # the server swaps the phone's key for its own
    with pytest.raises(RosterError) as info:
        SignedRoster.parse(raw_signed(body, org.alice))
    assert info.value.rule == "R6"


@pytest.mark.parametrize("case", ["field with HPKE key", "coordinator without HPKE key"])
def test_R6_exactly_coordinators_carry_hpke_key(org: Org, case: str) -> None:
    """PROTOCOL §5.2 R6: exactly the coordinators carry an HPKE key."""
    body = org.v2.roster.to_cbor()
    if case == "field with HPKE key":
        target = next(m for m in body["m"] if m["i"] == org.phone.verify_key.key_id)
        target["e"] = org.bob_kem.public_key.raw
    else:
        target = next(m for m in body["m"] if m["i"] == org.bob.verify_key.key_id)
        del target["e"]
    with pytest.raises(RosterError) as info:
        SignedRoster.parse(raw_signed(body, org.alice))
    assert info.value.rule == "R6"


# --- format -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"v": 2},
        {"s": 2},
        {"v": True},
        {"s": True},
        {"o": bytes(15)},
        {"h": bytes(31)},
        {"sv": bytes(31)},
        {"x": 1},
    ],
    ids=["version", "suite", "version-true", "suite-true", "org", "prev", "server-key", "extra"],
)
def test_roster_format_refuses_other_versions_suites_and_shapes(org: Org, change: dict) -> None:
    """PROTOCOL §2, §5.1: another version, suite, length or field makes the roster malformed."""
    body = {**org.v1.roster.to_cbor(), **change}
    with pytest.raises(RosterError):
        SignedRoster.parse(raw_signed(body, org.alice))


def test_roster_members_must_be_sorted_and_unique(org: Org) -> None:
    """PROTOCOL §5.1: members are sorted by id and unique."""
    body = org.v3.roster.to_cbor()
    body["m"] = list(reversed(body["m"]))
    with pytest.raises(RosterError):
        SignedRoster.parse(raw_signed(body, org.alice))
    body["m"] = [body["m"][0], body["m"][0]]
    with pytest.raises(RosterError):
        SignedRoster.parse(raw_signed(body, org.alice))


def test_roster_signed_for_another_purpose_is_refused(org: Org) -> None:
    """PROTOCOL §3.1: an invite-purpose signature over a roster body is not a roster."""
    document = sign_document(Purpose.INVITE_SIGNATURE, org.v1.roster.to_cbor(), org.alice)
    with pytest.raises(RosterError):
        SignedRoster.parse(document.to_bytes())


def test_roster_organisation_cannot_change(org: Org) -> None:
    """PROTOCOL §5.2: a version for another organisation does not extend this chain."""
    moved = replace(org.v1.roster.next_version(org.v1), org_id=bytes(16)).sign(org.alice)
    with pytest.raises(RosterError):
        check_successor(org.v1, moved)


@given(data=st.data())
def test_any_damage_to_a_served_version_is_refused(org: Org, data: st.DataObject) -> None:
    """PROTOCOL §3.1, §5.2: flipping any bit of any served version fails parse or verification."""
    index = data.draw(st.integers(0, 2))
    raw = bytearray(org.chain[index].to_bytes())
    bit = data.draw(st.integers(0, len(raw) * 8 - 1))
    raw[bit // 8] ^= 1 << (bit % 8)
    served = [v.to_bytes() for v in org.chain]
    served[index] = bytes(raw)
    with pytest.raises(RosterError):
        verify_chain([SignedRoster.parse(b) for b in served])


@given(st.binary(max_size=512))
def test_parse_arbitrary_bytes_only_raises_roster_error(data: bytes) -> None:
    """PROTOCOL §5.1: garbage never escapes as another exception type."""
    with pytest.raises(RosterError):
        SignedRoster.parse(data)


# --- rollback and pin ---------------------------------------------------------------------------


def test_rollback_older_chain_than_trusted_is_refused(org: Org) -> None:
    """PROTOCOL §5.4: a chain ending older than the newest verified version is a rollback."""
    with pytest.raises(RosterError) as info:
        verify_chain([org.v1, org.v2], trusted=org.v3)
    assert info.value.rule == "rollback"


def test_rollback_different_version_under_same_number_is_refused(org: Org) -> None:
    """PROTOCOL §5.4: re-serving a known number with other content is refused."""
    other_v3 = org.v2.roster.with_member(field_member(SigningKey(bytes([7]) * 32)))
    other_v3_signed = other_v3.next_version(org.v2).sign(org.alice)
    with pytest.raises(RosterError):
        verify_chain([org.v1, org.v2, other_v3_signed], trusted=org.v3)


def test_trusted_version_extended_and_re_served_prefix_accepted(org: Org) -> None:
    """PROTOCOL §5.4: a client that trusts v2 accepts [v1, v2, v3] and [v3]; nothing new is fine."""
    assert verify_chain([org.v1, org.v2, org.v3], trusted=org.v2).hash == org.v3.hash
    assert verify_chain([org.v3], trusted=org.v2).hash == org.v3.hash
    assert verify_chain([], trusted=org.v3).hash == org.v3.hash
    with pytest.raises(RosterError):
        verify_chain([])


def test_pin_chain_must_contain_pinned_fingerprint(org: Org) -> None:
    """PROTOCOL §5.3: the chain a device is served must pass through the invite's fingerprint."""
    assert verify_chain(org.chain, pinned_fingerprint=org.v3.hash).hash == org.v3.hash
    with pytest.raises(RosterError) as info:
        verify_chain(org.chain, pinned_fingerprint=bytes(32))
    assert info.value.rule == "pin"


def test_pin_defeats_substituted_genesis(org: Org) -> None:
    """PROTOCOL §5.3, THREAT_MODEL M2: a server-made org with its own coordinator fails the pin."""
    mallory = SigningKey(bytes([7]) * 32)
    mallory_kem = KemPrivateKey(bytes([7]) * 32)
    fake = Roster(ORG, 1, ZERO, SERVER.verify_key, (coordinator_member(mallory, mallory_kem),))
    fake_v1 = fake.sign(mallory)
    verify_chain([fake_v1])  # self-consistent...
    with pytest.raises(RosterError) as info:
        verify_chain([fake_v1], pinned_fingerprint=org.v1.hash)  # ...but not the pinned org
    assert info.value.rule == "pin"


_leaf = (
    st.integers(-(2**63), 2**64 - 1)
    | st.binary(max_size=40)
    | st.text(max_size=12)
    | st.booleans()
    | st.none()
    | st.sampled_from([1, True, bytes(16), bytes(32), "coordinator", "field"])
)
_member = st.dictionaries(st.sampled_from(["i", "k", "r", "e", "x", "zz"]), _leaf, max_size=6)
_body = st.fixed_dictionaries(
    {
        "v": st.sampled_from([1, True, 2]) | _leaf,
        "s": st.sampled_from([1, True]) | _leaf,
        "o": _leaf,
        "n": _leaf,
        "h": _leaf,
        "sv": _leaf,
        "m": st.lists(_member, max_size=3) | _leaf,
    }
)


@given(body=_body)
def test_signed_structured_garbage_only_raises_roster_error(body: dict[str, Any]) -> None:
    """PROTOCOL §5.1: a validly signed body of any shape parses only if well-formed, and
    otherwise fails with RosterError (never another exception)."""
    signer = SigningKey(bytes([1]) * 32)
    try:
        SignedRoster.parse(raw_signed(body, signer))
    except RosterError:
        pass
