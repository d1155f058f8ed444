"""Known-answer vectors for every crypto format, read from tests/vectors/*.json on every run.

The files are produced by tests/vectors/generate.py from fixed inputs; these tests never run
the generator, they check the code against the committed bytes, so any change to a format
fails here until the vectors are deliberately regenerated (and docs/PROTOCOL.md updated).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from crypto import (
    ChainKey,
    KemPrivateKey,
    KeyCommitmentMismatch,
    MessageKey,
    Purpose,
    SigningKey,
    VerificationFailed,
    VerifyKey,
    digest,
    manifest_of,
    message_key_at,
    open_chunks,
    open_revision,
    open_sender_key,
    parse_envelope,
    seal_chunks,
    unwrap_keyfile,
    wrap_keyfile,
)
from crypto.encoding import CanonicalError, decode, encode
from crypto.envelope import Header, _finish, _seal_revision_from_parts
from crypto.keyfile import KdfParams
from crypto.padding import pad, padded_length, padme, unpad

VECTORS = Path(__file__).resolve().parent.parent / "vectors"


def load(name: str) -> list[dict[str, Any]]:
    document = json.loads((VECTORS / name).read_text(encoding="utf-8"))
    vectors = document["vectors"]
    assert vectors, f"{name} holds no vectors"
    return vectors


def vector_params(name: str) -> Any:
    """Parametrize a test over the vectors of one file (pyca's json_parametrize habit)."""
    vectors = load(name)
    return pytest.mark.parametrize(
        "vector", vectors, ids=[f"{name}[{i}]" for i in range(len(vectors))]
    )


h = bytes.fromhex


# --- keys ---------------------------------------------------------------------------------


@vector_params("keys_v1.json")
def test_key_vectors(vector: dict[str, Any]) -> None:
    """PROTOCOL §1.1, §1.2, §2: public keys and key ids from seeds; tagged signatures."""
    if vector["type"] == "ed25519":
        key = SigningKey(h(vector["seed"]))
        assert key.verify_key.raw.hex() == vector["public"]
        assert key.verify_key.key_id.hex() == vector["key_id"]
        purpose = Purpose(vector["purpose"].encode())
        message = h(vector["message"])
        assert key.sign(purpose, message).hex() == vector["signature"]
        VerifyKey(h(vector["public"])).verify(purpose, message, h(vector["signature"]))
        other = next(p for p in Purpose if p is not purpose)
        with pytest.raises(VerificationFailed):
            VerifyKey(h(vector["public"])).verify(other, message, h(vector["signature"]))
    else:
        kem = KemPrivateKey(h(vector["seed"]))
        assert kem.public_key.raw.hex() == vector["public"]
        assert kem.public_key.key_id.hex() == vector["key_id"]


# --- canonical CBOR and padding --------------------------------------------------------------


@vector_params("cbor_v1.json")
def test_cbor_vectors(vector: dict[str, Any]) -> None:
    """PROTOCOL §2.1: exactly the canonical encodings decode; they re-encode to the same bytes."""
    data = h(vector["encoded"])
    if vector["valid"]:
        assert encode(decode(data)) == data
    else:
        with pytest.raises(CanonicalError):
            decode(data)


@vector_params("padding_v1.json")
def test_padding_vectors(vector: dict[str, Any]) -> None:
    """PROTOCOL §2.2: Padmé buckets, the 256-byte floor and the 0x80 0x00* marker."""
    if "content_length" in vector:
        assert padme(vector["content_length"]) == vector["padme"]
        assert padded_length(vector["content_length"]) == vector["padded_length"]
    else:
        assert pad(h(vector["content"])).hex() == vector["padded"]
        assert unpad(h(vector["padded"])).hex() == vector["content"]


# --- the sender-key chain and envelopes -------------------------------------------------------


@vector_params("chain_v1.json")
def test_chain_vectors(vector: dict[str, Any]) -> None:
    """PROTOCOL §4.3: MK_i = HMAC(CK_(i-1), message tag), CK_i = HMAC(CK_(i-1), next tag)."""
    ck0 = ChainKey(h(vector["chain_key"]))
    chain = ck0
    for step in vector["steps"]:
        assert message_key_at(ck0, step["index"]).raw.hex() == step["message_key"]
        if "next_chain_key" in step:
            message, chain = chain.advance()
            assert message.raw.hex() == step["message_key"]
            assert chain.raw.hex() == step["next_chain_key"]


@vector_params("envelope_v1.json")
def test_revision_envelope_vectors(vector: dict[str, Any]) -> None:
    """PROTOCOL §4.1, §4.2, §4.4: sealing fixed inputs reproduces the recorded bytes exactly."""
    inputs = vector["inputs"]
    message_key = message_key_at(
        ChainKey(h(inputs["chain_key"])), inputs["seq"] - inputs["key_seq"]
    )
    assert message_key.raw.hex() == inputs["message_key"]
    signing_key = SigningKey(h(inputs["signing_seed"]))
    envelope = _seal_revision_from_parts(
        org=h(inputs["org"]),
        report=h(inputs["report"]),
        parents=[h(p) for p in inputs["parents"]],
        seq=inputs["seq"],
        prev=h(inputs["prev"]),
        roster_version=inputs["roster_version"],
        key_seq=inputs["key_seq"],
        message_key=message_key,
        content=h(inputs["content"]),
        signing_key=signing_key,
        nonce=h(inputs["nonce"]),
        witness=h(inputs["witness"]),
    )
    assert envelope.header_bytes.hex() == vector["header"]
    assert envelope.header_hash.hex() == vector["header_hash"]
    assert envelope.body.hex() == vector["body"]
    assert envelope.signature.hex() == vector["signature"]
    assert envelope.id.hex() == vector["id"]
    assert envelope.to_bytes().hex() == vector["envelope"]


@vector_params("envelope_v1.json")
def test_revision_envelope_vectors_open(vector: dict[str, Any]) -> None:
    """PROTOCOL §4.5: the recorded bytes parse, verify and open to the recorded content."""
    inputs = vector["inputs"]
    parsed = parse_envelope(h(vector["envelope"]))
    assert parsed.id.hex() == vector["id"]
    assert parsed.header.seq == inputs["seq"] and parsed.header.key_seq == inputs["key_seq"]
    assert [p.hex() for p in parsed.header.parents] == sorted(inputs["parents"])
    assert parsed.header.witness is not None and parsed.header.witness.hex() == inputs["witness"]
    author = SigningKey(h(inputs["signing_seed"])).verify_key
    content = open_revision(parsed, author=author, message_key=MessageKey(h(inputs["message_key"])))
    assert content.hex() == inputs["content"]
    assert len(parsed.body) == padded_length(len(content)) + 16


@vector_params("sender_key_v1.json")
def test_sender_key_vectors_open_to_recorded_chain_key(vector: dict[str, Any]) -> None:
    """PROTOCOL §4.3, §4.5: every listed coordinator opens the recorded wrap to the recorded
    CK0, the one the header's `m` commits to; in the equivocating vector, a coordinator whose
    wrap holds another key gets a key-commitment mismatch, never a key."""
    inputs = vector["inputs"]
    parsed = parse_envelope(h(vector["envelope"]))
    assert parsed.id.hex() == vector["id"]
    assert parsed.header.commitment is not None
    assert parsed.header.commitment.hex() == vector["key_commitment"]
    assert digest(Purpose.KEY_COMMITMENT, h(inputs["chain_key"])).hex() == vector["key_commitment"]
    author = SigningKey(h(inputs["signing_seed"])).verify_key
    recipients = [KemPrivateKey(h(s)) for s in inputs["recipient_seeds"]]
    assert sorted(r.public_key.key_id.hex() for r in recipients) == vector["recipient_ids"]
    expected = vector.get("opens", [True] * len(recipients))
    for recipient, opens in zip(recipients, expected, strict=True):
        if opens:
            chain_key = open_sender_key(parsed, author=author, recipient=recipient)
            assert chain_key.raw.hex() == inputs["chain_key"]
        else:
            with pytest.raises(KeyCommitmentMismatch):
                open_sender_key(parsed, author=author, recipient=recipient)
    stranger = KemPrivateKey(bytes(32))
    with pytest.raises(VerificationFailed):
        open_sender_key(parsed, author=author, recipient=stranger)


@vector_params("sender_key_v1.json")
def test_sender_key_vectors_deterministic_parts_reproduce(vector: dict[str, Any]) -> None:
    """PROTOCOL §4.1, §4.4: header bytes, id and signature over the recorded wraps reproduce."""
    inputs = vector["inputs"]
    signing_key = SigningKey(h(inputs["signing_seed"]))
    recipients = [KemPrivateKey(h(s)).public_key for s in inputs["recipient_seeds"]]
    header = Header(
        kind="key",
        org=h(inputs["org"]),
        device=signing_key.verify_key.key_id,
        seq=inputs["seq"],
        prev=h(inputs["prev"]),
        roster_version=inputs["roster_version"],
        recipients=tuple(sorted(r.key_id for r in recipients)),
        commitment=digest(Purpose.KEY_COMMITMENT, h(inputs["chain_key"])),
    )
    assert header.to_cbor().hex() == vector["header"]
    recorded = parse_envelope(h(vector["envelope"]))
    assert recorded.header_hash.hex() == vector["header_hash"]
    rebuilt = _finish(header.to_cbor(), recorded.body, signing_key)
    assert rebuilt.to_bytes().hex() == vector["envelope"]
    wraps = decode(recorded.body)
    assert len(wraps) == len(recipients)
    assert all(len(w) == 1120 + 32 + 16 for w in wraps)  # X-Wing enc || CK0 || tag


# --- local key files ----------------------------------------------------------------------


@vector_params("keyfile_v1.json")
def test_keyfile_vectors(vector: dict[str, Any]) -> None:
    """PROTOCOL §12: fixed salt and nonce reproduce the file; the recorded file opens."""
    params = KdfParams(
        memory_cost=vector["params"]["m"],
        iterations=vector["params"]["t"],
        lanes=vector["params"]["p"],
    )
    blob = wrap_keyfile(
        h(vector["secret"]),
        h(vector["passphrase"]),
        params=params,
        salt=h(vector["salt"]),
        nonce=h(vector["nonce"]),
    )
    assert blob.hex() == vector["keyfile"]
    assert unwrap_keyfile(h(vector["keyfile"]), h(vector["passphrase"])).hex() == vector["secret"]


# --- attachment chunks ------------------------------------------------------------------------


@vector_params("stream_v1.json")
def test_stream_vectors(vector: dict[str, Any]) -> None:
    """PROTOCOL §13: fixed key, id and data reproduce the chunks and manifest; they open."""
    key, attachment_id = h(vector["key"]), h(vector["attachment_id"])
    chunk_size = vector["chunk_size"]
    chunks = list(seal_chunks(key, attachment_id, [h(vector["plaintext"])], chunk_size=chunk_size))
    assert [c.hex() for c in chunks] == vector["chunks"]
    manifest = manifest_of(chunks, chunk_size=chunk_size)
    assert manifest.chunk_count == vector["chunk_count"]
    assert manifest.total_size == vector["total_size"]
    assert manifest.sha256.hex() == vector["sha256"]
    recorded = [h(c) for c in vector["chunks"]]
    opened = b"".join(
        open_chunks(key, attachment_id, recorded, chunk_size=chunk_size, expected=manifest)
    )
    assert opened.hex() == vector["plaintext"]


def test_every_committed_vector_file_is_checked() -> None:
    """Every JSON file under tests/vectors/ is read by a test somewhere under tests/ (crypto's
    here, the roster, invite and receipt files in tests/sync/, the bundle in tests/evidence/),
    so no vector silently goes stale."""
    sources = sorted((Path(__file__).parent.parent).rglob("test_*.py"))
    text = "".join(p.read_text(encoding="utf-8") for p in sources)
    files = sorted(p.name for p in VECTORS.glob("*.json"))
    assert files, "no vectors committed"
    assert [f for f in files if f'"{f}"' not in text] == []
