"""Every read the Desk makes of the merged, verified state, behind one module.

Today it works over `Profile.view()` (each revision re-verified when the Desk unlocks and
after each write or sync); the encrypted index of `clients/local/index.py` will replace
the body of `Reading` without the pages changing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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

    @classmethod
    def from_query(cls, query: Any) -> Filters:
        names = cls.__dataclass_fields__
        return cls(**{n: str(query.get(n, "")).strip()[:500] for n in names})

    def query(self) -> dict[str, str]:
        return {n: getattr(self, n) for n in self.__dataclass_fields__ if getattr(self, n)}


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

    def invalidate(self) -> None:
        self._view = None

    @property
    def view(self) -> CoordinatorView:
        if self._view is None:
            self._view = self.profile.view()
        return self._view

    def findings(self) -> list[Finding]:
        return self.view.findings()

    def _row(self, state: ReportState) -> Row:
        devices = set(state.authors)
        found = tuple(f for f in self.findings() if f.device in devices)
        return Row(state, self.view.verification(state.report), found)

    def rows(self, filters: Filters | None = None) -> list[Row]:
        f = filters or Filters()
        out = []
        for state in self.view.reports().values():
            row = self._row(state)
            if _matches(row, f):
                out.append(row)
        return out

    def report(self, report_id: str) -> Row | None:
        try:
            report = bytes.fromhex(report_id)
        except ValueError:
            return None
        state = self.view.report(report)
        return None if state is None else self._row(state)

    def devices_seen(self) -> list[str]:
        seen: set[bytes] = set()
        for state in self.view.reports().values():
            seen.update(state.authors)
        return sorted(d.hex() for d in seen)

    def exported(self, filters: Filters, *, include_unverified: bool) -> list[Row]:
        """The filtered selection, without content not verified yet unless asked for."""
        keep = set(self.view.reports(include_unverified=include_unverified))
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
