"""Delivery receipts: the server's signed statement of what it stored (PROTOCOL §3, §8.4,
§17.3).

A device purges a sealed revision only against a receipt it verified, so a receipt must be
unforgeable by anyone but the server key pinned in the roster, addressed to this device, and
its checkpoint must hold every item it lists.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crypto import Purpose, SigningKey, VerificationFailed, digest, sign_document
from sync.checkpoint import Checkpoint
from sync.merkle import Frontier, batch_inclusion_proof, leaf_hash
from sync.receipt import Receipt, ReceiptItem

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
h = bytes.fromhex

SERVER = SigningKey(bytes([1]) * 32)
DEVICE = SigningKey(bytes([2]) * 32).verify_key.key_id
ORG = bytes(range(16))
ITEMS = (ReceiptItem(bytes([7]) * 32, 2, 17), ReceiptItem(bytes([8]) * 32, 3, 18))


def logged(
    items: tuple[ReceiptItem, ...], size: int = 18, org: bytes = ORG, key: SigningKey = SERVER
) -> tuple[bytes, tuple[bytes, ...]]:
    """A checkpoint of a log of ``size`` leaves holding ``items`` at their server seqs (other
    leaves: filler), and the batch inclusion proof of the items in it."""
    at = {i.server_seq - 1: i.envelope_id for i in items}
    leaves = [leaf_hash(at.get(n, n.to_bytes(32, "big"))) for n in range(size)]
    frontier, completed = Frontier.empty().append(leaves)
    nodes = dict(completed)
    proof = batch_inclusion_proof(sorted(at), size, nodes) if at else []
    checkpoint = Checkpoint(org, size, frontier.root(), 1_780_000_000).sign(key).to_bytes()
    return checkpoint, tuple(proof)


def receipt(items: tuple[ReceiptItem, ...] = ITEMS, **kw: object) -> Receipt:
    return Receipt(ORG, DEVICE, 1_780_000_000, items, *logged(items, **kw))  # type: ignore[arg-type]


def signed() -> bytes:
    return receipt().sign(SERVER).to_bytes()


def test_receipt_vectors_reproduce_and_verify() -> None:
    """PROTOCOL §3, §8.4: the recorded receipt reproduces byte for byte and verifies."""
    (vector,) = json.loads((VECTORS / "receipt_v1.json").read_text(encoding="utf-8"))["vectors"]
    inputs = vector["inputs"]
    server = SigningKey(h(inputs["server_seed"]))
    items = tuple(ReceiptItem(h(e), d, s) for e, d, s in inputs["items"])
    expected = Receipt(
        h(inputs["org"]),
        h(inputs["device"]),
        inputs["issued_at"],
        items,
        h(inputs["checkpoint"]),
        tuple(h(p) for p in inputs["proof"]),
    )
    document = expected.sign(server)
    assert document.to_bytes().hex() == vector["document"]
    assert digest(Purpose.RECEIPT_SIGNATURE, document.body).hex() == vector["digest"]
    verified = Receipt.verify(
        h(vector["document"]),
        server.verify_key,
        org_id=h(inputs["org"]),
        device_id=h(inputs["device"]),
    )
    assert verified == expected


def test_receipt_verifies_and_covers_its_items() -> None:
    """PROTOCOL §8.4: a valid receipt lists exactly the stored envelopes with both sequences."""
    receipt = Receipt.verify(signed(), SERVER.verify_key, org_id=ORG, device_id=DEVICE)
    assert receipt.items == ITEMS
    assert receipt.covers([bytes([7]) * 32]) and receipt.covers([bytes([7]) * 32, bytes([8]) * 32])
    assert not receipt.covers([bytes([9]) * 32])
    assert not receipt.covers([bytes([7]) * 32, bytes([9]) * 32])


def test_receipt_from_another_key_is_refused() -> None:
    """PROTOCOL §8.4: only the server key pinned in the roster signs receipts."""
    forged = receipt().sign(SigningKey(bytes([3]) * 32)).to_bytes()
    with pytest.raises(VerificationFailed):
        Receipt.verify(forged, SERVER.verify_key, org_id=ORG, device_id=DEVICE)


@pytest.mark.parametrize("field", ["org", "device"])
def test_receipt_for_another_device_or_org_is_refused(field: str) -> None:
    """PROTOCOL §8.4: a receipt issued to another device (or org) proves nothing for this one."""
    org, device = (bytes(16), DEVICE) if field == "org" else (ORG, bytes(16))
    with pytest.raises(VerificationFailed):
        Receipt.verify(signed(), SERVER.verify_key, org_id=org, device_id=device)


def test_receipt_signed_for_another_purpose_is_refused() -> None:
    """PROTOCOL §3.1: a server signature over the body for another purpose is no receipt."""
    body = receipt().to_cbor()
    for purpose in (Purpose.ROSTER_SIGNATURE, Purpose.INVITE_SIGNATURE):
        document = sign_document(purpose, body, SERVER)
        with pytest.raises(VerificationFailed):
            Receipt.verify(document.to_bytes(), SERVER.verify_key, org_id=ORG, device_id=DEVICE)


@pytest.mark.parametrize(
    "items",
    [
        [[bytes(31), 1, 1]],
        [[bytes(32), "1", 1]],
        [[bytes(32), 1]],
        [[bytes(32), 1, 1, 1]],
        [bytes(32)],
        "items",
    ],
)
def test_receipt_malformed_items_are_refused(items) -> None:
    """PROTOCOL §8.4: items are [envelope id (32 bytes), device seq, server seq]."""
    body = {"o": ORG, "d": DEVICE, "t": 1, "i": items, "c": logged(())[0], "p": []}
    document = sign_document(Purpose.RECEIPT_SIGNATURE, body, SERVER)
    with pytest.raises(VerificationFailed):
        Receipt.verify(document.to_bytes(), SERVER.verify_key, org_id=ORG, device_id=DEVICE)


@given(data=st.data())
def test_receipt_bit_flip_is_refused(data: st.DataObject) -> None:
    """PROTOCOL §3.1: flipping any bit of a receipt makes it fail verification."""
    raw = bytearray(signed())
    bit = data.draw(st.integers(0, len(raw) * 8 - 1))
    raw[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(VerificationFailed):
        Receipt.verify(bytes(raw), SERVER.verify_key, org_id=ORG, device_id=DEVICE)


@given(st.binary(max_size=300))
def test_receipt_garbage_only_raises_verification_failed(data: bytes) -> None:
    """PROTOCOL §3: arbitrary bytes never verify and never raise another exception type."""
    with pytest.raises(VerificationFailed):
        Receipt.verify(data, SERVER.verify_key, org_id=ORG, device_id=DEVICE)


def _refused(candidate: Receipt, key: SigningKey = SERVER) -> None:
    with pytest.raises(VerificationFailed):
        Receipt.verify(
            candidate.sign(key).to_bytes(), SERVER.verify_key, org_id=ORG, device_id=DEVICE
        )


def test_a_receipt_whose_checkpoint_does_not_hold_its_items_is_refused() -> None:
    """PROTOCOL §17.4 item 1: the batch proof must put every item in the checkpoint's tree."""
    honest = receipt()
    other = (ReceiptItem(bytes([9]) * 32, 2, 17), ITEMS[1])
    _refused(Receipt(ORG, DEVICE, 1, other, honest.checkpoint, honest.proof))  # another id
    moved = (ReceiptItem(ITEMS[0].envelope_id, 2, 16), ITEMS[1])
    _refused(Receipt(ORG, DEVICE, 1, moved, honest.checkpoint, honest.proof))  # another seq
    _refused(Receipt(ORG, DEVICE, 1, ITEMS, honest.checkpoint, honest.proof[1:]))  # truncated
    _refused(Receipt(ORG, DEVICE, 1, ITEMS, honest.checkpoint, (*honest.proof, bytes(32))))
    _refused(Receipt(ORG, DEVICE, 1, ITEMS, honest.checkpoint, ()))


def test_a_receipt_whose_checkpoint_is_not_the_servers_for_this_org_is_refused() -> None:
    """PROTOCOL §17.2: the checkpoint is signed by the pinned server key, for this org."""
    _refused(receipt(org=bytes(16)))
    _refused(receipt(key=SigningKey(bytes([3]) * 32)))
    honest = receipt()
    _refused(Receipt(ORG, DEVICE, 1, ITEMS, b"not a checkpoint", honest.proof))


def test_a_receipt_listing_a_seq_beyond_its_checkpoint_is_refused() -> None:
    """PROTOCOL §17.3: an item's leaf ``server_seq - 1`` lies inside the checkpoint's tree."""
    small = logged((ITEMS[0],), size=17)
    _refused(Receipt(ORG, DEVICE, 1, ITEMS, *small))
    twice = (ITEMS[0], ReceiptItem(bytes([8]) * 32, 3, 17))
    _refused(Receipt(ORG, DEVICE, 1, twice, *logged((ITEMS[0],))))


def test_a_receipt_with_nothing_held_carries_no_proof() -> None:
    """PROTOCOL §8.4: an empty batch still gets a receipt, with its checkpoint and no proof."""
    empty = receipt(())
    verified = Receipt.verify(
        empty.sign(SERVER).to_bytes(), SERVER.verify_key, org_id=ORG, device_id=DEVICE
    )
    assert verified.items == () and verified.proof == ()
    _refused(Receipt(ORG, DEVICE, 1, (), empty.checkpoint, (bytes(32),)))
