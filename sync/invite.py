"""Invites and enrollments: how a new device joins an organisation.

Theory of operation (docs/PROTOCOL.md §6):
* A coordinator draws a random invite id (16 bytes) and secret (32 bytes) and
  signs an *invite document* {org, invite id, role, expiry, SHA-256 of the
  secret, roster fingerprint}.  It registers the document with the server,
  which stores only the secret's hash, and hands the *invite code*
  ``sbx1:`` + base64url(CBOR [server url, org id, roster fingerprint, invite id, secret])
  to the new device (text or QR), out of band.
* The device generates its keys and signs an *enrollment document* {org,
  invite id, device key, role, label ciphertext}, and sends it with the secret.
  The server checks the secret against the stored hash, the expiry and single
  use, and records the device as enrolled.
* Readers accept a device either because a roster version lists it or because
  its enrollment is bound (by invite id and role) to an invite signed by an
  active coordinator; coordinators then admit it into the next roster version.
* A coordinator cancels an unused (or leaked) invite with a signed *invite
  cancellation* {org, invite id} (PROTOCOL §6.7): the server then refuses every
  enrollment with it, and coordinators never admit a device enrolled with it,
  whatever the server does.
* The device label ("Amina's phone") is a name: it never reaches the server in
  cleartext.  It is sealed under a key derived from the invite secret, which
  only the inviting coordinator and the device know.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from crypto import (
    KemPublicKey,
    Purpose,
    SignedDocument,
    SigningKey,
    VerificationFailed,
    VerifyKey,
    digest,
    encoding,
    sign_document,
)
from sync.messages import b64decode, b64encode
from sync.roster import Role

__all__ = [
    "INVITE_CODE_PREFIX",
    "Enrollment",
    "Invite",
    "InviteCancel",
    "InviteState",
    "InviteCode",
    "InviteError",
    "invite_state",
    "open_label",
    "seal_label",
    "secret_hash",
]

INVITE_CODE_PREFIX = "sbx1:"
MAX_LABEL_LENGTH = 200
_LABEL_PAD = 256


class InviteError(ValueError):
    """An invite code or document is malformed."""


def secret_hash(secret: bytes) -> bytes:
    """What the server stores instead of an invite secret."""
    return digest(Purpose.INVITE_SECRET, secret)


@dataclass(frozen=True, slots=True)
class InviteCode:
    """What the coordinator hands to the new device, out of band."""

    server_url: str
    org_id: bytes
    roster_fingerprint: bytes
    invite_id: bytes
    secret: bytes

    def encode(self) -> str:
        raw = encoding.encode(
            [self.server_url, self.org_id, self.roster_fingerprint, self.invite_id, self.secret]
        )
        return INVITE_CODE_PREFIX + b64encode(raw)

    @classmethod
    def decode(cls, code: str) -> InviteCode:
        code = "".join(code.split())
        if not code.startswith(INVITE_CODE_PREFIX):
            raise InviteError(f"an invite code starts with {INVITE_CODE_PREFIX!r}")
        body = code[len(INVITE_CODE_PREFIX) :]
        try:
            fields = encoding.decode(b64decode(body))
        except (ValueError, encoding.CanonicalError) as exc:
            raise InviteError("the invite code is damaged; ask for a new one") from exc
        if not (isinstance(fields, list) and len(fields) == 5):
            raise InviteError("the invite code is damaged; ask for a new one")
        url, org, fingerprint, invite_id, secret = fields
        lengths = ((org, 16), (fingerprint, 32), (invite_id, 16), (secret, 32))
        if not isinstance(url, str) or not all(
            isinstance(v, bytes) and len(v) == n for v, n in lengths
        ):
            raise InviteError("the invite code is damaged; ask for a new one")
        return cls(url, org, fingerprint, invite_id, secret)


@dataclass(frozen=True, slots=True)
class Invite:
    """The coordinator-signed invite document."""

    org_id: bytes
    invite_id: bytes
    role: Role
    expires_at: int
    secret_hash: bytes
    roster_fingerprint: bytes

    def to_cbor(self) -> dict[str, Any]:
        return {
            "o": self.org_id,
            "i": self.invite_id,
            "r": str(self.role),
            "x": self.expires_at,
            "h": self.secret_hash,
            "f": self.roster_fingerprint,
        }

    @classmethod
    def from_cbor(cls, raw: Any) -> Invite:
        if not isinstance(raw, dict) or set(raw) != {"o", "i", "r", "x", "h", "f"}:
            raise InviteError("malformed invite")
        try:
            role = Role(raw["r"])
        except ValueError as exc:
            raise InviteError("unknown role") from exc
        if type(raw["x"]) is not int or raw["x"] < 0:
            raise InviteError("malformed expiry")
        for key, n in (("o", 16), ("i", 16), ("h", 32), ("f", 32)):
            if not (isinstance(raw[key], bytes) and len(raw[key]) == n):
                raise InviteError(f"malformed invite field {key}")
        return cls(raw["o"], raw["i"], role, raw["x"], raw["h"], raw["f"])

    @classmethod
    def create(
        cls,
        *,
        org_id: bytes,
        role: Role,
        expires_at: int,
        roster_fingerprint: bytes,
        server_url: str,
        signing_key: SigningKey,
        random: bytes | None = None,
    ) -> tuple[SignedDocument, InviteCode]:
        """Draw an id and secret (``random``: 48 bytes, for vectors) and sign the invite."""
        random = secrets.token_bytes(48) if random is None else random
        invite_id, secret = random[:16], random[16:48]
        invite = cls(org_id, invite_id, role, expires_at, secret_hash(secret), roster_fingerprint)
        document = sign_document(Purpose.INVITE_SIGNATURE, invite.to_cbor(), signing_key)
        return document, InviteCode(server_url, org_id, roster_fingerprint, invite_id, secret)

    @classmethod
    def verify(cls, document: SignedDocument, key: VerifyKey) -> Invite:
        return cls.from_cbor(document.verify(key))


@dataclass(frozen=True, slots=True)
class InviteCancel:
    """A coordinator-signed cancellation of one invite (PROTOCOL §6.7): ``{"o", "i"}``.

    Any active coordinator may cancel any invite of its organisation (the one who made it
    may have lost its laptop).  The body has no time and no nonce, so signing it again
    yields the same bytes: sending it twice is the same request.
    """

    org_id: bytes
    invite_id: bytes

    def to_cbor(self) -> dict[str, Any]:
        return {"o": self.org_id, "i": self.invite_id}

    @classmethod
    def from_cbor(cls, raw: Any) -> InviteCancel:
        if not isinstance(raw, dict) or set(raw) != {"o", "i"}:
            raise InviteError("malformed invite cancellation")
        for key in ("o", "i"):
            if not (isinstance(raw[key], bytes) and len(raw[key]) == 16):
                raise InviteError(f"malformed invite cancellation field {key}")
        return cls(raw["o"], raw["i"])

    def sign(self, signing_key: SigningKey) -> SignedDocument:
        return sign_document(Purpose.INVITE_CANCEL_SIGNATURE, self.to_cbor(), signing_key)

    @classmethod
    def peek(cls, data: bytes) -> tuple[InviteCancel, SignedDocument]:
        """Parse a cancellation without checking its signature (to find the signer's key).

        Raises:
            VerificationFailed: not a signed document of purpose ``"invite-cancel"``, or a
                malformed body.
        """
        document = SignedDocument.parse(data, Purpose.INVITE_CANCEL_SIGNATURE)
        try:
            return cls.from_cbor(document.unverified_body()), document
        except InviteError as exc:
            raise VerificationFailed() from exc

    @classmethod
    def verify(cls, document: SignedDocument, key: VerifyKey) -> InviteCancel:
        """Check the signature with ``key`` (the signer's). Raises VerificationFailed."""
        try:
            return cls.from_cbor(document.verify(key))
        except InviteError as exc:
            raise VerificationFailed() from exc


class InviteState(StrEnum):
    """What became of an invite, as a coordinator lists it (`sealbox invites list`)."""

    CREATED = "created"
    """Registered, not used, not expired: a code that still enrolls whoever holds it."""
    USED = "used"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


def invite_state(invite: Invite, *, used: bool, cancelled: bool, now: int) -> InviteState:
    """The state of ``invite`` at ``now`` (Unix seconds): a cancellation says most, then use,
    then expiry (a used invite that expired since is still `USED`)."""
    if cancelled:
        return InviteState.CANCELLED
    if used:
        return InviteState.USED
    if invite.expires_at <= now:
        return InviteState.EXPIRED
    return InviteState.CREATED


@dataclass(frozen=True, slots=True)
class Enrollment:
    """The device-signed enrollment document (self-signed by the enrolling key)."""

    org_id: bytes
    invite_id: bytes
    signing_key: VerifyKey
    role: Role
    sealed_label: bytes
    kem_key: KemPublicKey | None = None
    """A coordinator enrolls with its HPKE key (and only a coordinator), so it can be admitted."""

    def __post_init__(self) -> None:
        if (self.role is Role.COORDINATOR) != (self.kem_key is not None):
            raise InviteError("a coordinator enrollment, and only one, carries an HPKE key")

    @property
    def device_id(self) -> bytes:
        return self.signing_key.key_id

    def to_cbor(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "o": self.org_id,
            "i": self.invite_id,
            "k": self.signing_key.raw,
            "r": str(self.role),
            "l": self.sealed_label,
        }
        if self.kem_key is not None:
            out["e"] = self.kem_key.raw
        return out

    @classmethod
    def from_cbor(cls, raw: Any) -> Enrollment:
        if not isinstance(raw, dict) or not {"o", "i", "k", "r", "l"} <= set(raw) <= {
            "o",
            "i",
            "k",
            "r",
            "l",
            "e",
        }:
            raise InviteError("malformed enrollment")
        try:
            key = VerifyKey(raw["k"])
            role = Role(raw["r"])
            kem_key = KemPublicKey(raw["e"]) if "e" in raw else None
        except (TypeError, ValueError) as exc:
            raise InviteError("malformed enrollment key or role") from exc
        for name, n in (("o", 16), ("i", 16)):
            if not (isinstance(raw[name], bytes) and len(raw[name]) == n):
                raise InviteError(f"malformed enrollment field {name}")
        if not isinstance(raw["l"], bytes) or len(raw["l"]) > 1024:
            raise InviteError("malformed sealed label")
        return cls(raw["o"], raw["i"], key, role, raw["l"], kem_key)

    def sign(self, signing_key: SigningKey) -> SignedDocument:
        if signing_key.verify_key != self.signing_key:
            raise ValueError("an enrollment is signed by the key it enrolls")
        return sign_document(Purpose.ENROLLMENT_SIGNATURE, self.to_cbor(), signing_key)

    @classmethod
    def parse_and_verify(cls, data: bytes) -> tuple[Enrollment, SignedDocument]:
        """Parse a self-signed enrollment and check its signature. Raises VerificationFailed."""
        document = SignedDocument.parse(data, Purpose.ENROLLMENT_SIGNATURE)
        try:
            claimed = cls.from_cbor(document.unverified_body())
        except InviteError as exc:
            raise VerificationFailed() from exc
        document.verify(claimed.signing_key)
        return claimed, document

    def matches(self, invite: Invite) -> bool:
        """Whether this enrollment is bound to ``invite`` (same organisation, id and role)."""
        return (self.org_id, self.invite_id, self.role) == (
            invite.org_id,
            invite.invite_id,
            invite.role,
        )


def _label_key(secret: bytes) -> bytes:
    return hmac.digest(secret, Purpose.LABEL.value, "sha256")


def seal_label(
    label: str, *, secret: bytes, invite_id: bytes, device_id: bytes, nonce: bytes | None = None
) -> bytes:
    """Encrypt a device label under the invite secret (padded to hide its length)."""
    data = label.encode("utf-8")
    if len(data) > MAX_LABEL_LENGTH:
        raise ValueError(f"a label is at most {MAX_LABEL_LENGTH} bytes")
    padded = data + b"\x80" + bytes(_LABEL_PAD - len(data) - 1)
    nonce = secrets.token_bytes(12) if nonce is None else nonce
    return nonce + ChaCha20Poly1305(_label_key(secret)).encrypt(
        nonce, padded, invite_id + device_id
    )


def open_label(sealed: bytes, *, secret: bytes, invite_id: bytes, device_id: bytes) -> str:
    """Decrypt a label sealed by `seal_label`. Raises VerificationFailed."""
    try:
        padded = ChaCha20Poly1305(_label_key(secret)).decrypt(
            sealed[:12], sealed[12:], invite_id + device_id
        )
        end = len(padded.rstrip(b"\x00"))
        if end == 0 or padded[end - 1] != 0x80:
            raise ValueError("bad padding")
        return padded[: end - 1].decode("utf-8")
    except (InvalidTag, ValueError) as exc:
        raise VerificationFailed() from exc
