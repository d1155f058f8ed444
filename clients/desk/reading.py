"""Every read the Desk makes of the merged, verified state, behind one module.

A coordinator's reports table, search and report pages are answered by the encrypted local
index (`clients/local/index.py`, `Profile.index()`): SQL filters and FTS5 search narrow the
candidates, then each candidate is checked against the Desk's own filter semantics
(`_matches`), so the index never widens what a filter means. Where the index's query API
means something else, the filter is left to that check: a device id prefix is resolved to
the devices the index knows, "value contains" is a substring (the index compares whole
values), and "has findings" means a finding against one of the report's devices (the
index's flag also counts verification reasons). Search is by words: FTS5 finds the reports
holding the words as a phrase, and the substring check keeps those whose text holds it
(a fragment inside a word, e.g. "eckpoi", no longer matches). A text without any word
character is searched by substring over the other filters' candidates.

A field device keeps no index (it holds no decryption key); its pages read `Profile.view()`.
"""

from __future__ import annotations

import calendar
import datetime
from dataclasses import dataclass
from typing import Any

from clients.local.index import Index, ReportQuery
from clients.local.profile import Profile
from sync.client import CoordinatorView, ReportVerification
from sync.client.view import VERIFICATION_STATES, Finding
from sync.merge import ReportState
from sync.report import DELETED

__all__ = ["Filters", "Reading", "Row", "VERIFICATION_STATES", "value_text"]


def value_text(value: Any) -> str:
    return "" if value is DELETED else str(value)


@dataclass(frozen=True)
class Filters:
    """The reports table's filters; empty strings mean "any"."""

    q: str = ""
    device: str = ""
    field: str = ""
    value: str = ""
    conflict: str = ""  # "yes", "no" or ""
    findings: str = ""  # "yes", "no" or ""
    verification: str = ""
    since: str = ""  # a date, YYYY-MM-DD (UTC): reports with a revision on or after it
    until: str = ""  # a date, YYYY-MM-DD (UTC): reports with a revision on or before it

    @classmethod
    def from_query(cls, query: Any) -> Filters:
        names = cls.__dataclass_fields__
        return cls(**{n: str(query.get(n, "")).strip()[:500] for n in names})

    def query(self) -> dict[str, str]:
        return {n: getattr(self, n) for n in self.__dataclass_fields__ if getattr(self, n)}

    def times(self) -> tuple[int | None, int | None]:
        """`since` and `until` as Unix seconds (start and end of the day, UTC); a date that
        does not parse means "any"."""
        return _day(self.since, 0), _day(self.until, 86400 - 1)


def _day(text: str, offset: int) -> int | None:
    try:
        day = datetime.date.fromisoformat(text)
    except ValueError:
        return None
    return calendar.timegm(day.timetuple()) + offset


@dataclass(frozen=True)
class Row:
    state: ReportState
    verification: ReportVerification
    findings: tuple[Finding, ...]

    @property
    def report_id(self) -> str:
        return self.state.report.hex()


class Reading:
    """The merged state of one unlocked profile, computed once and dropped on every change."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self._view: CoordinatorView | None = None
        self._index: Index | None = None

    def invalidate(self) -> None:
        self._view = None
        self._index = None

    @property
    def view(self) -> CoordinatorView:
        if self._view is None:
            self._view = self.profile.view()
        return self._view

    @property
    def index(self) -> Index | None:
        """The profile's index, current with the store; None on a field device (no index)."""
        if self.profile.store.secrets.kem_seed is None:
            return None
        if self._index is None:
            self._index = self.profile.index()
        return self._index

    def findings(self) -> list[Finding]:
        index = self.index
        return self.view.findings() if index is None else index.findings()

    def _row(self, state: ReportState, verification: ReportVerification) -> Row:
        devices = set(state.authors)
        found = tuple(f for f in self.findings() if f.device in devices)
        return Row(state, verification, found)

    def total(self) -> int:
        index = self.index
        if index is None:
            return len(self.view.reports())
        return index.query(ReportQuery(limit=0))[0]

    def rows(self, filters: Filters | None = None) -> list[Row]:
        """Every report matching ``filters``, in id order (what an export takes)."""
        return self.page(filters, 0, None)[1]

    def page(
        self, filters: Filters | None, offset: int, limit: int | None
    ) -> tuple[int, list[Row]]:
        """How many reports match ``filters``, and the rows ``offset`` to ``offset + limit``.

        Only the page's rows are read out of the index when the SQL filters are exact (no
        search text, no "value contains", no "has findings"); otherwise every candidate is
        checked (`_matches`), and the count is of the rows that pass."""
        f = filters or Filters()
        index = self.index
        if index is None:
            rows = self.scanned(f)
            return len(rows), rows[offset : None if limit is None else offset + limit]
        exact = not (f.q or f.value or f.findings)
        findings = self.findings()
        ids = self._candidates(index, f)
        end = None if limit is None else offset + limit
        out = []
        for report in ids if not exact else ids[offset:end]:
            got = index.state(report)
            if got is None:
                continue
            authors = set(got[0].authors)
            row = Row(got[0], got[1], tuple(x for x in findings if x.device in authors))
            if exact or _matches(row, f):
                out.append(row)
        if exact:
            return len(ids), out
        return len(out), out[offset:end]

    def _candidates(self, index: Index, f: Filters) -> list[bytes]:
        """The ids the index's SQL filters and FTS5 search give (a superset of the matches)."""
        since, until = f.times()
        devices: list[bytes | None] = [None]
        if f.device:
            devices = [d for d in self._devices() if d.hex().startswith(f.device.lower())]
        text = f.q if any(c.isalnum() for c in f.q) else None
        found: set[bytes] = set()
        for device in devices:
            query = ReportQuery(
                since=since,
                until=until,
                device=device,
                field=f.field or None,
                conflict={"yes": True, "no": False}.get(f.conflict),
                verification=f.verification or None,
                text=text,
            )
            found.update(index.ids(query))
        return sorted(found)

    def scanned(self, f: Filters) -> list[Row]:
        """The view-based answer: every report of the view checked in Python (a field
        device's pages, and the reference the index-based answer is tested against)."""
        since, until = f.times()
        out = []
        for report, state in self.view.reports().items():
            if since is not None or until is not None:
                times = [r.content.client_time for r in self.view.revisions(report)]
                if not times or since is not None and max(times) < since:
                    continue
                if until is not None and min(times) > until:
                    continue
            row = self._row(state, self.view.verification(report))
            if _matches(row, f):
                out.append(row)
        return out

    def report(self, report_id: str) -> Row | None:
        try:
            report = bytes.fromhex(report_id)
        except ValueError:
            return None
        # The view, not the index: the index's state drops each attachment's transfer (its
        # key and sealed-chunk manifest, PROTOCOL §13.3), which the page needs to show the
        # attachment, and the edit and resolve actions build on this very state.
        state = self.view.report(report)
        return None if state is None else self._row(state, self.view.verification(report))

    def _devices(self) -> list[bytes]:
        index = self.index
        if index is None:
            seen: set[bytes] = set()
            for state in self.view.reports().values():
                seen.update(state.authors)
            return sorted(seen)
        # The query API has no list of devices; the index's own table answers it.
        return [bytes(d) for (d,) in index.db.execute("SELECT DISTINCT device FROM devices")]

    def devices_seen(self) -> list[str]:
        return sorted(d.hex() for d in self._devices())

    def exported(self, filters: Filters, *, include_unverified: bool) -> list[Row]:
        """The filtered selection, without content not verified yet unless asked for."""
        index = self.index
        if index is None:
            keep = set(self.view.reports(include_unverified=include_unverified))
        else:
            keep = set(index.report_ids(verified_only=not include_unverified))
        return [r for r in self.rows(filters) if r.state.report in keep]


def _matches(row: Row, f: Filters) -> bool:
    s = row.state
    if f.device and not any(a.hex().startswith(f.device.lower()) for a in s.authors):
        return False
    if f.conflict == "yes" and not s.conflicts or f.conflict == "no" and s.conflicts:
        return False
    if f.findings == "yes" and not row.findings or f.findings == "no" and row.findings:
        return False
    if f.verification and row.verification.state != f.verification:
        return False
    if f.field or f.value:
        wanted = f.value.casefold()
        hit = any(
            (not f.field or field.name == f.field)
            and any(wanted in value_text(w.value).casefold() for w in field.writes)
            for field in s.fields
        )
        if not hit:
            return False
    if f.q:
        needle = f.q.casefold()
        texts = [field.name for field in s.fields]
        texts += [value_text(w.value) for field in s.fields for w in field.writes]
        texts += [n.text for n in s.notes]
        if not any(needle in t.casefold() for t in texts):
            return False
    return True
