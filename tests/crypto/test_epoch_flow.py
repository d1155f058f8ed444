"""One device epoch end to end: a key envelope, then revisions along the chain (PROTOCOL §4.3).

Plays the two parties the chain exists for: coordinators, who hold CK0 and must open every
revision in any order, and the seizer of the device, who holds only the newest chain key and
must open none of what the device already sent (THREAT_MODEL D2).
"""

from __future__ import annotations

import random

import pytest

from crypto import (
    ChainKey,
    KemPrivateKey,
    SigningKey,
    VerificationFailed,
    message_key_at,
    open_revision,
    open_sender_key,
    parse_envelope,
    seal_revision,
    seal_sender_key,
)

DEVICE = SigningKey(bytes([1]) * 32)
COORDINATORS = [KemPrivateKey(bytes([2 + i]) * 32) for i in range(3)]
ORG = bytes([9]) * 16
REVISIONS = 30


def run_epoch() -> tuple[bytes, list[bytes], list[bytes], ChainKey]:
    """The device's side: returns the wire bytes, the contents, and the chain key it keeps."""
    ck0 = ChainKey.generate()
    key_envelope = seal_sender_key(
        org=ORG,
        seq=1,
        prev=bytes(32),
        roster_version=1,
        chain_key=ck0,
        recipients=[c.public_key for c in COORDINATORS],
        signing_key=DEVICE,
    )
    chain = ck0
    del ck0  # the device keeps only the newest chain key
    prev = key_envelope.id
    wire, contents = [], []
    report = bytes([7]) * 16
    parents: list[bytes] = []
    for n in range(2, REVISIONS + 2):
        message_key, chain = chain.advance()
        content = f"revision {n}: witness statement".encode() * n
        envelope = seal_revision(
            org=ORG,
            report=report,
            parents=parents,
            seq=n,
            prev=prev,
            roster_version=1,
            key_seq=1,
            message_key=message_key,
            content=content,
            signing_key=DEVICE,
        )
        wire.append(envelope.to_bytes())
        contents.append(content)
        prev, parents = envelope.id, [envelope.id]
    return key_envelope.to_bytes(), wire, contents, chain


@pytest.fixture(scope="module")
def epoch() -> tuple[bytes, list[bytes], list[bytes], ChainKey]:
    return run_epoch()


def test_every_coordinator_opens_every_revision_in_any_order(epoch) -> None:
    """PROTOCOL §4.3, §4.5: coordinators derive MK_(n-c) from CK0 for any n, in any order."""
    key_bytes, wire, contents, _ = epoch
    order = list(range(len(wire)))
    random.Random(4).shuffle(order)
    for coordinator in COORDINATORS:
        ck0 = open_sender_key(
            parse_envelope(key_bytes), author=DEVICE.verify_key, recipient=coordinator
        )
        for i in order:
            envelope = parse_envelope(wire[i])
            assert envelope.header.key_seq == 1
            key = message_key_at(ck0, envelope.header.seq - envelope.header.key_seq)
            assert open_revision(envelope, author=DEVICE.verify_key, message_key=key) == contents[i]


def test_seized_device_chain_key_opens_nothing_already_sent(epoch) -> None:
    """PROTOCOL §4.3 rule 4, THREAT_MODEL D2: from the chain key a seized device holds, no key
    it can derive (forward, as far as 2 * REVISIONS steps) opens any revision it sent."""
    _, wire, _, seized = epoch
    derivable = [message_key_at(seized, i) for i in range(1, 2 * REVISIONS)]
    envelopes = [parse_envelope(w) for w in wire]
    for envelope in envelopes:
        for key in derivable:
            with pytest.raises(VerificationFailed):
                open_revision(envelope, author=DEVICE.verify_key, message_key=key)


def test_revisions_chain_by_prev_and_sequence(epoch) -> None:
    """PROTOCOL §4.1: seq increases by exactly 1 and prev names the previous envelope id."""
    key_bytes, wire, _, _ = epoch
    previous = parse_envelope(key_bytes)
    for raw in wire:
        envelope = parse_envelope(raw)
        assert envelope.header.seq == previous.header.seq + 1
        assert envelope.header.prev == previous.id
        previous = envelope


def test_outsider_and_other_epoch_learn_nothing(epoch) -> None:
    """PROTOCOL §4.3: a key not in the recipients cannot unwrap; another epoch's chain opens
    nothing of this one."""
    key_bytes, wire, _, _ = epoch
    with pytest.raises(VerificationFailed):
        open_sender_key(
            parse_envelope(key_bytes), author=DEVICE.verify_key, recipient=KemPrivateKey(bytes(32))
        )
    other_key_bytes, _, _, _ = run_epoch()
    other_ck0 = open_sender_key(
        parse_envelope(other_key_bytes), author=DEVICE.verify_key, recipient=COORDINATORS[0]
    )
    envelope = parse_envelope(wire[0])
    with pytest.raises(VerificationFailed):
        open_revision(envelope, author=DEVICE.verify_key, message_key=message_key_at(other_ck0, 1))
