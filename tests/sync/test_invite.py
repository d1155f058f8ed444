"""Invites, invite codes, enrollments and sealed device labels (PROTOCOL §6)."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crypto import KemPrivateKey, Purpose, SigningKey, VerificationFailed, encoding, sign_document
from crypto.signed import SignedDocument
from sync.invite import (
    INVITE_CODE_PREFIX,
    Enrollment,
    Invite,
    InviteCode,
    InviteError,
    open_label,
    seal_label,
    secret_hash,
)
from sync.roster import Role

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
h = bytes.fromhex

COORDINATOR = SigningKey(bytes([1]) * 32)
DEVICE = SigningKey(bytes([2]) * 32)
ORG = bytes(range(16))
FINGERPRINT = bytes(range(32))


def make_invite(
    role: Role = Role.FIELD, random: bytes | None = None
) -> tuple[SignedDocument, InviteCode]:
    return Invite.create(
        org_id=ORG,
        role=role,
        expires_at=1_800_000_000,
        roster_fingerprint=FINGERPRINT,
        server_url="https://sealbox.example.org",
        signing_key=COORDINATOR,
        random=random,
    )


def test_invite_vectors_reproduce_and_verify() -> None:
    """PROTOCOL §3, §6: fixed randomness reproduces invite, code, label and enrollment bytes."""
    (vector,) = json.loads((VECTORS / "invite_v1.json").read_text(encoding="utf-8"))["vectors"]
    inputs = vector["inputs"]
    coordinator = SigningKey(h(inputs["coordinator_seed"]))
    device = SigningKey(h(inputs["device_seed"]))
    document, code = Invite.create(
        org_id=h(inputs["org"]),
        role=Role(inputs["role"]),
        expires_at=inputs["expires_at"],
        roster_fingerprint=h(inputs["roster_fingerprint"]),
        server_url=inputs["server_url"],
        signing_key=coordinator,
        random=h(inputs["random"]),
    )
    assert document.to_bytes().hex() == vector["invite_document"]
    assert code.encode() == vector["code"]
    assert code.invite_id.hex() == vector["invite_id"] and code.secret.hex() == vector["secret"]
    assert secret_hash(code.secret).hex() == vector["secret_hash"]
    label = seal_label(
        inputs["label"],
        secret=code.secret,
        invite_id=code.invite_id,
        device_id=device.verify_key.key_id,
        nonce=h(inputs["label_nonce"]),
    )
    assert label.hex() == vector["sealed_label"]
    enrollment = Enrollment(h(inputs["org"]), code.invite_id, device.verify_key, Role.FIELD, label)
    assert enrollment.sign(device).to_bytes().hex() == vector["enrollment_document"]

    # And the recorded bytes verify and open.
    parsed = SignedDocument.parse(h(vector["invite_document"]), Purpose.INVITE_SIGNATURE)
    invite = Invite.verify(parsed, coordinator.verify_key)
    assert invite.secret_hash == secret_hash(InviteCode.decode(vector["code"]).secret)
    claimed, _ = Enrollment.parse_and_verify(h(vector["enrollment_document"]))
    assert claimed.matches(invite) and claimed.device_id == device.verify_key.key_id
    opened = open_label(
        claimed.sealed_label,
        secret=h(vector["secret"]),
        invite_id=claimed.invite_id,
        device_id=claimed.device_id,
    )
    assert opened == inputs["label"]


# --- invite codes ------------------------------------------------------------------------------


@given(
    url=st.text(min_size=1, max_size=80),
    org=st.binary(min_size=16, max_size=16),
    fingerprint=st.binary(min_size=32, max_size=32),
    invite_id=st.binary(min_size=16, max_size=16),
    secret=st.binary(min_size=32, max_size=32),
)
def test_invite_code_round_trips(
    url: str, org: bytes, fingerprint: bytes, invite_id: bytes, secret: bytes
) -> None:
    """PROTOCOL §6.2: encode then decode gives the same code; it is one printable line."""
    code = InviteCode(url, org, fingerprint, invite_id, secret)
    text = code.encode()
    assert text.startswith(INVITE_CODE_PREFIX) and text.isascii() and text.isprintable()
    assert " " not in text and "=" not in text
    assert InviteCode.decode(text) == code


def test_invite_code_survives_line_breaks_and_spaces() -> None:
    """PROTOCOL §6.2: a code copied with wrapping whitespace still decodes."""
    _, code = make_invite()
    text = code.encode()
    wrapped = "\n".join(text[i : i + 20] for i in range(0, len(text), 20))
    assert InviteCode.decode("  " + wrapped.replace("\n", " \n ") + "\n") == code


@pytest.mark.parametrize(
    "damage",
    [
        lambda t: t[len(INVITE_CODE_PREFIX) :],
        lambda t: "sbx2:" + t[len(INVITE_CODE_PREFIX) :],
        lambda t: t[:-10],
        lambda t: t[:20],
        lambda t: t + "AAAA",
        lambda t: t[:12] + "!" + t[13:],
        lambda t: INVITE_CODE_PREFIX,
        lambda t: "",
    ],
    ids=[
        "no-prefix",
        "wrong-version",
        "truncated",
        "very-short",
        "extended",
        "bad-char",
        "empty-body",
        "empty",
    ],
)
def test_invite_code_structural_damage_is_detected(damage) -> None:
    """PROTOCOL §6.2: a truncated, extended or mangled code fails with InviteError, not garbage."""
    _, code = make_invite()
    with pytest.raises(InviteError):
        InviteCode.decode(damage(code.encode()))


@pytest.mark.parametrize(
    "fields",
    [
        ["https://x", bytes(16), bytes(32), bytes(16)],
        ["https://x", bytes(16), bytes(32), bytes(16), bytes(32), 1],
        ["https://x", bytes(15), bytes(32), bytes(16), bytes(32)],
        ["https://x", bytes(16), bytes(31), bytes(16), bytes(32)],
        ["https://x", bytes(16), bytes(32), bytes(17), bytes(32)],
        ["https://x", bytes(16), bytes(32), bytes(16), bytes(33)],
        [b"https://x", bytes(16), bytes(32), bytes(16), bytes(32)],
        {"u": "https://x"},
    ],
)
def test_invite_code_wrong_shape_is_detected(fields) -> None:
    """PROTOCOL §6.2: a code must hold exactly [url, org16, fingerprint32, id16, secret32]."""
    text = INVITE_CODE_PREFIX + base64.urlsafe_b64encode(encoding.encode(fields)).decode().rstrip(
        "="
    )
    with pytest.raises(InviteError):
        InviteCode.decode(text)


@given(data=st.data())
def test_damaged_code_never_enrolls_silently(data: st.DataObject) -> None:
    """PROTOCOL §6.2-§6.4: any one-character change either fails to decode or changes a field
    that a later check catches (the server's secret hash, the roster pin, the org or invite id),
    or only hits base64 padding bits and decodes to the identical code."""
    document, code = make_invite(random=bytes(range(48)))
    invite = Invite.verify(document, COORDINATOR.verify_key)
    text = code.encode()
    position = data.draw(st.integers(len(INVITE_CODE_PREFIX), len(text) - 1))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    replacement = data.draw(st.sampled_from(alphabet).filter(lambda c: c != text[position]))
    damaged = text[:position] + replacement + text[position + 1 :]
    try:
        decoded = InviteCode.decode(damaged)
    except InviteError:
        return
    if decoded == code:
        assert position == len(text) - 1  # only the unused low bits of the last character
        return
    caught = (
        secret_hash(decoded.secret) != invite.secret_hash
        or decoded.roster_fingerprint != invite.roster_fingerprint
        or decoded.org_id != invite.org_id
        or decoded.invite_id != invite.invite_id
        or decoded.server_url != code.server_url  # points at a server that does not know it
    )
    assert caught


# --- invite documents ------------------------------------------------------------------------


def test_invite_document_binds_secret_by_hash_only() -> None:
    """PROTOCOL §6.1: the document (and so the server) holds SHA-256(tag || secret), not it."""
    document, code = make_invite()
    assert code.secret not in document.to_bytes()
    invite = Invite.verify(document, COORDINATOR.verify_key)
    assert invite.secret_hash == secret_hash(code.secret) != code.secret
    assert (invite.org_id, invite.invite_id, invite.role) == (ORG, code.invite_id, Role.FIELD)
    assert invite.roster_fingerprint == code.roster_fingerprint == FINGERPRINT


def test_invite_random_ids_and_secrets_are_fresh() -> None:
    """PROTOCOL §6.1: every invite draws a new id and secret."""
    codes = [make_invite()[1] for _ in range(5)]
    assert len({c.invite_id for c in codes}) == 5 and len({c.secret for c in codes}) == 5


def test_invite_verify_refuses_other_signer_and_purpose() -> None:
    """PROTOCOL §3.1, §6.4: an invite verifies only against its coordinator, only as an invite."""
    document, _ = make_invite()
    with pytest.raises(VerificationFailed):
        Invite.verify(document, DEVICE.verify_key)
    as_roster = sign_document(
        Purpose.ROSTER_SIGNATURE,
        Invite.from_cbor(document.unverified_body()).to_cbor(),
        COORDINATOR,
    )
    with pytest.raises(VerificationFailed):
        SignedDocument.parse(as_roster.to_bytes(), Purpose.INVITE_SIGNATURE)


@given(data=st.data())
def test_invite_document_bit_flip_is_refused(data: st.DataObject) -> None:
    """PROTOCOL §3.1: any flipped bit in the invite document fails to parse or verify."""
    document, _ = make_invite()
    raw = bytearray(document.to_bytes())
    bit = data.draw(st.integers(0, len(raw) * 8 - 1))
    raw[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises((VerificationFailed, InviteError)):
        Invite.verify(
            SignedDocument.parse(bytes(raw), Purpose.INVITE_SIGNATURE), COORDINATOR.verify_key
        )


# --- enrollments ----------------------------------------------------------------------------


def make_enrollment(
    code: InviteCode, role: Role = Role.FIELD, key: SigningKey = DEVICE
) -> Enrollment:
    label = seal_label(
        "phone", secret=code.secret, invite_id=code.invite_id, device_id=key.verify_key.key_id
    )
    return Enrollment(ORG, code.invite_id, key.verify_key, role, label)


def test_enrollment_is_self_signed_and_bound_to_invite() -> None:
    """PROTOCOL §6.3, §6.5: the enrollment verifies with its own key and matches its invite."""
    document, code = make_invite()
    invite = Invite.verify(document, COORDINATOR.verify_key)
    enrollment = make_enrollment(code)
    claimed, _ = Enrollment.parse_and_verify(enrollment.sign(DEVICE).to_bytes())
    assert claimed == enrollment and claimed.matches(invite)
    assert claimed.device_id == DEVICE.verify_key.key_id


@pytest.mark.parametrize("field", ["org", "invite", "role"])
def test_enrollment_for_other_org_invite_or_role_does_not_match(field: str) -> None:
    """PROTOCOL §6.5: binding is by organisation, invite id and role; a field device cannot
    claim the coordinator role through a field invite."""
    document, code = make_invite()
    invite = Invite.verify(document, COORDINATOR.verify_key)
    enrollment = make_enrollment(code)
    changed = {
        "org": replace(enrollment, org_id=bytes(16)),
        "invite": replace(enrollment, invite_id=bytes(16)),
        "role": replace(
            enrollment, role=Role.COORDINATOR, kem_key=KemPrivateKey(bytes(32)).public_key
        ),
    }[field]
    assert not changed.matches(invite)


def test_coordinator_enrollment_carries_its_hpke_key_and_only_it() -> None:
    """PROTOCOL §6.3: a coordinator enrolls with its HPKE key, so it can be admitted (R6);
    a field enrollment carrying one, or a coordinator's without, is malformed."""
    _, code = make_invite()
    kem = KemPrivateKey(bytes(32)).public_key
    with pytest.raises(InviteError):
        make_enrollment(code, role=Role.COORDINATOR)
    with pytest.raises(InviteError):
        Enrollment(ORG, code.invite_id, DEVICE.verify_key, Role.FIELD, b"", kem)
    enrollment = Enrollment(ORG, code.invite_id, DEVICE.verify_key, Role.COORDINATOR, b"", kem)
    claimed, _ = Enrollment.parse_and_verify(enrollment.sign(DEVICE).to_bytes())
    assert claimed.kem_key == kem
    body = enrollment.to_cbor()
    del body["e"]
    stripped = sign_document(Purpose.ENROLLMENT_SIGNATURE, body, DEVICE)
    with pytest.raises(VerificationFailed):
        Enrollment.parse_and_verify(stripped.to_bytes())


def test_enrollment_must_be_signed_by_enrolled_key() -> None:
    """PROTOCOL §6.3: an enrollment signed by another key (a server planting a key) fails."""
    _, code = make_invite()
    enrollment = make_enrollment(code)
    with pytest.raises(ValueError):
        enrollment.sign(COORDINATOR)
    forged = sign_document(Purpose.ENROLLMENT_SIGNATURE, enrollment.to_cbor(), COORDINATOR)
    with pytest.raises(VerificationFailed):
        Enrollment.parse_and_verify(forged.to_bytes())


@given(data=st.data())
def test_enrollment_bit_flip_is_refused(data: st.DataObject) -> None:
    """PROTOCOL §3.1, §6.3: any flipped bit in an enrollment fails with VerificationFailed."""
    _, code = make_invite()
    raw = bytearray(make_enrollment(code).sign(DEVICE).to_bytes())
    bit = data.draw(st.integers(0, len(raw) * 8 - 1))
    raw[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(VerificationFailed):
        Enrollment.parse_and_verify(bytes(raw))


# --- labels --------------------------------------------------------------------------------


@given(label=st.text(max_size=60))
def test_label_round_trips_and_hides_its_length(label: str) -> None:
    """PROTOCOL §6.3: the sealed label opens with the invite secret and is always 284 bytes."""
    secret, invite_id, device_id = bytes([3]) * 32, bytes([4]) * 16, bytes([5]) * 16
    if len(label.encode()) > 200:
        return
    sealed = seal_label(label, secret=secret, invite_id=invite_id, device_id=device_id)
    assert len(sealed) == 12 + 256 + 16
    assert open_label(sealed, secret=secret, invite_id=invite_id, device_id=device_id) == label


def test_label_too_long_is_refused() -> None:
    """PROTOCOL §6.3: labels are at most 200 bytes (they are padded to 256)."""
    with pytest.raises(ValueError):
        seal_label("x" * 201, secret=bytes(32), invite_id=bytes(16), device_id=bytes(16))


@pytest.mark.parametrize("wrong", ["secret", "invite", "device"])
def test_label_bound_to_secret_invite_and_device(wrong: str) -> None:
    """PROTOCOL §6.3: a label opens only under its secret, for its invite and device (a server
    cannot move one device's label onto another's enrollment)."""
    secret, invite_id, device_id = bytes([3]) * 32, bytes([4]) * 16, bytes([5]) * 16
    sealed = seal_label("Amina", secret=secret, invite_id=invite_id, device_id=device_id)
    args = {"secret": secret, "invite_id": invite_id, "device_id": device_id}
    key = {"secret": "secret", "invite": "invite_id", "device": "device_id"}[wrong]
    args[key] = bytes(len(args[key]))
    with pytest.raises(VerificationFailed):
        open_label(sealed, **args)


@given(st.binary(max_size=400))
def test_open_label_garbage_only_raises_verification_failed(sealed: bytes) -> None:
    """PROTOCOL §6.3: arbitrary bytes never open and never raise anything but VerificationFailed."""
    with pytest.raises(VerificationFailed):
        open_label(sealed, secret=bytes(32), invite_id=bytes(16), device_id=bytes(16))
