"""The evidence story with real processes: a live `sealbox-server` and the real `sealbox` CLI.

A field device writes a report with a photo and edits it, a coordinator edits it too; another
report stays out of the bundle.  The coordinator exports the first report; then the server is
stopped and the bundle is verified by the CLI with no profile, no server and no organisation
key (PROTOCOL §22).  A flipped byte of the file is refused; the other report is nowhere in it.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.cli.conftest import LiveServer, devices, server  # noqa: F401 - fixtures

PHOTO_BYTES = 300_000


def test_a_report_exported_by_a_coordinator_verifies_offline_with_the_real_cli(
    server: LiveServer,  # noqa: F811
    devices,  # noqa: F811
    tmp_path: Path,
) -> None:
    coord, field = devices("coord"), devices("field")
    coord.run("org", "create", "--server", server.url, "--name", "Clinic")
    code = coord.run("invite", "create", "--role", "field").json["code"]
    field.run("enroll", code, "--label", "monitor phone")
    coord.run("sync")  # admits the field device (roster v2)

    photo = tmp_path / "market.jpg"
    photo.write_bytes(os.urandom(PHOTO_BYTES))
    report = field.run(
        "report", "new", "-f", "place=Market", "-f", "victims=2", "--attach", str(photo)
    ).json["report_id"]
    field.run("sync")
    field.run("report", "edit", report, "-f", "victims=3")
    field.run("report", "new", "-f", "title=CANARY-left-out-7731")
    field.run("sync")
    coord.run("sync")
    coord.run("report", "edit", report, "-f", "place=Central market")
    coord.run("sync")
    coord.run("sync")  # pulls its own edit back from the feed, with the log's checkpoint

    bundle = tmp_path / "evidence.sbx"
    exported = coord.run("evidence", "export", report[:12], "-o", str(bundle)).json
    assert exported["revisions"] == 3
    assert exported["attachments_included"] == 1
    assert exported["checkpoints"] >= 1
    assert bundle.stat().st_mode & 0o777 == 0o600
    data = bundle.read_bytes()
    assert b"CANARY-left-out-7731" not in data

    named = tmp_path / "named.sbx"
    coord.run("evidence", "export", report, "-o", str(named), "--labels", "--no-attachments")
    assert b"monitor phone" in named.read_bytes() and b"monitor phone" not in data

    server.stop()
    nobody = devices("nobody")  # no profile at all: the verifier needs none
    html = tmp_path / "summary.html"
    verified = nobody.run("evidence", "verify", str(bundle), "--html", str(html)).json
    assert verified["verified"] is True
    (state,) = verified["reports"].values()
    assert state["state"]["report_id"] == report
    rows = state["timeline"]
    assert [r["role"] for r in rows] == ["field", "field", "coordinator"]
    assert all(r["logged"].endswith(")") and "server clock" in r["logged"] for r in rows)
    assert any("attached market.jpg" in line for line in rows[0]["did"])
    assert any(line.startswith("key commitment:") for line in verified["claimed"])
    page = html.read_text()
    assert "Central market" in page and "device clock, claimed" in page

    labelled = nobody.run("evidence", "verify", str(named)).json
    (state,) = labelled["reports"].values()
    assert [r["label"] for r in state["timeline"]][:2] == ["monitor phone", "monitor phone"]
    assert any("1 attachment not included" in line for line in labelled["claimed"])

    human = nobody.run("evidence", "verify", str(bundle), as_json=False)
    assert "VERIFIED" in human.stdout and "Only claimed:" in human.stdout

    flipped = bytearray(data)
    flipped[len(flipped) // 2] ^= 0x40
    broken = tmp_path / "broken.sbx"
    broken.write_bytes(bytes(flipped))
    refused = nobody.run("evidence", "verify", str(broken), check=False)
    assert refused.code == 1
    assert refused.json["error"].startswith("NOT VERIFIED: ")
