"""Scenario: the full flow through real processes (PROTOCOL §15, §16).

Create an organisation, invite, enroll, write a report offline, sync, and read
it as the coordinator; the field device's home never holds readable content.
"""

from __future__ import annotations

from tests.cli.conftest import grep_tree

CANARIES = [b"CANARY-Hrodna-7731", b"CANARY-witness-Olena", b"CANARY-note-4412"]


def test_full_flow_create_invite_enroll_report_offline_sync_decrypt(server, devices) -> None:
    coord = devices("coordinator")
    field = devices("field")

    created = coord.run("org", "create", "--server", server.url, "--name", "Monitors").json
    assert len(created["org_id"]) == 32

    invite = coord.run("invite", "create", "--role", "field", "--expires", "1h").json
    assert invite["code"].startswith("sbx1:")

    enrolled = field.run("enroll", invite["code"], "--label", "phone of O.").json
    assert enrolled["role"] == "field"

    # Offline: the server is not needed to write reports.
    server.stop()
    report = field.run(
        "report",
        "new",
        "--field",
        "place=CANARY-Hrodna-7731",
        "--field",
        "witness=CANARY-witness-Olena",
        "--note",
        "CANARY-note-4412",
    ).json["report_id"]
    assert field.run("outbox").json["count"] == 2  # sender key + revision
    assert grep_tree(field.home, CANARIES) == []
    server.start()

    # The coordinator admits the device, then the field device syncs and purges on receipt.
    coord.run("sync")
    pushed = field.run("sync").json
    assert pushed["purged"] == 2 and pushed["outbox"] == 0
    assert field.run("outbox").json == {"count": 0, "queued": [], "rejected": [], "sent": 2}
    assert grep_tree(field.home, CANARIES) == []

    pulled = coord.run("sync").json
    assert pulled["reports"] == 1 and pulled["findings"] == []
    shown = coord.run("reports", "show", report).json
    assert shown["fields"]["place"]["value"] == "CANARY-Hrodna-7731"
    assert shown["fields"]["witness"]["values"][0]["author"] == enrolled["device_id"]
    assert [n["text"] for n in shown["notes"]] == ["CANARY-note-4412"]
    # Nothing readable in the coordinator's home either, nor in anything the server wrote.
    assert grep_tree(coord.home, CANARIES) == []
    assert grep_tree(server.data_dir, CANARIES) == []

    status = field.run("status").json
    assert status["outbox"] == 0 and status["sent"] == 2 and status["roster_version"] == 2
    assert status["receipts"] == 1  # the signed proof of delivery is kept
    devices_seen = coord.run("devices", "list").json
    labels = {d["device_id"]: d["label"] for d in devices_seen}
    assert labels[enrolled["device_id"]] == "phone of O."
