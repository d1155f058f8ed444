"""The readable summary of an evidence bundle: one self-contained HTML page (docs/EVIDENCE.md §6).

Rendered from a *verified* bundle only (`sync.evidence.VerifiedBundle`), so it shows nothing
the checks did not establish, and says which times are whose clock.  No script, no style sheet
or font or image from elsewhere: the page opens the same on a machine with no network, years
later.  Every value from a report is escaped (Jinja2 autoescape).
"""

from __future__ import annotations

import datetime
from typing import Any

from jinja2 import Environment, StrictUndefined

from sync.evidence import VerifiedBundle, claimed, proven
from sync.report import DELETED

__all__ = ["render_summary", "timeline"]

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sealbox evidence bundle: {{ reports|length }} report(s)</title>
<style>
body{font-family:sans-serif;margin:2em;max-width:70em;color:#111}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #999;padding:.3em .5em;
vertical-align:top;text-align:left}th{background:#eee}code{font-size:.9em;word-break:break-all}
.claim{color:#8a4b00}.proven{color:#0b5d1e}
</style></head><body>
<h1>Sealbox evidence bundle</h1>
<p>Organisation <code>{{ org }}</code>. Exported by coordinator <code>{{ exporter }}</code>
at <span class="claim">{{ exported_at }} (the exporter's clock, as claimed)</span>.
Roster chain versions 1&ndash;{{ roster_version }}, genesis fingerprint <code>{{ genesis }}</code>,
newest <code>{{ fingerprint }}</code>.</p>
<h2>What the verifier proved</h2>
<ul class="proven">{% for line in proven %}<li>{{ line }}</li>{% endfor %}</ul>
<h2>What is only claimed</h2>
<ul class="claim">{% for line in claimed %}<li>{{ line }}</li>{% endfor %}</ul>
<h2>Devices</h2>
<table><tr><th>device</th><th>role</th><th>label (exporter's claim)</th>
<th>in the roster from version</th><th>revoked after device seq</th></tr>
{% for m in members %}<tr><td><code>{{ m.device }}</code></td><td>{{ m.role }}</td>
<td>{{ m.label }}</td><td>{{ m.listed_from }}</td><td>{{ m.revoked }}</td></tr>{% endfor %}
</table>
{% for r in reports %}
<h2>Report <code>{{ r.id }}</code></h2>
<h3>Current state (merged from the revisions below)</h3>
<table><tr><th>field</th><th>value</th><th>written by</th></tr>
{% for f in r.fields %}<tr><td>{{ f.name }}</td><td>{{ f.value }}</td><td>{{ f.by }}</td></tr>
{% endfor %}</table>
{% if r.conflicts %}<p>Fields in conflict (concurrent writes, all values kept):
{{ r.conflicts|join(", ") }}</p>{% endif %}
<h3>Timeline</h3>
<table><tr><th>#</th><th>revision</th><th>author (device, role)</th><th>device seq</th>
<th>written at<br><span class="claim">device clock, claimed</span></th>
<th>server had stored it by<br><span class="proven">server-signed checkpoint</span></th>
<th>what it did</th></tr>
{% for t in r.timeline %}<tr><td>{{ loop.index }}</td><td><code>{{ t.id }}</code></td>
<td><code>{{ t.device }}</code> {{ t.role }}{% if t.label %} ({{ t.label }}){% endif %}</td>
<td>{{ t.seq }}</td><td class="claim">{{ t.written }}</td><td>{{ t.logged }}</td>
<td>{% for line in t.did %}{{ line }}<br>{% endfor %}</td></tr>{% endfor %}
</table>
{% endfor %}
<h2>Attachments</h2>
<table><tr><th>name</th><th>media type</th><th>size (bytes)</th><th>SHA-256</th>
<th>in this bundle</th></tr>
{% for a in attachments %}<tr><td>{{ a.name }}</td><td>{{ a.media }}</td><td>{{ a.size }}</td>
<td><code>{{ a.sha256 }}</code></td><td>{{ a.included }}</td></tr>{% endfor %}
</table>
<p>Check this bundle yourself: <code>sealbox evidence verify FILE</code>, or with any CBOR,
Ed25519, SHA-256 and ChaCha20-Poly1305 implementation as docs/EVIDENCE.md describes.</p>
</body></html>
"""

_ENV = Environment(autoescape=True, undefined=StrictUndefined, keep_trailing_newline=True)
_TEMPLATE = _ENV.from_string(_PAGE)


def _when(seconds: int) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _value(value: object) -> str:
    return "(deleted)" if value is DELETED else str(value)


def timeline(v: VerifiedBundle, report: bytes) -> list[dict[str, Any]]:
    """The report's revisions in the order the summary shows them (`VerifiedBundle.history`)."""
    rows = []
    for r in v.history(report):
        did = [f"set {name} = {_value(value)}" for name, value in sorted(r.content.fields.items())]
        did += [f"note: {note}" for note in r.content.notes]
        did += [f"attached {a.name} ({a.size} bytes)" for a in r.content.attachments]
        if r.content.resolves:
            did.append("resolves a conflict")
        logged = "not shown in this bundle"
        if r.logged is not None:
            logged = (
                f"{_when(r.logged.issued_at)} (server clock; log position {r.logged.server_seq}"
                f" of {r.logged.size}, checkpoint {r.logged.code})"
            )
        member = v.members.get(r.device)
        rows.append(
            {
                "id": r.id.hex()[:16],
                "device": r.device.hex()[:16],
                "role": r.role,
                "label": member.label if member is not None else None,
                "seq": r.seq,
                "written": _when(r.content.client_time),
                "logged": logged,
                "did": did,
            }
        )
    return rows


def render_summary(v: VerifiedBundle) -> str:
    """The summary page of a verified bundle (deterministic: the same bundle, the same page)."""
    reports = []
    for report, state in v.states.items():
        fields = [
            {
                "name": f.name,
                "value": " | ".join(_value(w.value) for w in f.writes),
                "by": ", ".join(sorted({w.author.hex()[:16] for w in f.writes})),
            }
            for f in state.fields
        ]
        reports.append(
            {
                "id": report.hex(),
                "fields": fields,
                "conflicts": [f.name for f in state.conflicts],
                "timeline": timeline(v, report),
            }
        )
    members = [
        {
            "device": m.device_id.hex(),
            "role": m.role,
            "label": m.label or "",
            "listed_from": m.listed_from,
            "revoked": "" if m.revoked_after is None else m.revoked_after,
        }
        for m in v.members.values()
    ]
    attachments = [
        {
            "name": a.manifest.name,
            "media": a.manifest.media_type,
            "size": a.manifest.size,
            "sha256": a.manifest.sha256.hex(),
            "included": "yes, hash checked" if a.included else "no",
        }
        for a in v.attachments.values()
    ]
    return _TEMPLATE.render(
        org=v.org_id.hex(),
        exporter=v.exporter.hex(),
        exported_at=_when(v.exported_at),
        roster_version=v.roster_version,
        genesis=v.genesis_fingerprint.hex(),
        fingerprint=v.fingerprint.hex(),
        proven=proven(v),
        claimed=claimed(v),
        members=members,
        reports=reports,
        attachments=attachments,
    )
