"""Wire messages of the HTTP API v1: frozen pydantic models, JSON with base64url bytes.

Rules (docs/PROTOCOL.md §7.2):
* Every byte string on the JSON wire is base64url WITHOUT padding (`B64`); a
  padded, non-canonical or non-alphabet string is a validation error.
* Models forbid unknown fields and are immutable; they are never table classes
  (server/tables.py), an explicit mapper converts.
* Opaque documents (rosters, invites, enrollments, receipts, envelopes) travel as
  the exact bytes their signer produced; nothing is re-serialised.
"""

from __future__ import annotations

import base64
import binascii
from enum import StrEnum
from typing import Annotated, Any

import cbor2
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationInfo,
    WithJsonSchema,
)

__all__ = [
    "B64",
    "CBOR_MEDIA_TYPE",
    "RAW_BYTES",
    "ChangeItem",
    "ChangesPage",
    "CreateOrgRequest",
    "CreateOrgResponse",
    "DeviceInfo",
    "DeviceList",
    "EnrollRequest",
    "EnrollResponse",
    "FeedLog",
    "FreshnessRequest",
    "FreshnessResponse",
    "InviteCancelRequest",
    "InviteCancelResponse",
    "InviteList",
    "InviteListing",
    "InviteRequest",
    "InviteResponse",
    "ItemStatus",
    "Limits",
    "LogState",
    "Problem",
    "PushRequest",
    "PushResponse",
    "PushResult",
    "ReceiptList",
    "StoredReceipt",
    "ReportGraph",
    "RosterRequest",
    "RosterResponse",
    "RosterVersions",
    "ServerInfo",
    "b64decode",
    "b64encode",
    "decode_push_cbor",
    "encode_push_cbor",
]

_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
B64_PATTERN = "^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2}[AEIMQUYcgkosw048]|[A-Za-z0-9_-][AQgw])?$"
"""Exactly the canonical unpadded base64url strings (unused trailing bits zero)."""


def b64encode(data: bytes) -> str:
    """base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64decode(text: str) -> bytes:
    """Strict inverse of `b64encode`. Raises ValueError on anything else."""
    if not isinstance(text, str) or not text.isascii():
        raise ValueError("expected base64url without padding")
    data = text.encode("ascii")
    rest = len(data) % 4
    if rest == 1 or b"+" in data or b"/" in data or b"=" in data:
        raise ValueError("expected base64url without padding")
    try:
        raw = binascii.a2b_base64(
            data.translate(_TO_STANDARD) + b"=" * (-rest % 4), strict_mode=True
        )
    except (binascii.Error, ValueError) as exc:
        raise ValueError("expected base64url without padding") from exc
    if rest and b64encode(raw[-(rest - 1) :]) != text[-rest:]:
        raise ValueError("non-canonical base64url (trailing bits set)")
    return raw


RAW_BYTES = {"raw_bytes": True}
"""Validation context of a CBOR body: byte strings must arrive as CBOR byte strings."""


def _validate_b64(value: Any, info: ValidationInfo) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if info.context and info.context.get("raw_bytes"):
        raise ValueError("expected a byte string, not text")
    return b64decode(value)


B64 = Annotated[
    bytes,
    PlainValidator(_validate_b64),
    PlainSerializer(b64encode, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "base64url", "pattern": B64_PATTERN}),
]
"""Bytes carried as base64url without padding."""


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- server --------------------------------------------------------------------------


class Limits(_Wire):
    max_batch_items: int
    max_batch_bytes: int
    max_envelope_bytes: int
    max_feed_items: int
    replay_window_seconds: int
    device_requests_per_minute: int
    org_requests_per_minute: int
    org_quota_bytes: int


class ServerInfo(_Wire):
    protocol_version: int
    suite: int
    server_key: B64 = Field(description="The server's Ed25519 receipt key (32 bytes)")
    limits: Limits


class Problem(BaseModel):
    """RFC 9457 problem details (extensions allowed)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    type: str
    title: str
    status: int
    detail: str
    code: str


# --- organisations, rosters, invites, enrollment --------------------------------------


class CreateOrgRequest(_Wire):
    roster: B64 = Field(description="Genesis SignedRoster bytes")


class CreateOrgResponse(_Wire):
    org_id: B64


class RosterVersions(_Wire):
    versions: list[B64] = Field(description="SignedRoster bytes, ascending version")
    freshness: B64 | None = Field(
        default=None, description="The newest roster freshness statement (PROTOCOL §18.2)"
    )


class FreshnessRequest(_Wire):
    freshness: B64 = Field(description="A coordinator-signed freshness statement")


class FreshnessResponse(_Wire):
    version: int = Field(description="The roster version of the statement now served")
    issued_at: int


class RosterRequest(_Wire):
    roster: B64


class RosterResponse(_Wire):
    version: int


class InviteRequest(_Wire):
    invite: B64 = Field(description="Coordinator-signed invite SignedDocument bytes")


class InviteResponse(_Wire):
    invite_id: B64
    expires_at: int


class InviteCancelRequest(_Wire):
    cancellation: B64 = Field(description="Coordinator-signed invite cancellation (§6.7)")


class InviteCancelResponse(_Wire):
    invite_id: B64
    used_by: B64 | None = Field(
        default=None, description="The device the server says enrolled with it, if any"
    )


class InviteListing(_Wire):
    invite: B64 = Field(description="The coordinator-signed invite document")
    used_by: B64 | None = None
    cancellation: B64 | None = Field(
        default=None, description="The first stored signed cancellation (§6.7)"
    )


class InviteList(_Wire):
    invites: list[InviteListing]


class EnrollRequest(_Wire):
    enrollment: B64 = Field(description="Self-signed enrollment SignedDocument bytes")
    secret: B64 = Field(description="The invite secret (32 bytes)")


class EnrollResponse(_Wire):
    device_id: B64
    invite: B64 = Field(description="The coordinator-signed invite document")
    rosters: list[B64]


class DeviceInfo(_Wire):
    device_id: B64
    role: str
    state: str = Field(description="enrolled | admitted | revoked")
    signing_key: B64
    enrollment: B64 | None = None
    invite: B64 | None = None
    cancellation: B64 | None = Field(
        default=None, description="The invite's signed cancellation, if cancelled (§6.7)"
    )
    admitted_version: int | None = None
    revoked_after: int | None = None
    flags: list[str] = Field(description="e.g. equivocation")
    watermark: int = Field(description="highest n with device seqs 1..n all stored")
    max_seq: int
    holes: list[tuple[int, int]] = Field(description="missing [first, last] ranges above watermark")


class DeviceList(_Wire):
    devices: list[DeviceInfo]


# --- push ------------------------------------------------------------------------------


class ItemStatus(StrEnum):
    CREATED = "created"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"
    MISSING_PARENTS = "missing_parents"
    EQUIVOCATION = "equivocation"
    REVOKED = "revoked"
    INVALID = "invalid"

    @property
    def stored(self) -> bool:
        """Whether the envelope is held by the server after this result."""
        return self in (ItemStatus.CREATED, ItemStatus.DUPLICATE, ItemStatus.CONFLICT)

    @property
    def retryable(self) -> bool:
        return self is ItemStatus.MISSING_PARENTS


class PushRequest(_Wire):
    envelopes: list[B64]


CBOR_MEDIA_TYPE = "application/cbor"


def encode_push_cbor(envelopes: list[bytes]) -> bytes:
    """A push body as CBOR (``Content-Type: application/cbor``): ``{"envelopes": [bstr...]}``.

    The same request as `PushRequest`, with the envelopes as raw byte strings: a
    quarter fewer bytes on the wire than base64url in JSON, and no base64 to decode.
    """
    return cbor2.dumps({"envelopes": list(envelopes)})


def decode_push_cbor(body: bytes) -> list[bytes]:
    """The envelopes of a CBOR push body; ValueError if it is not exactly that shape.

    Exactly one CBOR item: bytes after the map are refused (PROTOCOL §8.2, 422).
    """
    import io  # local: the only stream this module needs

    stream = io.BytesIO(body)
    try:
        value = cbor2.CBORDecoder(stream, max_depth=4, allow_indefinite=False).decode()
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a malformed body
        raise ValueError("the body is not valid CBOR") from exc
    if stream.tell() != len(body):
        raise ValueError("the body has bytes after the CBOR map")
    if not isinstance(value, dict) or set(value) != {"envelopes"}:
        raise ValueError('the body must be a map {"envelopes": [byte strings]}')
    envelopes = value["envelopes"]
    if not isinstance(envelopes, list) or not all(type(e) is bytes for e in envelopes):
        raise ValueError('"envelopes" must be an array of byte strings')
    return envelopes


class PushResult(_Wire):
    envelope_id: B64 | None = Field(
        default=None, description="absent when the bytes are not an envelope"
    )
    status: ItemStatus
    retryable: bool
    server_seq: int | None = None
    missing: list[B64] | None = None
    heads: list[B64] | None = Field(default=None, description="the report's heads on conflict")
    detail: str | None = None


class PushResponse(_Wire):
    results: list[PushResult]
    receipt: B64 = Field(description="Server-signed receipt SignedDocument bytes")
    consistency: list[B64] | None = Field(
        default=None,
        description="with ?since=M: consistency proof from M to the receipt's checkpoint (§17.3)",
    )


class LogState(_Wire):
    """`GET /log?since=M`: the current checkpoint and a consistency proof from M (§17.3)."""

    checkpoint: B64
    consistency: list[B64]


class FeedLog(_Wire):
    """A feed page's log proofs (§17.3): the checkpoint covering the page, a consistency proof
    from the page's last item to it, and one from the request's ``since``."""

    checkpoint: B64
    prefix: list[B64]
    consistency: list[B64]


# --- pull ------------------------------------------------------------------------------


class ChangeItem(_Wire):
    server_seq: int
    envelope: B64
    flags: list[str]


class ChangesPage(_Wire):
    items: list[ChangeItem]
    cursor: str
    more: bool
    log: FeedLog


class ReportGraph(_Wire):
    report_id: B64
    items: list[ChangeItem]
    heads: list[B64]


class StoredReceipt(_Wire):
    id: int
    receipt: B64


class ReceiptList(_Wire):
    receipts: list[StoredReceipt]
    more: bool
