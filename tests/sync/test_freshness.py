"""Roster freshness statements (PROTOCOL §3, §18): coordinator-signed, short-lived, bound to
one roster version; refused when signed by anyone else or for another version."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crypto import Purpose, SigningKey, VerificationFailed, digest, sign_document
from sync.freshness import DEFAULT_HORIZON, MAX_LIFETIME, MAX_SKEW, Freshness
from sync.roster import SignedRoster

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
h = bytes.fromhex
_ROSTER = json.loads((VECTORS / "roster_v1.json").read_text(encoding="utf-8"))["vectors"][0]
CHAIN = [SignedRoster.parse(h(v["signed"])) for v in _ROSTER["chain"]]
COORDINATOR_0 = SigningKey(h(_ROSTER["inputs"]["coordinator_seeds"][0]))
FIELD = SigningKey(h(_ROSTER["inputs"]["field_seed"]))
T = 1_780_000_000


@pytest.mark.parametrize(
    "vector",
    json.loads((VECTORS / "freshness_v1.json").read_text(encoding="utf-8"))["vectors"],
)
def test_freshness_vectors_reproduce_verify_and_age(vector: dict) -> None:
    """PROTOCOL §3, §18: the recorded statement reproduces byte for byte, verifies against
    the roster version it names and no other, and is fresh exactly at the recorded times."""
    inputs = vector["inputs"]
    roster = CHAIN[inputs["version"] - 1]
    statement = Freshness(
        h(inputs["org"]),
        inputs["version"],
        h(inputs["fingerprint"]),
        inputs["issued_at"],
        inputs["expires_at"],
    )
    assert statement == Freshness.issue(
        roster, now=inputs["issued_at"], lifetime=inputs["expires_at"] - inputs["issued_at"]
    )
    document = statement.sign(SigningKey(h(inputs["signer_seed"])))
    assert document.body.hex() == vector["body"]
    assert document.to_bytes().hex() == vector["document"]
    assert digest(Purpose.FRESHNESS_SIGNATURE, document.body).hex() == vector["digest"]
    assert Freshness.verify(h(vector["document"]), CHAIN[vector["verifies_against"] - 1]) == (
        statement
    )
    for other in vector["refused_against"]:
        with pytest.raises(VerificationFailed):
            Freshness.verify(h(vector["document"]), CHAIN[other - 1])
    for check in vector["fresh_at"]:
        assert statement.is_fresh(check["now"], check["horizon"]) is check["fresh"], check


def test_only_an_active_coordinator_of_the_named_version_signs_a_statement() -> None:
    """PROTOCOL §18.1: a field device's statement, or one by a key not in the version, fails."""
    roster = CHAIN[1]
    statement = Freshness.issue(roster, now=T)
    assert Freshness.verify(statement.sign(COORDINATOR_0).to_bytes(), roster) == statement
    for key in (FIELD, SigningKey(bytes([9]) * 32)):
        with pytest.raises(VerificationFailed):
            Freshness.verify(statement.sign(key).to_bytes(), roster)


def test_a_roster_or_checkpoint_signature_never_verifies_as_a_statement() -> None:
    """PROTOCOL §1.2, §3.1: the same body signed for another purpose is refused."""
    body = Freshness.issue(CHAIN[1], now=T).to_cbor()
    for purpose in (Purpose.ROSTER_SIGNATURE, Purpose.CHECKPOINT_SIGNATURE):
        with pytest.raises(VerificationFailed):
            Freshness.verify(sign_document(purpose, body, COORDINATOR_0).to_bytes(), CHAIN[1])


@pytest.mark.parametrize(
    "change",
    [
        {"x": T},  # expires when issued
        {"x": T + MAX_LIFETIME + 1},  # too long-lived
        {"t": -1},
        {"v": 0},
        {"h": b"\x00" * 31},
        {"o": b"\x00" * 15},
        {"extra": 1},
    ],
)
def test_malformed_statements_are_refused_even_when_signed(change: dict) -> None:
    """PROTOCOL §18.1: exactly the five keys, with their types and ranges."""
    body = {**Freshness.issue(CHAIN[1], now=T).to_cbor(), **change}
    document = sign_document(Purpose.FRESHNESS_SIGNATURE, body, COORDINATOR_0).to_bytes()
    with pytest.raises(VerificationFailed):
        Freshness.verify(document, CHAIN[1])
    with pytest.raises(VerificationFailed):
        Freshness.peek(document)


def test_garbage_never_verifies() -> None:
    for data in (b"", b"\xa0", bytes(100), CHAIN[1].to_bytes()):
        with pytest.raises(VerificationFailed):
            Freshness.verify(data, CHAIN[1])


def test_freshness_is_a_window_bounded_by_expiry_horizon_and_skew() -> None:
    """PROTOCOL §18.3: fresh while now < x and -MAX_SKEW <= now - t < horizon."""
    s = Freshness.issue(CHAIN[1], now=T, lifetime=3 * 86400)
    assert s.is_fresh(T) and s.is_fresh(T - MAX_SKEW) and not s.is_fresh(T - MAX_SKEW - 1)
    assert s.is_fresh(T + 3 * 86400 - 1) and not s.is_fresh(T + 3 * 86400)  # expiry first
    long = Freshness.issue(CHAIN[1], now=T)
    assert long.is_fresh(T + DEFAULT_HORIZON - 1) and not long.is_fresh(T + DEFAULT_HORIZON)
    assert long.is_fresh(T + 100, horizon=101) and not long.is_fresh(T + 100, horizon=100)
