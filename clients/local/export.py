"""Exports of merged reports, shared by `sealbox reports export` and Sealbox Desk.

JSON is exact (JSON has no formulas and escapes control characters itself). CSV goes through
`defusedcsv`, which neutralises cells starting with ``=``, ``+``, ``-``, ``@``, tab or
carriage return (the OWASP CSV-injection rule): a value a seized field device wrote cannot
become a live formula in the coordinator's spreadsheet.
"""

from __future__ import annotations

import io
import json

from defusedcsv import csv  # type: ignore[import-untyped]

from sync.client import ReportVerification
from sync.merge import ReportState

__all__ = ["export_csv", "export_json"]


def export_json(rows: list[tuple[ReportState, ReportVerification]]) -> str:
    """Each report as `ReportState.to_json`, with its verification state and reasons."""
    out = []
    for state, verification in rows:
        data = state.to_json()
        data["verification"] = {"state": verification.state, "reasons": list(verification.reasons)}
        out.append(data)
    return json.dumps(out, indent=2, sort_keys=True) + "\n"


def export_csv(rows: list[tuple[ReportState, ReportVerification]]) -> str:
    """One line per written value (every value of a field in conflict), formula-safe."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        ["report_id", "verification", "field", "value", "deleted", "conflict", "author",
         "revision", "client_time"]
    )  # fmt: skip
    for s, verification in rows:
        for f in s.fields:
            for w in f.writes:
                writer.writerow(
                    [s.report.hex(), verification.state, f.name, "" if w.deleted else w.value,
                     w.deleted, f.conflict, w.author.hex(), w.revision.hex(), w.client_time]
                )  # fmt: skip
    return buffer.getvalue()
