"""Deterministic merge of a report's revision DAG (docs/PROTOCOL.md §14.3-§14.7).

Theory of operation:
* The state of a report is a pure function of the *set* of its revisions:
  nothing depends on arrival order, clocks or who computes it.  Merging two
  replicas is the union of their revision sets, so the merge is commutative,
  associative and idempotent by construction, and two coordinators holding the
  same revisions always show the same state.
* Causality is the DAG: revision A happened before B iff A is an ancestor of B
  (through the parent links in the signed headers).  Client timestamps are
  shown, never compared.
* Each field is a multi-value register: its values are the writes of that field
  that no other write of the same field causally follows.  Two concurrent
  writes both survive (a conflict, shown with author and client time) until a
  revision that descends from both (in practice a coordinator's resolution,
  whose parents are all the heads) writes the field again.
* Deletion is a value (`DELETED`) like any other: a concurrent edit and
  deletion are a conflict, never a silent loss.
* Text is never merged inside a value: free text is kept whole per write.
* Notes and attachments are add-wins sets: every added note or manifest is in
  the state (v1 has no removal, so an add can never be lost).
* A revision whose parents are unknown is still merged; its unknown parents
  are listed in `ReportState.missing` so the reader can say the DAG is
  incomplete (and the server can be asked again).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sync.report import DELETED, AttachmentManifest, FieldValue, ReportContent

__all__ = [
    "FieldState",
    "MergeError",
    "Note",
    "ReportDag",
    "ReportState",
    "Revision",
    "Write",
    "merge_revisions",
]


class MergeError(ValueError):
    """A revision does not belong in this DAG (another report, or a different body under one id)."""


@dataclass(frozen=True, slots=True)
class Revision:
    """One verified, decrypted revision: header facts plus its content."""

    id: bytes
    report: bytes
    parents: tuple[bytes, ...]
    author: bytes
    content: ReportContent

    def __post_init__(self) -> None:
        object.__setattr__(self, "parents", tuple(sorted(set(self.parents))))


@dataclass(frozen=True, slots=True, order=True)
class Write:
    """One surviving value of a field, with where it came from."""

    revision: bytes
    value: FieldValue
    author: bytes
    client_time: int

    @property
    def deleted(self) -> bool:
        return self.value is DELETED


@dataclass(frozen=True, slots=True)
class FieldState:
    """A field's surviving writes, sorted by revision id."""

    name: str
    writes: tuple[Write, ...]

    @property
    def values(self) -> tuple[FieldValue, ...]:
        """Distinct surviving values, in a deterministic order."""
        seen: list[FieldValue] = []
        for w in self.writes:
            if w.value not in seen:
                seen.append(w.value)
        return tuple(seen)

    @property
    def conflict(self) -> bool:
        """More than one distinct concurrent value (deletion counts as a value)."""
        return len(self.values) > 1

    @property
    def value(self) -> FieldValue | None:
        """The value when there is no conflict, else None."""
        return None if self.conflict else self.writes[0].value


@dataclass(frozen=True, slots=True)
class Note:
    text: str
    author: bytes
    revision: bytes
    client_time: int


@dataclass(frozen=True, slots=True)
class ReportState:
    """The merged state of one report."""

    report: bytes
    heads: tuple[bytes, ...]
    fields: tuple[FieldState, ...]
    notes: tuple[Note, ...]
    attachments: tuple[AttachmentManifest, ...]
    revision_count: int
    missing: tuple[bytes, ...]
    authors: tuple[bytes, ...]

    @property
    def conflicts(self) -> tuple[FieldState, ...]:
        return tuple(f for f in self.fields if f.conflict)

    def field(self, name: str) -> FieldState | None:
        for f in self.fields:
            if f.name == name:
                return f
        return None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready view (ids in hex; the deletion marker as ``{"deleted": true}``)."""

        def value(v: FieldValue) -> Any:
            return {"deleted": True} if v is DELETED else v

        return {
            "report_id": self.report.hex(),
            "heads": [h.hex() for h in self.heads],
            "revisions": self.revision_count,
            "missing_parents": [m.hex() for m in self.missing],
            "fields": {
                f.name: {
                    "value": None if f.conflict else value(f.writes[0].value),
                    "conflict": f.conflict,
                    "values": [
                        {
                            "value": value(w.value),
                            "author": w.author.hex(),
                            "revision": w.revision.hex(),
                            "client_time": w.client_time,
                        }
                        for w in f.writes
                    ],
                }
                for f in self.fields
            },
            "notes": [
                {
                    "text": n.text,
                    "author": n.author.hex(),
                    "revision": n.revision.hex(),
                    "client_time": n.client_time,
                }
                for n in self.notes
            ],
            "attachments": [
                {
                    "id": a.attachment_id.hex(),
                    "name": a.name,
                    "size": a.size,
                    "sha256": a.sha256.hex(),
                    "media_type": a.media_type,
                }
                for a in self.attachments
            ],
        }


class ReportDag:
    """The set of known revisions of one report; `state` folds it deterministically."""

    def __init__(self, report: bytes, revisions: Iterable[Revision] = ()) -> None:
        self.report = report
        self._revisions: dict[bytes, Revision] = {}
        for revision in revisions:
            self.add(revision)

    def __len__(self) -> int:
        return len(self._revisions)

    def __contains__(self, revision_id: object) -> bool:
        return revision_id in self._revisions

    @property
    def revisions(self) -> Mapping[bytes, Revision]:
        return self._revisions

    def add(self, revision: Revision) -> bool:
        """Add one revision; False if it was already known (idempotent)."""
        if revision.report != self.report:
            raise MergeError("revision belongs to another report")
        known = self._revisions.get(revision.id)
        if known is not None:
            if known != revision:
                raise MergeError("two different revisions under one id")
            return False
        self._revisions[revision.id] = revision
        return True

    def merge(self, other: ReportDag) -> ReportDag:
        """A new DAG holding the union of both (neither input changes)."""
        merged = ReportDag(self.report, self._revisions.values())
        for revision in other._revisions.values():
            merged.add(revision)
        return merged

    @property
    def heads(self) -> tuple[bytes, ...]:
        referenced = {p for r in self._revisions.values() for p in r.parents}
        return tuple(sorted(i for i in self._revisions if i not in referenced))

    def _ancestors(self) -> dict[bytes, frozenset[bytes]]:
        """Strict ancestors of every known revision (unknown parent ids included)."""
        done: dict[bytes, frozenset[bytes]] = {}
        for start in sorted(self._revisions):
            stack = [start]
            while stack:
                current = stack[-1]
                if current in done:
                    stack.pop()
                    continue
                parents = [p for p in self._revisions[current].parents if p in self._revisions]
                pending = [p for p in parents if p not in done]
                if pending:
                    stack.extend(pending)
                    continue
                acc: set[bytes] = set(self._revisions[current].parents)
                for p in parents:
                    acc |= done[p]
                done[current] = frozenset(acc)
                stack.pop()
        return done

    def state(self) -> ReportState:
        ancestors = self._ancestors()
        revisions = self._revisions

        def depth_key(rid: bytes) -> tuple[int, bytes]:
            return (len(ancestors[rid]), rid)

        writers: dict[str, list[bytes]] = {}
        for rid, revision in revisions.items():
            for name in revision.content.fields:
                writers.setdefault(name, []).append(rid)
        fields = []
        for name in sorted(writers):
            candidates = writers[name]
            survivors = [
                rid
                for rid in candidates
                if not any(rid in ancestors[other] for other in candidates if other != rid)
            ]
            writes = tuple(
                sorted(
                    Write(
                        revision=rid,
                        value=revisions[rid].content.fields[name],
                        author=revisions[rid].author,
                        client_time=revisions[rid].content.client_time,
                    )
                    for rid in survivors
                )
            )
            fields.append(FieldState(name=name, writes=writes))
        ordered = sorted(revisions, key=depth_key)
        notes = tuple(
            Note(text, revisions[rid].author, rid, revisions[rid].content.client_time)
            for rid in ordered
            for text in revisions[rid].content.notes
        )
        attachments: dict[bytes, AttachmentManifest] = {}
        for rid in ordered:
            for manifest in revisions[rid].content.attachments:
                current = attachments.get(manifest.attachment_id)
                # One id, two manifests: keep a deterministic one (the smaller encoding).
                if current is None or repr(manifest.to_cbor()) < repr(current.to_cbor()):
                    attachments[manifest.attachment_id] = manifest
        missing = sorted({p for r in revisions.values() for p in r.parents if p not in revisions})
        return ReportState(
            report=self.report,
            heads=self.heads,
            fields=tuple(fields),
            notes=notes,
            attachments=tuple(attachments[k] for k in sorted(attachments)),
            revision_count=len(revisions),
            missing=tuple(missing),
            authors=tuple(sorted({r.author for r in revisions.values()})),
        )


def merge_revisions(report: bytes, revisions: Iterable[Revision]) -> ReportState:
    """The state of ``report`` from ``revisions`` (any order, duplicates allowed)."""
    return ReportDag(report, revisions).state()
