"""Wire models of grants and rotation requests (PROTOCOL §19.6, §19.7), beside
`sync.messages` (the same conventions: base64url bytes, extra fields forbidden)."""

from __future__ import annotations

from pydantic import Field

from sync.messages import B64, _Wire

__all__ = [
    "MAX_GRANTS_PAGE",
    "MAX_ROTATIONS_PER_DEVICE",
    "GrantList",
    "GrantRequest",
    "GrantResponse",
    "RotationAnswer",
    "RotationList",
    "RotationPost",
    "StoredGrant",
    "StoredRotation",
]


MAX_GRANTS_PAGE = 64
"""Grant documents per page of GET /grants (each at most 512 KiB, `sync.grant`)."""


class GrantRequest(_Wire):
    grant: B64 = Field(description="A coordinator-signed grant document (PROTOCOL §19)")


class GrantResponse(_Wire):
    grant_id: B64
    seq: int = Field(description="The grant's position in the organisation's grant list")
    created: bool = Field(description="False when this exact grant was stored before")


class StoredGrant(_Wire):
    seq: int
    grant: B64
    received_at: int = Field(description="The server's clock when it stored the grant")


class GrantList(_Wire):
    grants: list[StoredGrant] = Field(max_length=MAX_GRANTS_PAGE)
    more: bool


MAX_ROTATIONS_PER_DEVICE = 4
"""Rotation requests kept per old device id (PROTOCOL §19.7)."""


class RotationPost(_Wire):
    rotation: B64 = Field(description="A rotation request signed by the old and new keys")


class RotationAnswer(_Wire):
    old_device_id: B64
    new_device_id: B64
    created: bool


class StoredRotation(_Wire):
    rotation: B64
    received_at: int


class RotationList(_Wire):
    rotations: list[StoredRotation] = Field(max_length=10_000)
