"""Client-core rules seen through the CLI: admission, verification states in exports.

PROTOCOL §15.5 item 2 and §15.7: content from a device no coordinator admitted is
shown flagged, and left out of exports unless asked for, then marked.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from clients.local.transport import Transport
from crypto import SigningKey
from sync.client import (
    DeviceState,
    LogPosition,
    Request,
    drive,
    push_flow,
    seal_edit,
    verify_enrollment,
)
from sync.invite import Enrollment, InviteCode, seal_label
from sync.messages import b64encode
from sync.report import ReportContent
from sync.roster import Role
from tests.cli.conftest import LiveServer


def test_a_field_devices_first_sync_before_admission_says_uploads_wait(
    server: LiveServer, devices, tmp_path: Path
) -> None:
    coord, field = devices("coord"), devices("field")
    coord.run("org", "create", "--server", server.url, "--name", "Clinic")
    code = coord.run("invite", "create", "--role", "field").json["code"]
    field.run("enroll", code, "--label", "phone")
    (tmp_path / "photo.jpg").write_bytes(os.urandom(5000))
    field.run("report", "new", "-f", "place=x", "--attach", str(tmp_path / "photo.jpg"))
    first = field.run("sync", as_json=False)  # not admitted yet: nothing is wrong
    assert first.code == 0
    assert "until a coordinator admits this device" in " ".join(first.stderr.split())
    assert field.run("attachments", "queued").json["queued"]  # still queued
    coord.run("sync")  # admits
    assert field.run("sync").json["attachments_uploaded"] == 1


def _rogue_device(server: LiveServer, code_text: str) -> None:
    """What a malicious server can do with a real invite's id and the secret's hash: enroll a
    key of its own.  Here the test knows the secret, so it plays that part through the real
    endpoint, but its sealed label does not open with the secret (the server cannot make one
    that does), exactly as a server-made enrollment would look to a coordinator."""
    code = InviteCode.decode(code_text)
    key = SigningKey.generate()
    label = seal_label(
        "rogue", secret=os.urandom(32), invite_id=code.invite_id, device_id=key.verify_key.key_id
    )
    enrollment = Enrollment(code.org_id, code.invite_id, key.verify_key, Role.FIELD, label, None)
    org_path = f"/v1/orgs/{b64encode(code.org_id)}"
    body = {
        "enrollment": b64encode(enrollment.sign(key).to_bytes()),
        "secret": b64encode(code.secret),
    }
    anonymous, signed = Transport(server.url), Transport(server.url, signing_key=key)
    try:
        answer = anonymous.send(Request("POST", f"{org_path}/enroll", body, signed=False))
        roster, _, _ = verify_enrollment(code, answer)
        state = DeviceState(org_id=code.org_id, device_id=key.verify_key.key_id)
        content = ReportContent(client_time=int(time.time()), fields={"place": "ROGUE-CONTENT"})
        seal_edit(state, roster=roster, signing_key=key, report=os.urandom(16), content=content)
        flow = push_flow(
            state,
            server_key=roster.roster.server_key,
            max_items=100,
            max_bytes=1 << 20,
            org_path=org_path,
            log=LogPosition(code.org_id, roster.roster.server_key),
        )
        assert drive(flow, signed.send).stored == 2  # the sender key and the revision
    finally:
        anonymous.close()
        signed.close()


def test_content_of_a_device_nobody_admitted_is_flagged_and_left_out_of_exports(
    server: LiveServer, devices, tmp_path: Path
) -> None:
    coord, field = devices("coord"), devices("field")
    coord.run("org", "create", "--server", server.url, "--name", "Clinic")
    field.run("enroll", coord.run("invite", "create").json["code"], "--label", "phone")
    coord.run("sync")
    field.run("report", "new", "-f", "place=REAL-CONTENT")
    field.run("sync")
    _rogue_device(server, coord.run("invite", "create").json["code"])

    synced = coord.run("sync")
    assert any("none admitted" in w for w in synced.json["warnings"])
    assert any(f.startswith("pending-admission") for f in synced.json["findings"])
    listed = {
        r["fields"].get("place"): r["verification"] for r in coord.run("reports", "list").json
    }
    assert listed == {"REAL-CONTENT": "verified", "ROGUE-CONTENT": "pending-admission"}

    plain = coord.run("reports", "export", "--format", "json", as_json=False)
    assert "ROGUE-CONTENT" not in plain.stdout and "REAL-CONTENT" in plain.stdout
    assert "--include-unverified" in " ".join(plain.stderr.split())
    csv_out = coord.run("reports", "export", "--format", "csv", as_json=False).stdout
    assert "ROGUE-CONTENT" not in csv_out

    marked = json.loads(
        coord.run(
            "reports", "export", "--format", "json", "--include-unverified", as_json=False
        ).stdout
    )
    states = {r["fields"]["place"]["value"]: r["verification"]["state"] for r in marked}
    assert states == {"REAL-CONTENT": "verified", "ROGUE-CONTENT": "pending-admission"}
    rows = coord.run(
        "reports", "export", "--format", "csv", "--include-unverified", as_json=False
    ).stdout.splitlines()
    assert rows[0].split(",")[1] == "verification"
    assert any("ROGUE-CONTENT" in r and ",pending-admission," in r for r in rows)
