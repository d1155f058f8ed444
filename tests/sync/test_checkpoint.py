"""Signed checkpoints of the organisation log (PROTOCOL §3; docs/_draft_tlog.md, §17).

A checkpoint is what a device keeps and compares: it must be unforgeable by anyone but the
pinned server key, bound to one organisation, refused if malformed, and two of one size with
different roots must read as a fork.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crypto import Purpose, SigningKey, VerificationFailed, digest, sign_document
from sync.checkpoint import Checkpoint, is_fork
from sync.merkle import EMPTY_ROOT, MAX_TREE_SIZE, leaf_hash, root_of

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
h = bytes.fromhex

SERVER = SigningKey(bytes([1]) * 32)
ORG = bytes(range(16))
ROOT = root_of([leaf_hash(bytes([i]) * 32) for i in range(5)])


def checkpoint(size: int = 5, root: bytes = ROOT, org: bytes = ORG) -> Checkpoint:
    return Checkpoint(org, size, root, 1_780_000_000)


@pytest.mark.parametrize(
    "vector",
    json.loads((VECTORS / "checkpoint_v1.json").read_text(encoding="utf-8"))["vectors"],
)
def test_checkpoint_vectors_reproduce_and_verify(vector: dict) -> None:
    """PROTOCOL §3, §17: the recorded checkpoint reproduces byte for byte, verifies, and
    its signed-message digest, code digest and short code are as recorded."""
    inputs = vector["inputs"]
    server = SigningKey(h(inputs["server_seed"]))
    cp = Checkpoint(h(inputs["org"]), inputs["size"], h(inputs["root"]), inputs["issued_at"])
    document = cp.sign(server)
    assert document.body.hex() == vector["body"]
    assert document.to_bytes().hex() == vector["document"]
    assert digest(Purpose.CHECKPOINT_SIGNATURE, document.body).hex() == vector["digest"]
    message = cp.org_id + cp.size.to_bytes(8, "big") + cp.root
    assert digest(Purpose.CHECKPOINT_CODE, message).hex() == vector["code_digest"]
    assert cp.short_code() == vector["short_code"]
    assert Checkpoint.verify(h(vector["document"]), server.verify_key, org_id=cp.org_id) == cp
    assert Checkpoint.size_of(h(vector["document"])) == cp.size


def test_checkpoint_root_matches_the_merkle_vector() -> None:
    """The vector's 13-leaf root is merkle_v1.json's, so the two files describe one log."""
    merkle = json.loads((VECTORS / "merkle_v1.json").read_text(encoding="utf-8"))["vectors"][0]
    signed = json.loads((VECTORS / "checkpoint_v1.json").read_text(encoding="utf-8"))["vectors"]
    assert signed[0]["inputs"]["root"] == merkle["roots"][13]
    assert signed[1]["inputs"]["root"] == EMPTY_ROOT.hex()


def test_only_the_pinned_server_key_verifies() -> None:
    data = checkpoint().sign(SERVER).to_bytes()
    assert Checkpoint.verify(data, SERVER.verify_key, org_id=ORG) == checkpoint()
    other = SigningKey(bytes([2]) * 32)
    with pytest.raises(VerificationFailed):
        Checkpoint.verify(data, other.verify_key, org_id=ORG)
    with pytest.raises(VerificationFailed):
        Checkpoint.verify(checkpoint().sign(other).to_bytes(), SERVER.verify_key, org_id=ORG)


def test_another_organisations_checkpoint_is_refused() -> None:
    data = checkpoint(org=bytes(16)).sign(SERVER).to_bytes()
    with pytest.raises(VerificationFailed):
        Checkpoint.verify(data, SERVER.verify_key, org_id=ORG)


def test_a_receipt_or_roster_signature_never_verifies_as_a_checkpoint() -> None:
    """PROTOCOL §1.2, §3.1: the purpose is bound; the same body signed as a receipt fails."""
    body = checkpoint().to_cbor()
    for purpose in (Purpose.RECEIPT_SIGNATURE, Purpose.ROSTER_SIGNATURE):
        data = sign_document(purpose, body, SERVER).to_bytes()
        with pytest.raises(VerificationFailed):
            Checkpoint.verify(data, SERVER.verify_key, org_id=ORG)
    document = checkpoint().sign(SERVER)
    relabelled = type(document)(
        Purpose.RECEIPT_SIGNATURE, document.body, document.signer, document.signature
    )
    with pytest.raises(VerificationFailed):
        Checkpoint.verify(relabelled.to_bytes(), SERVER.verify_key, org_id=ORG)


@pytest.mark.parametrize(
    "body",
    [
        {"o": ORG, "n": 5, "r": ROOT},
        {"o": ORG, "n": 5, "r": ROOT, "t": 1, "x": 0},
        {"o": ORG[:15], "n": 5, "r": ROOT, "t": 1},
        {"o": ORG, "n": -1, "r": ROOT, "t": 1},
        {"o": ORG, "n": MAX_TREE_SIZE + 1, "r": ROOT, "t": 1},
        {"o": ORG, "n": True, "r": ROOT, "t": 1},
        {"o": ORG, "n": 5, "r": ROOT[:31], "t": 1},
        {"o": ORG, "n": 5, "r": ROOT, "t": -1},
        {"o": ORG, "n": 5, "r": ROOT, "t": "1"},
        {"o": ORG, "n": 0, "r": ROOT, "t": 1},  # the empty tree has one root
        [ORG, 5, ROOT, 1],
    ],
)
def test_malformed_bodies_are_refused_even_when_signed(body: object) -> None:
    data = sign_document(Purpose.CHECKPOINT_SIGNATURE, body, SERVER).to_bytes()
    with pytest.raises(VerificationFailed):
        Checkpoint.verify(data, SERVER.verify_key, org_id=ORG)
    with pytest.raises(VerificationFailed):
        Checkpoint.size_of(data)


def test_a_malformed_checkpoint_cannot_be_built() -> None:
    for args in [(ORG, 0, ROOT, 1), (ORG[:8], 1, ROOT, 1), (ORG, 1, ROOT, -5)]:
        with pytest.raises(ValueError):
            Checkpoint(*args)


@given(st.binary(max_size=300))
def test_garbage_never_verifies(data: bytes) -> None:
    with pytest.raises(VerificationFailed):
        Checkpoint.verify(data, SERVER.verify_key, org_id=ORG)


def test_fork_is_same_org_and_size_with_different_roots() -> None:
    a = checkpoint()
    assert is_fork(a, checkpoint(root=bytes(32)))
    assert not is_fork(a, a)
    assert not is_fork(a, Checkpoint(ORG, 5, ROOT, 1_790_000_000))  # re-issued later
    assert not is_fork(a, checkpoint(size=6, root=bytes(32)))  # needs a consistency proof
    assert not is_fork(a, checkpoint(org=bytes(16), root=bytes(32)))


def test_short_code_shape_and_what_it_binds() -> None:
    code = checkpoint().short_code()
    size, digits = code.split(":")
    assert size == "5" and len(digits) == 19 and digits.count("-") == 3
    assert digits.replace("-", "").isdigit()
    assert Checkpoint(ORG, 5, ROOT, 1).short_code() == code  # the time is not in the code
    assert checkpoint(root=bytes(32)).short_code() != code
    assert checkpoint(org=bytes(16)).short_code() != code
    assert checkpoint(size=6).short_code().split(":")[1] != digits
