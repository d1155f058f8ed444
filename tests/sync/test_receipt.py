"""Delivery receipts: the server's signed statement of what it stored (PROTOCOL §3, §8.4).

A device purges a sealed revision only against a receipt it verified, so a receipt must be
unforgeable by anyone but the server key pinned in the roster, and addressed to this device.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crypto import Purpose, SigningKey, VerificationFailed, digest, sign_document
from sync.receipt import Receipt, ReceiptItem

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
h = bytes.fromhex

SERVER = SigningKey(bytes([1]) * 32)
DEVICE = SigningKey(bytes([2]) * 32).verify_key.key_id
ORG = bytes(range(16))
ITEMS = (ReceiptItem(bytes([7]) * 32, 2, 17), ReceiptItem(bytes([8]) * 32, 3, 18))


def signed() -> bytes:
    return Receipt(ORG, DEVICE, 1_780_000_000, ITEMS).sign(SERVER).to_bytes()


def test_receipt_vectors_reproduce_and_verify() -> None:
    """PROTOCOL §3, §8.4: the recorded receipt reproduces byte for byte and verifies."""
    (vector,) = json.loads((VECTORS / "receipt_v1.json").read_text(encoding="utf-8"))["vectors"]
    inputs = vector["inputs"]
    server = SigningKey(h(inputs["server_seed"]))
    items = tuple(ReceiptItem(h(e), d, s) for e, d, s in inputs["items"])
    receipt = Receipt(h(inputs["org"]), h(inputs["device"]), inputs["issued_at"], items)
    document = receipt.sign(server)
    assert document.to_bytes().hex() == vector["document"]
    assert digest(Purpose.RECEIPT_SIGNATURE, document.body).hex() == vector["digest"]
    verified = Receipt.verify(
        h(vector["document"]),
        server.verify_key,
        org_id=h(inputs["org"]),
        device_id=h(inputs["device"]),
    )
    assert verified == receipt


def test_receipt_verifies_and_covers_its_items() -> None:
    """PROTOCOL §8.4: a valid receipt lists exactly the stored envelopes with both sequences."""
    receipt = Receipt.verify(signed(), SERVER.verify_key, org_id=ORG, device_id=DEVICE)
    assert receipt.items == ITEMS
    assert receipt.covers([bytes([7]) * 32]) and receipt.covers([bytes([7]) * 32, bytes([8]) * 32])
    assert not receipt.covers([bytes([9]) * 32])
    assert not receipt.covers([bytes([7]) * 32, bytes([9]) * 32])


def test_receipt_from_another_key_is_refused() -> None:
    """PROTOCOL §8.4: only the server key pinned in the roster signs receipts."""
    forged = Receipt(ORG, DEVICE, 1, ITEMS).sign(SigningKey(bytes([3]) * 32)).to_bytes()
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
    body = Receipt(ORG, DEVICE, 1, ITEMS).to_cbor()
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
    body = {"o": ORG, "d": DEVICE, "t": 1, "i": items}
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
