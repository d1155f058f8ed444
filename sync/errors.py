"""Stable error codes of protocol v1 (docs/PROTOCOL.md §10).

Every problem+json response carries ``code`` (one of these values) and
``type = https://sealbox.dev/problems/<code>``.  Codes never change meaning;
new ones may be added.  The one-line meanings are quoted by the protocol doc.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["PROBLEM_BASE", "ErrorCode", "problem_type"]

PROBLEM_BASE = "https://sealbox.dev/problems/"


class ErrorCode(StrEnum):
    """Stable machine-readable error codes; see `MEANINGS` for one line each."""

    MALFORMED_REQUEST = "malformed_request"
    VALIDATION_FAILED = "validation_failed"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    UNAUTHENTICATED = "unauthenticated"
    SIGNATURE_INVALID = "signature_invalid"
    SIGNATURE_EXPIRED = "signature_expired"
    REPLAYED_REQUEST = "replayed_request"
    FORBIDDEN = "forbidden"
    ADMIN_TOKEN_UNSET = "admin_token_unset"
    ADMIN_TOKEN_INVALID = "admin_token_invalid"
    UNKNOWN_ORG = "unknown_org"
    ORG_EXISTS = "org_exists"
    ROSTER_INVALID = "roster_invalid"
    ROSTER_CONFLICT = "roster_conflict"
    FRESHNESS_INVALID = "freshness_invalid"
    INVITE_INVALID = "invite_invalid"
    INVITE_EXISTS = "invite_exists"
    ENROLLMENT_INVALID = "enrollment_invalid"
    INVITE_UNUSABLE = "invite_unusable"
    INVITE_CANCELLED = "invite_cancelled"
    GRANT_INVALID = "grant_invalid"
    ROTATION_INVALID = "rotation_invalid"
    DEVICE_REVOKED = "device_revoked"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    REQUEST_TIMEOUT = "request_timeout"
    CURSOR_INVALID = "cursor_invalid"
    CURSOR_FROM_OTHER_EPOCH = "cursor_from_other_epoch"
    RATE_LIMITED = "rate_limited"
    QUOTA_EXCEEDED = "quota_exceeded"
    NOT_READY = "not_ready"
    INTERNAL = "internal"

    @property
    def meaning(self) -> str:
        return MEANINGS[self]


MEANINGS: dict[ErrorCode, str] = {
    ErrorCode.MALFORMED_REQUEST: "The body is not valid JSON or not the expected shape.",
    ErrorCode.VALIDATION_FAILED: "A field failed validation (type, length, base64url); see errors.",
    ErrorCode.NOT_FOUND: "No such resource or route.",
    ErrorCode.METHOD_NOT_ALLOWED: "Not allowed with this method.",
    ErrorCode.UNAUTHENTICATED: "The request carries no usable signature and needs one.",
    ErrorCode.SIGNATURE_INVALID: "The RFC 9421 signature, its coverage or the digest failed.",
    ErrorCode.SIGNATURE_EXPIRED: "The signature's created time is outside the replay window.",
    ErrorCode.REPLAYED_REQUEST: "This (keyid, nonce) was already used in the window.",
    ErrorCode.FORBIDDEN: "The signer is known but its role may not do this.",
    ErrorCode.ADMIN_TOKEN_UNSET: "SEALBOX_ADMIN_TOKEN is unset; orgs cannot be created.",
    ErrorCode.ADMIN_TOKEN_INVALID: "The bearer token is missing or wrong.",
    ErrorCode.UNKNOWN_ORG: "No organisation with this id.",
    ErrorCode.ORG_EXISTS: "An organisation with this id already exists.",
    ErrorCode.ROSTER_INVALID: "The roster version is malformed or breaks a chain rule (R1-R6).",
    ErrorCode.ROSTER_CONFLICT: "Another roster version with this number exists; fetch and rebase.",
    ErrorCode.FRESHNESS_INVALID: "Malformed, mis-signed, expired or unknown freshness statement.",
    ErrorCode.INVITE_INVALID: "The invite document is malformed, mis-signed or not for this org.",
    ErrorCode.INVITE_EXISTS: "An invite with this id is already registered.",
    ErrorCode.ENROLLMENT_INVALID: "Malformed, mis-signed or unbound enrollment, or a known key.",
    ErrorCode.INVITE_UNUSABLE: "Invite unknown, expired, used, or wrong secret.",
    ErrorCode.INVITE_CANCELLED: "A coordinator cancelled this invite; ask for a new one.",
    ErrorCode.GRANT_INVALID: "The grant is malformed, too large, not signed by the caller, or"
    " for another organisation.",
    ErrorCode.ROTATION_INVALID: "The rotation request is malformed, not signed by the caller and"
    " its new key, for another organisation, or one too many.",
    ErrorCode.DEVICE_REVOKED: "Reserved: the signing device is revoked in the roster.",
    ErrorCode.PAYLOAD_TOO_LARGE: "Over a limit; the problem lists the limits to split by.",
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: "The body's Content-Type is not one this route accepts.",
    ErrorCode.REQUEST_TIMEOUT: "The headers or body did not arrive in time; retry.",
    ErrorCode.CURSOR_INVALID: "The cursor is not one this server issued.",
    ErrorCode.CURSOR_FROM_OTHER_EPOCH: "The server was restored or replaced: re-push and re-pull.",
    ErrorCode.RATE_LIMITED: "Too many requests; wait Retry-After seconds.",
    ErrorCode.QUOTA_EXCEEDED: "The organisation's storage quota is used up.",
    ErrorCode.NOT_READY: "The database is unreachable or not migrated.",
    ErrorCode.INTERNAL: "A server bug; nothing was partially written.",
}


def problem_type(code: ErrorCode) -> str:
    return PROBLEM_BASE + code.value
