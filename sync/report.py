"""The report content format: what a revision's encrypted body says (docs/PROTOCOL.md §14.1-§14.2).

Theory of operation:
* A report is a DAG of revisions (envelopes of kind ``rev``); the cleartext
  header names the report and the parent revisions, the encrypted body holds
  one `ReportContent`, encoded as canonical CBOR (crypto.encoding) before it is
  padded and sealed.
* A revision carries *operations*, not a snapshot: the fields it writes (a value,
  or the deletion marker), the notes and attachment manifests it adds, and
  whether it is a coordinator's conflict resolution.  A field device that has
  purged what it sent can still edit: it writes deltas against the heads it
  knows.  The merge (sync/merge.py) folds the DAG into a state.
* The client timestamp is informational (it is shown next to conflicting
  values); causality comes only from the DAG, never from clocks.

Encoding (a CBOR map with exactly these keys):

    {"v": 1,                      content format version
     "t": int,                    client time, Unix seconds (informational)
     "f": {name: text | null},    field writes; null is the deletion marker
     "n": [text, ...],            notes added
     "a": [{"i": bstr16, "n": text, "s": uint, "h": bstr32, "m": text}, ...],
                                  attachment manifests added; an optional "x": the
                                  attachment key and sealed-chunk manifest (§13.3)
     "r": bool}                   this revision resolves conflicts

Rules (each has a test naming PROTOCOL §14.1/§14.2): unknown keys or versions are
refused; field names are 1-64 characters without control characters; limits on
sizes and counts; the deletion marker is the only non-text field value; a
revision writes at least one field, note or attachment.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from crypto import encoding
from sync.attachments import AttachmentError, SealedTransfer

__all__ = [
    "CONTENT_VERSION",
    "DELETED",
    "MAX_FIELDS",
    "MAX_FIELD_NAME",
    "MAX_TEXT",
    "AttachmentManifest",
    "ContentError",
    "FieldValue",
    "ReportContent",
    "parse_field_assignments",
    "validate_field_name",
]

CONTENT_VERSION = 1
MAX_FIELD_NAME = 64
MAX_FIELDS = 256
MAX_NOTES = 64
MAX_ATTACHMENTS = 64
MAX_TEXT = 256 * 1024
"""Longest field value or note, in UTF-8 bytes."""


class _Deleted:
    """The deletion marker: a field value of its own, never an absence (PROTOCOL §14.4)."""

    _instance: _Deleted | None = None

    def __new__(cls) -> _Deleted:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "DELETED"

    def __reduce__(self) -> str:
        return "DELETED"


DELETED = _Deleted()
FieldValue = str | _Deleted


class ContentError(ValueError):
    """Decrypted content that does not follow the content format."""


def validate_field_name(name: Any) -> str:
    """Return ``name`` if it is a valid field name (PROTOCOL §14.2), else raise ContentError."""
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_FIELD_NAME:
        raise ContentError(f"a field name is 1-{MAX_FIELD_NAME} characters")
    if any(unicodedata.category(ch).startswith("C") for ch in name) or name != name.strip():
        raise ContentError("a field name has no control characters or outer spaces")
    return name


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or len(value.encode("utf-8")) > MAX_TEXT:
        raise ContentError(f"{what} must be text of at most {MAX_TEXT} bytes")
    return value


@dataclass(frozen=True, slots=True)
class AttachmentManifest:
    """A placeholder for an attachment (chunks are a later protocol section)."""

    attachment_id: bytes
    name: str
    size: int
    sha256: bytes
    media_type: str = "application/octet-stream"
    # Key and sealed-chunk manifest, key "x" (PROTOCOL §13.3; sync/attachments.py).
    transfer: SealedTransfer | None = None

    def to_cbor(self) -> dict[str, Any]:
        out = {
            "i": self.attachment_id,
            "n": self.name,
            "s": self.size,
            "h": self.sha256,
            "m": self.media_type,
        }
        if self.transfer is not None:
            out["x"] = self.transfer.to_cbor()
        return out

    @classmethod
    def from_cbor(cls, raw: Any) -> AttachmentManifest:
        if not isinstance(raw, dict) or set(raw) - {"x"} != {"i", "n", "s", "h", "m"}:
            raise ContentError("malformed attachment manifest")
        try:
            transfer = SealedTransfer.from_cbor(raw["x"]) if "x" in raw else None
        except (AttachmentError, TypeError) as exc:
            raise ContentError("malformed attachment transfer entry") from exc
        ok = (
            isinstance(raw["i"], bytes)
            and len(raw["i"]) == 16
            and isinstance(raw["h"], bytes)
            and len(raw["h"]) == 32
            and type(raw["s"]) is int
            and raw["s"] >= 0
            and isinstance(raw["n"], str)
            and 0 < len(raw["n"]) <= 255
            and isinstance(raw["m"], str)
            and len(raw["m"]) <= 255
        )
        if not ok:
            raise ContentError("malformed attachment manifest")
        return cls(raw["i"], raw["n"], raw["s"], raw["h"], raw["m"], transfer)


@dataclass(frozen=True, slots=True)
class ReportContent:
    """The decrypted body of one revision."""

    client_time: int
    fields: Mapping[str, FieldValue] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    attachments: tuple[AttachmentManifest, ...] = ()
    resolves: bool = False

    def __post_init__(self) -> None:
        # Freeze the mapping into a sorted plain dict copy so equal contents compare equal.
        object.__setattr__(self, "fields", dict(sorted(dict(self.fields).items())))
        object.__setattr__(self, "notes", tuple(self.notes))
        object.__setattr__(self, "attachments", tuple(self.attachments))
        self._validate()

    def _validate(self) -> None:
        if type(self.client_time) is not int or not 0 <= self.client_time < 2**53:
            raise ContentError("client time must be a non-negative integer (seconds)")
        if len(self.fields) > MAX_FIELDS:
            raise ContentError(f"at most {MAX_FIELDS} fields per revision")
        for name, value in self.fields.items():
            validate_field_name(name)
            if value is not DELETED:
                _text(value, f"field {name!r}")
        if len(self.notes) > MAX_NOTES or len(self.attachments) > MAX_ATTACHMENTS:
            raise ContentError("too many notes or attachments in one revision")
        for note in self.notes:
            if not _text(note, "a note"):
                raise ContentError("a note is not empty")
        ids = [a.attachment_id for a in self.attachments]
        if len(set(ids)) != len(ids):
            raise ContentError("duplicate attachment in one revision")
        if not (self.fields or self.notes or self.attachments):
            raise ContentError("a revision writes at least one field, note or attachment")

    def to_cbor(self) -> dict[str, Any]:
        return {
            "v": CONTENT_VERSION,
            "t": self.client_time,
            "f": {k: (None if v is DELETED else v) for k, v in self.fields.items()},
            "n": list(self.notes),
            "a": [a.to_cbor() for a in self.attachments],
            "r": self.resolves,
        }

    def encode(self) -> bytes:
        """Canonical CBOR bytes (what `crypto.seal_revision` takes as content)."""
        return encoding.encode(self.to_cbor())

    @classmethod
    def decode(cls, data: bytes) -> ReportContent:
        """Parse decrypted content. Raises ContentError on anything outside the format."""
        try:
            raw = encoding.decode(data)
        except encoding.CanonicalError as exc:
            raise ContentError("content is not canonical CBOR") from exc
        if not isinstance(raw, dict) or set(raw) != {"v", "t", "f", "n", "a", "r"}:
            raise ContentError("content has missing or unknown keys")
        if raw["v"] != CONTENT_VERSION or type(raw["v"]) is not int:
            raise ContentError("unsupported content version")
        if not isinstance(raw["f"], dict) or not isinstance(raw["n"], list):
            raise ContentError("malformed fields or notes")
        if not isinstance(raw["a"], list) or type(raw["r"]) is not bool:
            raise ContentError("malformed attachments or resolution marker")
        fields: dict[str, FieldValue] = {}
        for name, value in raw["f"].items():
            if value is None:
                fields[name] = DELETED
            elif isinstance(value, str):
                fields[name] = value
            else:
                raise ContentError("a field value is text or the deletion marker")
        if not all(isinstance(n, str) for n in raw["n"]):
            raise ContentError("notes are text")
        return cls(
            client_time=raw["t"],
            fields=fields,
            notes=tuple(raw["n"]),
            attachments=tuple(AttachmentManifest.from_cbor(a) for a in raw["a"]),
            resolves=raw["r"],
        )


def parse_field_assignments(pairs: Sequence[str]) -> dict[str, FieldValue]:
    """Parse ``KEY=VALUE`` strings (``KEY=`` with ``--delete`` semantics is the caller's).

    A bare ``KEY!`` (no ``=``) is the deletion marker. Raises ContentError.
    """
    out: dict[str, FieldValue] = {}
    for pair in pairs:
        if "=" in pair:
            name, value = pair.split("=", 1)
            out[validate_field_name(name)] = _text(value, f"field {name!r}")
        elif pair.endswith("!"):
            out[validate_field_name(pair[:-1])] = DELETED
        else:
            raise ContentError(f"expected KEY=VALUE (or KEY! to delete), got {pair!r}")
    return out
