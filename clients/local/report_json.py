"""A report's merged state read back from the JSON `ReportState.to_json` wrote (the local
index keeps each report so, clients/local/index.py)."""

from __future__ import annotations

from typing import Any

from sync.merge import FieldState, Note, ReportState, Write
from sync.report import DELETED, AttachmentManifest

__all__ = ["state_from_json"]


def state_from_json(data: dict[str, Any]) -> ReportState:
    """The `ReportState` that `ReportState.to_json` wrote."""

    def value(v: Any) -> Any:
        return DELETED if isinstance(v, dict) else v

    fields = tuple(
        FieldState(
            name,
            tuple(
                Write(
                    bytes.fromhex(w["revision"]),
                    value(w["value"]),
                    bytes.fromhex(w["author"]),
                    w["client_time"],
                )
                for w in f["values"]
            ),
        )  # fmt: skip
        for name, f in data["fields"].items()
    )
    notes = tuple(
        Note(n["text"], bytes.fromhex(n["author"]), bytes.fromhex(n["revision"]), n["client_time"])
        for n in data["notes"]
    )
    attachments = tuple(
        AttachmentManifest(bytes.fromhex(a["id"]), a["name"], a["size"],
                           bytes.fromhex(a["sha256"]), a["media_type"])
        for a in data["attachments"]
    )  # fmt: skip
    return ReportState(
        report=bytes.fromhex(data["report_id"]),
        heads=tuple(bytes.fromhex(h) for h in data["heads"]),
        fields=fields,
        notes=notes,
        attachments=attachments,
        revision_count=data["revisions"],
        missing=tuple(bytes.fromhex(m) for m in data["missing_parents"]),
        authors=tuple(bytes.fromhex(a) for a in data["authors"]),
    )
