"""The encrypted local index of verified, merged state (docs/PROTOCOL.md §12.4).

Theory of operation:
* Every revision is verified and decrypted once, by `sync.client.CoordinatorView`; the
  index keeps what the view concluded, one row per report (merged fields, heads,
  verification, devices, times, the view's snapshot) in an in-memory SQLite database with
  FTS5 over field names, values and notes. Queries are SQL over memory.
* On disk it is one file, ``HOME/index.sealed``: ``magic() || nonce || ChaCha20-Poly1305(
  K_index, nonce, sqlite3 serialize(), aad)``. ``K_index = HKDF-SHA256(store key,
  info="sealbox/v1/local-index")``; ``aad`` binds the format, the profile (org and device)
  and the store's index generation, which changes in the same transaction as any envelope,
  roster or enrollment the index depends on. A blob that is missing, from another
  generation, or does not open is never used in part: the caller rebuilds from the envelopes.
* Plaintext never touches disk: the database lives in memory (``temp_store=MEMORY``) and
  only its sealed serialisation is written, to a temporary file, fsynced, then renamed.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from clients.local.files import write_private
from clients.local.report_json import state_from_json
from sync.client import CoordinatorView, Finding, ReportVerification, snapshot_view
from sync.merge import ReportState
from sync.report import DELETED

__all__ = [
    "INDEX_FILE",
    "Index",
    "IndexRefused",
    "ReportQuery",
    "index_aad",
    "index_key",
    "state_from_json",
]

INDEX_FILE = "index.sealed"
FORMAT = 1
TAG = b"sealbox-index\x00"
"""The file's tag; the file starts with it and one byte of `FORMAT` (`magic`)."""


def magic() -> bytes:
    """The first 15 bytes of the file and of the AEAD's aad: ``TAG || u8(FORMAT)``."""
    return TAG + bytes([FORMAT])


LABEL = b"sealbox/v1/local-index"

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE reports (id BLOB PRIMARY KEY, verification TEXT NOT NULL, reasons TEXT NOT NULL,
  revisions INTEGER NOT NULL, conflict INTEGER NOT NULL, findings INTEGER NOT NULL,
  first_time INTEGER, last_time INTEGER, member INTEGER NOT NULL, state TEXT NOT NULL);
CREATE TABLE devices (report BLOB NOT NULL, device BLOB NOT NULL);
CREATE INDEX devices_by_device ON devices (device, report);
CREATE INDEX devices_by_report ON devices (report);
CREATE TABLE fields (report BLOB NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL);
CREATE INDEX fields_by_name ON fields (name, value);
CREATE INDEX fields_by_report ON fields (report);
CREATE TABLE revisions (id BLOB PRIMARY KEY, report BLOB NOT NULL, device BLOB NOT NULL,
  client_time INTEGER NOT NULL, parents TEXT NOT NULL);
CREATE INDEX revisions_by_report ON revisions (report);
CREATE VIRTUAL TABLE search USING fts5 (report UNINDEXED, body);
"""
# A report's search row has the rowid of its `reports` row: an update deletes it by rowid
# (FTS5 cannot look up an UNINDEXED column without reading every row).
SCHEMA = 2
"""The tables above (meta `schema`): an index written with other tables is rebuilt."""


class IndexRefused(Exception):
    """The sealed index cannot be used (missing, stale, damaged or under another key)."""


def index_key(store_key: bytes) -> bytes:
    """The index's own key, derived from the store key (domain-separated by `LABEL`)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=LABEL).derive(store_key)


def index_aad(org: bytes, device: bytes, generation: bytes) -> bytes:
    return magic() + bytes([FORMAT]) + org + device + generation


@dataclass(frozen=True)
class ReportQuery:
    """Filters of `Index.query`; None means "any". Times are client times (Unix seconds)."""

    since: int | None = None
    until: int | None = None
    device: bytes | None = None
    field: str | None = None
    value: str | None = None
    conflict: bool | None = None
    findings: bool | None = None
    verification: str | None = None
    text: str | None = None
    offset: int = 0
    limit: int = 100


def _connect() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA temp_store=MEMORY")
    return db


class Index:
    """An open index (in memory). `build` from a view, `open` a sealed blob, `seal` it."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    @classmethod
    def build(cls, view: CoordinatorView) -> Index:
        db = _connect()
        db.executescript(_SCHEMA)
        index = cls(db)
        index.update(view, None)
        return index

    # --- sealing ------------------------------------------------------------------------------
    def seal(self, key: bytes, aad: bytes) -> bytes:
        nonce = secrets.token_bytes(12)
        return magic() + nonce + ChaCha20Poly1305(key).encrypt(nonce, self.db.serialize(), aad)

    @classmethod
    def open(cls, blob: bytes, key: bytes, aad: bytes) -> Index:
        if not blob.startswith(magic()) or len(blob) < len(magic()) + 12 + 16:
            raise IndexRefused("not a sealed index of this format")
        body = blob[len(magic()) :]
        try:
            plain = ChaCha20Poly1305(key).decrypt(body[:12], body[12:], aad)
        except InvalidTag:
            raise IndexRefused("the index does not open (stale, damaged or another key)") from None
        db = _connect()
        try:
            db.deserialize(plain)
            row = db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
            schema = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        except sqlite3.Error:
            raise IndexRefused("the index opens but is not a database of this format") from None
        if row is None or row[0] != FORMAT or schema is None or schema[0] != SCHEMA:
            raise IndexRefused("the index is of another format")
        return cls(db)

    def write(self, path: Path, key: bytes, aad: bytes) -> None:
        """Seal and write atomically: a temporary file, fsync, rename, fsync the directory."""
        write_private(path, self.seal(key, aad))

    # --- updating -----------------------------------------------------------------------------
    def update(self, view: CoordinatorView, reports: Iterable[bytes] | None) -> None:
        """Rewrite the rows of ``reports`` (None: every report), the findings and the snapshot."""
        db = self.db
        findings = view.findings()
        by_device: dict[bytes, int] = {}
        for f in findings:
            by_device[f.device] = by_device.get(f.device, 0) + 1
        verified = set(view.report_ids(include_unverified=False))
        db.execute("BEGIN")
        if reports is None:
            for table in ("reports", "devices", "fields", "revisions", "search"):
                db.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
            todo: Iterable[bytes] = view.report_ids()
        else:
            todo = sorted(set(reports))
            for report in todo:
                db.execute(
                    "DELETE FROM search WHERE rowid = (SELECT rowid FROM reports WHERE id = ?)",
                    (report,),
                )
                for table in ("reports", "devices", "fields", "revisions"):
                    column = "id" if table == "reports" else "report"
                    db.execute(f"DELETE FROM {table} WHERE {column} = ?", (report,))  # noqa: S608
        for report in todo:
            state = view.report(report)
            if state is not None:
                self._put(view, state, view.verification(report), by_device, report in verified)
        meta = {
            "format": FORMAT,
            "schema": SCHEMA,
            "findings": json.dumps([[f.kind, f.device.hex(), f.seq, f.detail] for f in findings]),
            "snapshot": snapshot_view(view),
        }
        db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", meta.items())
        db.execute("COMMIT")

    def _put(
        self,
        view: CoordinatorView,
        state: ReportState,
        verification: ReportVerification,
        by_device: dict[bytes, int],
        member: bool,
    ) -> None:
        revisions = view.revisions(state.report)
        times = [r.content.client_time for r in revisions]
        data = state.to_json()
        data["authors"] = [a.hex() for a in state.authors]
        flagged = bool(verification.reasons) or any(by_device.get(a) for a in state.authors)
        cursor = self.db.execute(
            "INSERT INTO reports VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (state.report, verification.state, json.dumps(verification.reasons),
             state.revision_count, bool(state.conflicts), flagged, min(times, default=None),
             max(times, default=None), member, json.dumps(data, sort_keys=True)),
        )  # fmt: skip
        self.db.executemany(
            "INSERT INTO devices VALUES (?, ?)", [(state.report, a) for a in state.authors]
        )
        values = [
            (state.report, f.name, "" if w.value is DELETED else str(w.value))
            for f in state.fields
            for w in f.writes
        ]
        self.db.executemany("INSERT INTO fields VALUES (?, ?, ?)", values)
        self.db.executemany(
            "INSERT INTO revisions VALUES (?, ?, ?, ?, ?)",
            [(r.id, r.report, r.author, r.content.client_time,
              json.dumps([p.hex() for p in r.parents])) for r in revisions],
        )  # fmt: skip
        body = " ".join([f"{name} {value}" for _, name, value in values] +
                        [n.text for n in state.notes])  # fmt: skip
        self.db.execute(
            "INSERT INTO search (rowid, report, body) VALUES (?, ?, ?)",
            (cursor.lastrowid, state.report, body),
        )

    # --- queries ------------------------------------------------------------------------------
    def meta(self, key: str) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def snapshot(self) -> bytes:
        return bytes(self.meta("snapshot"))

    def findings(self) -> list[Finding]:
        return [
            Finding(k, bytes.fromhex(d), s, t) for k, d, s, t in json.loads(self.meta("findings"))
        ]

    def report_ids(self, *, verified_only: bool = False) -> list[bytes]:
        where = " WHERE member = 1" if verified_only else ""
        return [r for (r,) in self.db.execute(f"SELECT id FROM reports{where} ORDER BY id")]  # noqa: S608

    def reports(self) -> dict[bytes, ReportState]:
        """Every report's merged state, by id (what `CoordinatorView.reports` gives)."""
        rows = self.db.execute("SELECT id, state FROM reports ORDER BY id")
        return {r: state_from_json(json.loads(s)) for r, s in rows}

    def state(self, report: bytes) -> tuple[ReportState, ReportVerification] | None:
        row = self.db.execute(
            "SELECT state, verification, reasons FROM reports WHERE id = ?", (report,)
        ).fetchone()
        if row is None:
            return None
        reasons = tuple(json.loads(row[2]))
        return state_from_json(json.loads(row[0])), ReportVerification(row[1], reasons)

    def verification(self, report: bytes) -> ReportVerification:
        found = self.state(report)
        return found[1] if found is not None else ReportVerification("verified")

    @staticmethod
    def _where(q: ReportQuery) -> tuple[str, list[Any]]:
        """The SQL condition on `reports` that ``q``'s filters mean, and its arguments."""
        where: list[str] = ["1"]
        args: list[Any] = []
        if q.since is not None:
            where.append("last_time >= ?")
            args.append(q.since)
        if q.until is not None:
            where.append("first_time <= ?")
            args.append(q.until)
        if q.device is not None:
            where.append("id IN (SELECT report FROM devices WHERE device = ?)")
            args.append(q.device)
        if q.field is not None and q.value is not None:
            where.append("id IN (SELECT report FROM fields WHERE name = ? AND value = ?)")
            args += [q.field, q.value]
        elif q.field is not None:
            where.append("id IN (SELECT report FROM fields WHERE name = ?)")
            args.append(q.field)
        for column, wanted in (("conflict", q.conflict), ("findings", q.findings)):
            if wanted is not None:
                where.append(f"{column} = ?")
                args.append(int(wanted))
        if q.verification is not None:
            where.append("verification = ?")
            args.append(q.verification)
        if q.text:
            phrase = '"' + q.text.replace('"', '""') + '"'  # a phrase, never FTS syntax
            where.append("id IN (SELECT report FROM search WHERE search MATCH ?)")
            args.append(phrase)
        return " AND ".join(where), args

    def ids(self, q: ReportQuery) -> list[bytes]:
        """Every report id matching ``q``'s filters, in id order (``offset``/``limit`` unused)."""
        clause, args = self._where(q)
        return [
            r
            for (r,) in self.db.execute(f"SELECT id FROM reports WHERE {clause} ORDER BY id", args)
        ]  # noqa: S608

    def query(self, q: ReportQuery) -> tuple[int, list[dict[str, Any]]]:
        """The reports matching ``q`` (total, then one page of rows as JSON-ready dicts)."""
        clause, args = self._where(q)
        total = self.db.execute(f"SELECT count(*) FROM reports WHERE {clause}", args).fetchone()[0]  # noqa: S608
        rows = self.db.execute(
            f"SELECT id, verification, revisions, conflict, findings, first_time, last_time, state"  # noqa: S608
            f" FROM reports WHERE {clause} ORDER BY id LIMIT ? OFFSET ?",
            [*args, q.limit, q.offset],
        )
        page = []
        for rid, verification, revisions, conflict, flagged, first, last, state in rows:
            data = json.loads(state)
            page.append(
                {"report_id": rid.hex(), "verification": verification, "revisions": revisions,
                 "conflict": bool(conflict), "findings": bool(flagged), "first_time": first,
                 "last_time": last, "devices": data["authors"],
                 "fields": {n: f["value"] for n, f in data["fields"].items()}}
            )  # fmt: skip
        return int(total), page

    def detail(self, report: bytes) -> dict[str, Any] | None:
        """One report: merged fields with authors and times, notes, verification, history."""
        found = self.state(report)
        if found is None:
            return None
        state, verification = found
        data = state.to_json()
        data["verification"] = {"state": verification.state, "reasons": list(verification.reasons)}
        data["history"] = [
            {"revision": rid.hex(), "device": device.hex(), "client_time": when,
             "parents": json.loads(parents)}
            for rid, device, when, parents in self.db.execute(
                "SELECT id, device, client_time, parents FROM revisions WHERE report = ?"
                " ORDER BY client_time, id", (report,))
        ]  # fmt: skip
        return data
