"""Envelopes under attack: the server (or network) may alter, swap, replay and re-sign bytes.

Every test plays the adversary of THREAT_MODEL M1 and checks the one outcome the protocol
allows: opening fails with `VerificationFailed` (or its structural subclass
`MalformedEnvelope`), never another exception, and never any plaintext (PROTOCOL §4.5).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crypto import (
    ChainKey,
    Envelope,
    KemPrivateKey,
    KeyCommitmentMismatch,
    MalformedEnvelope,
    MessageKey,
    Purpose,
    SigningKey,
    VerificationFailed,
    VerifyKey,
    digest,
    encoding,
    message_key_at,
    open_revision,
    open_sender_key,
    parse_envelope,
    seal_revision,
    seal_sender_key,
)
from crypto.envelope import MAX_ENVELOPE_LENGTH, MAX_PARENTS, _finish, _seal_sender_key_from_parts
from crypto.padding import padded_length, padme

DEVICE = SigningKey(bytes([1]) * 32)
ATTACKER = SigningKey(bytes([2]) * 32)
COORDINATORS = [KemPrivateKey(bytes([10 + i]) * 32) for i in range(3)]
OUTSIDER = KemPrivateKey(bytes([20]) * 32)
ORG = bytes([3]) * 16
REPORT = bytes([4]) * 16
OTHER_REPORT = bytes([5]) * 16
CK0 = ChainKey(bytes([6]) * 32)
KEY_SEQ = 2
SEQ = 5
MK = message_key_at(CK0, SEQ - KEY_SEQ)
PARENT = bytes([7]) * 32
PREV = bytes([8]) * 32
CONTENT = b'{"title": "checkpoint 14", "note": "three detained"}' * 20


def seal(
    content: bytes = CONTENT,
    *,
    report: bytes = REPORT,
    seq: int = SEQ,
    key_seq: int = KEY_SEQ,
    parents: tuple[bytes, ...] = (PARENT,),
    prev: bytes = PREV,
    org: bytes = ORG,
    signing_key: SigningKey = DEVICE,
) -> Envelope:
    return seal_revision(
        org=org,
        report=report,
        parents=parents,
        seq=seq,
        prev=prev,
        roster_version=4,
        key_seq=key_seq,
        message_key=message_key_at(CK0, seq - key_seq),
        content=content,
        signing_key=signing_key,
    )


REVISION = seal()
REVISION_BYTES = REVISION.to_bytes()
SECOND = seal(b"second revision", report=OTHER_REPORT, seq=SEQ + 1, prev=REVISION.id)
KEY_ENVELOPE = seal_sender_key(
    org=ORG,
    seq=KEY_SEQ,
    prev=bytes([9]) * 32,
    roster_version=4,
    chain_key=CK0,
    recipients=[c.public_key for c in COORDINATORS],
    signing_key=DEVICE,
)
KEY_BYTES = KEY_ENVELOPE.to_bytes()


def open_bytes(
    data: bytes, *, author: VerifyKey = DEVICE.verify_key, key: MessageKey = MK
) -> bytes:
    """What a coordinator does with bytes the server hands it (PROTOCOL §4.5)."""
    return open_revision(parse_envelope(data), author=author, message_key=key)


def rebuild(header: dict[str, Any], body: bytes, signature: bytes) -> bytes:
    return encoding.encode([1, encoding.encode(header), body, signature])


def header_of(envelope: Envelope) -> dict[str, Any]:
    fields = encoding.decode(envelope.header_bytes)
    assert isinstance(fields, dict)
    return fields


# --- the honest path -----------------------------------------------------------------------


@given(
    content=st.binary(max_size=3000),
    parents=st.lists(st.binary(min_size=32, max_size=32), max_size=4),
)
def test_revision_round_trips(content: bytes, parents: list[bytes]) -> None:
    """PROTOCOL §4.2, §4.5: sealed content opens to exactly itself; parents are sorted, unique."""
    envelope = seal(content, parents=tuple(parents))
    parsed = parse_envelope(envelope.to_bytes())
    assert parsed == envelope
    assert list(parsed.header.parents) == sorted(set(parents))
    assert open_revision(parsed, author=DEVICE.verify_key, message_key=MK) == content


@given(content=st.binary(max_size=5000))
def test_revision_body_length_is_a_padme_bucket(content: bytes) -> None:
    """PROTOCOL §2.2, S2: the ciphertext length reveals only a Padmé bucket of at least 256."""
    envelope = seal(content)
    plaintext_length = len(envelope.body) - 16
    assert plaintext_length == padded_length(len(content))
    assert plaintext_length >= 256 and padme(plaintext_length) == plaintext_length


def test_revision_nonce_is_fresh_and_header_has_no_content() -> None:
    """PROTOCOL §4.1: random nonce per seal; nothing of the content appears in cleartext."""
    again = seal()
    assert again.header.nonce != REVISION.header.nonce and again.id != REVISION.id
    assert b"checkpoint" not in REVISION_BYTES and b"detained" not in REVISION_BYTES


def test_sender_key_opens_for_every_listed_coordinator() -> None:
    """PROTOCOL §4.3: each recipient unwraps CK0 and derives the revision's message key."""
    parsed = parse_envelope(KEY_BYTES)
    assert parsed.header.recipients == tuple(sorted(c.public_key.key_id for c in COORDINATORS))
    for coordinator in COORDINATORS:
        chain_key = open_sender_key(parsed, author=DEVICE.verify_key, recipient=coordinator)
        assert chain_key == CK0
        key = message_key_at(chain_key, REVISION.header.seq - REVISION.header.key_seq)
        assert open_bytes(REVISION_BYTES, key=key) == CONTENT


# --- bytes changed in transit ---------------------------------------------------------------


@given(data=st.data())
def test_any_bit_flip_in_revision_fails(data: st.DataObject) -> None:
    """PROTOCOL §4.4, §4.5: flipping any single bit of a revision makes opening fail."""
    bit = data.draw(st.integers(0, len(REVISION_BYTES) * 8 - 1))
    raw = bytearray(REVISION_BYTES)
    raw[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(VerificationFailed):
        open_bytes(bytes(raw))


def test_every_bit_flip_in_header_and_signature_fails() -> None:
    """PROTOCOL §4.4: exhaustively, every bit of the header and signature is covered."""
    parsed = parse_envelope(REVISION_BYTES)
    start = REVISION_BYTES.index(parsed.header_bytes)
    stop = start + len(parsed.header_bytes)
    positions = list(range(start, stop)) + list(
        range(len(REVISION_BYTES) - 64, len(REVISION_BYTES))
    )
    for position in positions:
        for bit in range(8):
            raw = bytearray(REVISION_BYTES)
            raw[position] ^= 1 << bit
            with pytest.raises(VerificationFailed):
                open_bytes(bytes(raw))


@given(cut=st.integers(1, len(REVISION_BYTES)))
def test_truncated_revision_fails(cut: int) -> None:
    """PROTOCOL §4.5: any truncation fails."""
    with pytest.raises(VerificationFailed):
        open_bytes(REVISION_BYTES[:-cut])


@given(extra=st.binary(min_size=1, max_size=64))
def test_extended_revision_fails(extra: bytes) -> None:
    """PROTOCOL §4.5: trailing bytes after the envelope fail."""
    with pytest.raises(VerificationFailed):
        open_bytes(REVISION_BYTES + extra)


@given(extra=st.binary(min_size=1, max_size=64), where=st.sampled_from(["front", "back"]))
def test_extended_body_fails(extra: bytes, where: str) -> None:
    """PROTOCOL §4.4: bytes added to the body (re-encoded validly) change the id; fails."""
    body = extra + REVISION.body if where == "front" else REVISION.body + extra
    with pytest.raises(VerificationFailed):
        open_bytes(rebuild(header_of(REVISION), body, REVISION.signature))


@given(data=st.data())
def test_any_bit_flip_in_key_envelope_fails(data: st.DataObject) -> None:
    """PROTOCOL §4.3, §4.5: flipping any bit of a key envelope makes unwrapping fail."""
    bit = data.draw(st.integers(0, len(KEY_BYTES) * 8 - 1))
    raw = bytearray(KEY_BYTES)
    raw[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(VerificationFailed):
        open_sender_key(
            parse_envelope(bytes(raw)), author=DEVICE.verify_key, recipient=COORDINATORS[0]
        )


@given(data=st.binary(max_size=600))
def test_parse_arbitrary_bytes_only_raises_malformed(data: bytes) -> None:
    """PROTOCOL §4.1: garbage is MalformedEnvelope (a VerificationFailed), never another error."""
    with pytest.raises(MalformedEnvelope):
        parse_envelope(data)


# --- swapped parts ---------------------------------------------------------------------------


def test_swapped_bodies_between_revisions_fail() -> None:
    """PROTOCOL §4.2, M1: a body moved under another revision's header fails, signed or not."""
    header = header_of(REVISION)
    with pytest.raises(VerificationFailed):
        open_bytes(rebuild(header, SECOND.body, REVISION.signature))
    # Even with a valid device signature over the swap (say, a device bug or a stolen key), the
    # AEAD rejects it: the body is bound to its own header's hash.
    resigned = _finish(REVISION.header_bytes, SECOND.body, DEVICE).to_bytes()
    with pytest.raises(VerificationFailed):
        open_bytes(resigned)
    second_key = message_key_at(CK0, SECOND.header.seq - SECOND.header.key_seq)
    with pytest.raises(VerificationFailed):
        open_bytes(resigned, key=second_key)


def test_swapped_signatures_between_revisions_fail() -> None:
    """PROTOCOL §4.4: a signature belongs to one envelope id."""
    with pytest.raises(VerificationFailed):
        open_bytes(rebuild(header_of(REVISION), REVISION.body, SECOND.signature))


def test_swapped_key_wraps_between_key_envelopes_fail() -> None:
    """PROTOCOL §4.3: a wrap is bound (HPKE info) to its key envelope's header hash."""
    other = seal_sender_key(
        org=ORG,
        seq=KEY_SEQ + 10,
        prev=bytes([9]) * 32,
        roster_version=4,
        chain_key=ChainKey(bytes([11]) * 32),
        recipients=[c.public_key for c in COORDINATORS],
        signing_key=DEVICE,
    )
    grafted = _finish(KEY_ENVELOPE.header_bytes, other.body, DEVICE)
    for coordinator in COORDINATORS:
        with pytest.raises(VerificationFailed):
            open_sender_key(grafted, author=DEVICE.verify_key, recipient=coordinator)


def test_swapped_wrap_slots_within_key_envelope_fail() -> None:
    """PROTOCOL §4.3: each wrap is bound to its recipient's id; reordering slots fails."""
    wraps = encoding.decode(KEY_ENVELOPE.body)
    swapped = encoding.encode([wraps[1], wraps[0], *wraps[2:]])
    envelope = _finish(KEY_ENVELOPE.header_bytes, swapped, DEVICE)
    by_slot = sorted(COORDINATORS, key=lambda c: c.public_key.key_id)
    for coordinator in by_slot[:2]:
        with pytest.raises(VerificationFailed):
            open_sender_key(envelope, author=DEVICE.verify_key, recipient=coordinator)
    assert open_sender_key(envelope, author=DEVICE.verify_key, recipient=by_slot[2]) == CK0


def test_key_envelope_with_dropped_or_extra_wrap_fails() -> None:
    """PROTOCOL §4.3: the body holds exactly one wrap per listed recipient."""
    wraps = encoding.decode(KEY_ENVELOPE.body)
    for body in (encoding.encode(wraps[:-1]), encoding.encode([*wraps, wraps[0]]), b"\x00"):
        envelope = _finish(KEY_ENVELOPE.header_bytes, body, DEVICE)
        with pytest.raises(VerificationFailed):
            open_sender_key(envelope, author=DEVICE.verify_key, recipient=COORDINATORS[0])


# --- key commitment (THREAT_MODEL §7.11) ------------------------------------------------------

OTHER_CK0 = ChainKey(bytes([12]) * 32)


def equivocating_key_envelope(committed: ChainKey = CK0) -> Envelope:
    """What a malicious author can sign: one key envelope whose wraps carry different chain
    keys (the second coordinator's holds OTHER_CK0), the header committing to ``committed``."""
    return _seal_sender_key_from_parts(
        org=ORG,
        seq=KEY_SEQ,
        prev=bytes([9]) * 32,
        roster_version=4,
        committed=committed,
        wrapped=[(c.public_key, OTHER_CK0 if i == 1 else CK0) for i, c in enumerate(COORDINATORS)],
        signing_key=DEVICE,
    )


def test_key_envelope_header_commits_to_its_chain_key() -> None:
    """PROTOCOL §4.1, §4.3: `m` = SHA-256("sealbox/v1/key-commitment" || 0x00 || CK0), in the
    header, so under the envelope signature and in every wrap's HPKE info."""
    fields = header_of(KEY_ENVELOPE)
    assert fields["m"] == digest(Purpose.KEY_COMMITMENT, CK0.raw)
    assert fields["m"] == KEY_ENVELOPE.header.commitment
    assert "m" not in header_of(REVISION)


def test_wraps_with_two_chain_keys_open_only_for_the_committed_key() -> None:
    """PROTOCOL §4.3, §4.5: a reader checks the commitment before it derives any message key;
    the coordinator whose wrap holds another CK0 gets KeyCommitmentMismatch (a
    VerificationFailed), never a key, so no two coordinators read different content."""
    envelope = parse_envelope(equivocating_key_envelope().to_bytes())
    author = DEVICE.verify_key
    assert open_sender_key(envelope, author=author, recipient=COORDINATORS[0]) == CK0
    assert open_sender_key(envelope, author=author, recipient=COORDINATORS[2]) == CK0
    with pytest.raises(KeyCommitmentMismatch) as info:
        open_sender_key(envelope, author=author, recipient=COORDINATORS[1])
    assert isinstance(info.value, VerificationFailed) and str(info.value) == "verification failed"
    # Committing to the other key turns it round: now the two honest-looking wraps fail.
    flipped = equivocating_key_envelope(committed=OTHER_CK0)
    assert open_sender_key(flipped, author=author, recipient=COORDINATORS[1]) == OTHER_CK0
    for coordinator in (COORDINATORS[0], COORDINATORS[2]):
        with pytest.raises(KeyCommitmentMismatch):
            open_sender_key(flipped, author=author, recipient=coordinator)


def test_a_changed_commitment_fails_the_signature_and_the_wraps() -> None:
    """PROTOCOL §4.3, §4.4: `m` is signed (a flipped bit fails the signature) and bound into
    the HPKE info (re-signed by the device, the wraps no longer open): neither is a mismatch."""
    header = header_of(KEY_ENVELOPE)
    header["m"] = bytes([header["m"][0] ^ 1]) + header["m"][1:]
    forged = parse_envelope(rebuild(header, KEY_ENVELOPE.body, KEY_ENVELOPE.signature))
    with pytest.raises(VerificationFailed) as info:
        open_sender_key(forged, author=DEVICE.verify_key, recipient=COORDINATORS[0])
    assert not isinstance(info.value, KeyCommitmentMismatch)
    with pytest.raises(VerificationFailed):
        forged.verify_signature(DEVICE.verify_key)
    re_signed = _finish(encoding.encode(header), KEY_ENVELOPE.body, DEVICE)
    for coordinator in COORDINATORS:
        with pytest.raises(VerificationFailed) as info:
            open_sender_key(re_signed, author=DEVICE.verify_key, recipient=coordinator)
        assert not isinstance(info.value, KeyCommitmentMismatch)


@pytest.mark.parametrize(
    "value", [None, bytes(31), bytes(33), b"", "00" * 32, 0, [bytes(32)]], ids=repr
)
def test_a_missing_or_ill_typed_commitment_is_malformed(value: Any) -> None:
    """PROTOCOL §4.1: a key envelope header without `m`, or with `m` not 32 bytes, is
    malformed; a revision header never has one."""
    header = header_of(KEY_ENVELOPE)
    if value is None:
        del header["m"]
    else:
        header["m"] = value
    with pytest.raises(MalformedEnvelope):
        parse_envelope(rebuild(header, KEY_ENVELOPE.body, KEY_ENVELOPE.signature))
    revision = {**header_of(REVISION), "m": bytes(32)}
    with pytest.raises(MalformedEnvelope):
        parse_envelope(rebuild(revision, REVISION.body, REVISION.signature))


# --- changed header fields -------------------------------------------------------------------

# (field, new value): each keeps the header well-formed, so only the bindings can catch it.
HEADER_CHANGES: list[tuple[str, Any]] = [
    ("o", bytes([13]) * 16),  # replay into another organisation
    ("d", ATTACKER.verify_key.key_id),  # claim another author
    ("n", SEQ + 1),  # replay under another sequence number
    ("h", bytes([14]) * 32),  # splice into another place of the device's chain
    ("e", 5),  # claim another roster version
    ("r", OTHER_REPORT),  # replay under another report id
    ("p", sorted([PARENT, bytes([15]) * 32])),  # add a parent
    ("p", []),  # drop the parents (fake a new report root)
    ("c", KEY_SEQ + 1),  # claim another epoch
    ("x", bytes([16]) * 12),  # another nonce
]
CHANGE_IDS = [
    "org",
    "device",
    "seq",
    "prev",
    "roster",
    "report",
    "add-parent",
    "drop-parent",
    "key-seq",
    "nonce",
]


@pytest.mark.parametrize(("field", "value"), HEADER_CHANGES, ids=CHANGE_IDS)
def test_changed_header_field_with_original_signature_fails(field: str, value: Any) -> None:
    """PROTOCOL §4.4, M1: every header field is covered by the id and so by the signature."""
    header = header_of(REVISION)
    header[field] = value
    with pytest.raises(VerificationFailed):
        open_bytes(rebuild(header, REVISION.body, REVISION.signature))


@pytest.mark.parametrize(("field", "value"), HEADER_CHANGES, ids=CHANGE_IDS)
def test_changed_header_field_re_signed_by_device_key_fails(field: str, value: Any) -> None:
    """PROTOCOL §4.2, M1: even with a valid device signature, the body AEAD binds the header
    hash, so a changed field (replay under another report, org, seq...) does not open."""
    header = header_of(REVISION)
    header[field] = value
    forged = _finish(encoding.encode(header), REVISION.body, DEVICE).to_bytes()
    with pytest.raises(VerificationFailed):
        open_bytes(forged)
    if field in ("n", "c"):
        # The key a reader derives from the forged header's (n, c) does not open it either.
        forged_header = parse_envelope(forged).header
        assert forged_header.key_seq is not None
        key = message_key_at(CK0, forged_header.seq - forged_header.key_seq)
        with pytest.raises(VerificationFailed):
            open_bytes(forged, key=key)


@pytest.mark.parametrize(("field", "value"), HEADER_CHANGES, ids=CHANGE_IDS)
def test_changed_header_field_re_signed_by_attacker_fails(field: str, value: Any) -> None:
    """PROTOCOL §4.4, M1: an attacker signing with its own key can claim neither the device
    (key id mismatch) nor, as itself, open the body (header hash bound in the AEAD)."""
    header = header_of(REVISION)
    header[field] = value
    forged = _finish(encoding.encode(header), REVISION.body, ATTACKER).to_bytes()
    with pytest.raises(VerificationFailed):
        open_bytes(forged)
    header["d"] = ATTACKER.verify_key.key_id
    as_attacker = _finish(encoding.encode(header), REVISION.body, ATTACKER).to_bytes()
    with pytest.raises(VerificationFailed):
        open_bytes(as_attacker, author=ATTACKER.verify_key)


@pytest.mark.parametrize(
    ("field", "value"),
    [("v", 2), ("s", 2), ("k", "key"), ("k", "note"), ("z", 1)],
    ids=["version", "suite", "kind-key", "kind-unknown", "extra-field"],
)
def test_downgrade_or_unknown_header_is_malformed(field: str, value: Any) -> None:
    """PROTOCOL §2, §4.1: another version or suite, a changed kind or an extra field is refused
    at parse time, before any key is touched (no downgrade)."""
    header = header_of(REVISION)
    header[field] = value
    with pytest.raises(MalformedEnvelope):
        parse_envelope(rebuild(header, REVISION.body, REVISION.signature))


@pytest.mark.parametrize(
    ("field", "value"),
    [("o", bytes([13]) * 16), ("n", KEY_SEQ + 1), ("e", 5), ("t", [])],
    ids=["org", "seq", "roster", "no-recipients"],
)
def test_changed_key_envelope_header_fails(field: str, value: Any) -> None:
    """PROTOCOL §4.3: a key envelope replayed under another org, seq or roster does not unwrap,
    even re-signed by the device, because HPKE info carries the header hash."""
    header = header_of(KEY_ENVELOPE)
    header[field] = value
    with pytest.raises(VerificationFailed):
        forged = _finish(encoding.encode(header), KEY_ENVELOPE.body, DEVICE)
        open_sender_key(forged, author=DEVICE.verify_key, recipient=COORDINATORS[0])


def test_key_envelope_recipient_list_swapped_for_attacker_key_fails() -> None:
    """PROTOCOL §4.3, M2: listing an outsider's key id does not let the outsider unwrap."""
    header = header_of(KEY_ENVELOPE)
    ids = sorted([*header["t"][1:], OUTSIDER.public_key.key_id])
    header["t"] = ids
    forged = _finish(encoding.encode(header), KEY_ENVELOPE.body, DEVICE)
    with pytest.raises(VerificationFailed):
        open_sender_key(forged, author=DEVICE.verify_key, recipient=OUTSIDER)


# --- wrong keys -------------------------------------------------------------------------------


@given(index=st.integers(1, 64).filter(lambda i: i != SEQ - KEY_SEQ))
def test_wrong_message_key_fails(index: int) -> None:
    """PROTOCOL §4.3: only MK_(n-c) opens the revision at n."""
    with pytest.raises(VerificationFailed):
        open_bytes(REVISION_BYTES, key=message_key_at(CK0, index))


def test_wrong_chain_wrong_author_wrong_recipient_fail() -> None:
    """PROTOCOL §4.4, §4.5: another chain's key, another author, a non-recipient all fail."""
    with pytest.raises(VerificationFailed):
        open_bytes(REVISION_BYTES, key=message_key_at(ChainKey(bytes(32)), SEQ - KEY_SEQ))
    with pytest.raises(VerificationFailed):
        open_bytes(REVISION_BYTES, author=ATTACKER.verify_key)
    with pytest.raises(VerificationFailed):
        open_sender_key(KEY_ENVELOPE, author=DEVICE.verify_key, recipient=OUTSIDER)
    with pytest.raises(VerificationFailed):
        open_sender_key(KEY_ENVELOPE, author=ATTACKER.verify_key, recipient=COORDINATORS[0])


def test_kinds_are_not_interchangeable() -> None:
    """PROTOCOL §4: a key envelope never opens as a revision, nor the reverse."""
    with pytest.raises(VerificationFailed):
        open_revision(KEY_ENVELOPE, author=DEVICE.verify_key, message_key=MK)
    with pytest.raises(VerificationFailed):
        open_sender_key(REVISION, author=DEVICE.verify_key, recipient=COORDINATORS[0])


# --- structure rules -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"p": [bytes([9]) * 32, bytes([8]) * 32]}, "sorted"),
        ({"p": [PARENT, PARENT]}, "sorted"),
        ({"p": [bytes([i]) * 32 for i in range(MAX_PARENTS + 1)]}, "at most"),
        ({"c": SEQ}, "precede"),
        ({"n": 1}, "prev"),
        ({"h": bytes(32)}, "prev"),
        ({"o": bytes(15)}, "org"),
        ({"x": bytes(11)}, "nonce"),
        ({"n": 0}, "seq"),
        ({"n": 2**53 + 1}, "seq"),
        ({"e": 0}, "roster"),
    ],
)
def test_structural_rules_name_their_reason(change: dict[str, Any], reason: str) -> None:
    """PROTOCOL §4.1: a malformed header is refused with a reason the server can return."""
    header = {**header_of(REVISION), **change}
    with pytest.raises(MalformedEnvelope) as info:
        parse_envelope(rebuild(header, REVISION.body, REVISION.signature))
    assert reason in info.value.reason


def test_missing_header_field_is_malformed() -> None:
    """PROTOCOL §4.1: every field of the kind is required."""
    for field in header_of(REVISION):
        header = header_of(REVISION)
        del header[field]
        with pytest.raises(MalformedEnvelope):
            parse_envelope(rebuild(header, REVISION.body, REVISION.signature))


def test_oversized_envelope_is_malformed_before_decoding() -> None:
    """PROTOCOL §4.5 limits: more than 4 MiB + 8 KiB is refused outright."""
    with pytest.raises(MalformedEnvelope):
        parse_envelope(bytes(MAX_ENVELOPE_LENGTH + 1))


def test_non_canonical_envelope_encoding_is_malformed() -> None:
    """PROTOCOL §2.1: the same envelope in a non-canonical encoding is refused."""
    import cbor2

    # The same header map with its keys in non-canonical order: same values, other bytes.
    header = header_of(REVISION)
    loose_header = cbor2.dumps(dict(reversed(list(header.items()))))
    assert loose_header != REVISION.header_bytes
    with pytest.raises(MalformedEnvelope):
        parse_envelope(encoding.encode([1, loose_header, REVISION.body, REVISION.signature]))


def test_wrong_types_are_type_errors() -> None:
    """Wrong input types are programming errors (TypeError), not verification failures."""
    with pytest.raises(TypeError):
        parse_envelope("not bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        open_revision(REVISION, author=DEVICE.verify_key, message_key=CK0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        open_sender_key(
            KEY_ENVELOPE, author=DEVICE.verify_key, recipient=COORDINATORS[0].public_key
        )  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        seal(b"x", signing_key=DEVICE.verify_key)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        seal("text")  # type: ignore[arg-type]


@pytest.mark.parametrize("version", [True, 2, 0, "1", b"\x01", None])
def test_outer_version_must_be_integer_one(version: Any) -> None:
    """PROTOCOL §2, §4: the outer version is exactly the integer 1; CBOR `true` (equal to 1 in
    Python) would otherwise give a second byte string for the same envelope id."""
    with pytest.raises(MalformedEnvelope):
        parse_envelope(
            encoding.encode([version, REVISION.header_bytes, REVISION.body, REVISION.signature])
        )


def test_a_verified_signature_is_remembered_only_for_that_envelope_and_that_key() -> None:
    """`verify_signature` answers again without Ed25519 only for the same immutable envelope
    and the same author key: a copy with another signature, or another key, is checked."""
    import dataclasses

    envelope = parse_envelope(REVISION_BYTES)
    envelope.verify_signature(DEVICE.verify_key)
    envelope.verify_signature(DEVICE.verify_key)  # remembered
    with pytest.raises(VerificationFailed):
        envelope.verify_signature(ATTACKER.verify_key)
    swapped = dataclasses.replace(envelope, signature=SECOND.signature)
    with pytest.raises(VerificationFailed):
        swapped.verify_signature(DEVICE.verify_key)
    with pytest.raises(dataclasses.FrozenInstanceError):
        envelope._verified_by = ATTACKER.verify_key.raw  # type: ignore[misc]
    assert open_revision(envelope, author=DEVICE.verify_key, message_key=MK) == CONTENT
    assert "_verified_by" not in repr(envelope) and envelope == parse_envelope(REVISION_BYTES)
