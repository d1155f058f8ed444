"""A field device that wraps different chain keys to different coordinators (THREAT_MODEL §7.11).

Real processes: a live `sealbox-server`, two coordinators and an honest field device driven
through the real `sealbox` executable. The malicious field device is admitted like any other
(it enrolls with a real invite and seals its label with the invite's secret), then pushes,
over the real signed HTTP API, one key envelope whose header commits to the chain key wrapped
to the first coordinator while the second coordinator's wrap holds another one, and a revision
sealed under the committed key (PROTOCOL §4.3 items 7-8, §15.5 item 2).
"""

from __future__ import annotations

import os
import time

from clients.local.transport import Transport
from crypto import ChainKey, SigningKey, message_key_at, seal_revision
from crypto.envelope import _seal_sender_key_from_parts
from sync.client import (
    DeviceState,
    LogPosition,
    Request,
    drive,
    push_flow,
    verify_enrollment,
)
from sync.invite import Enrollment, InviteCode, seal_label
from sync.messages import b64encode
from sync.report import ReportContent
from sync.roster import Role, SignedRoster
from tests.cli.conftest import LiveServer


def _enroll(server: LiveServer, code_text: str) -> tuple[SigningKey, SignedRoster]:
    """Enroll a key of the test's own with a real invite and a label that opens with its
    secret, so that the issuing coordinator admits it at its next sync (PROTOCOL §6, §15.7)."""
    code = InviteCode.decode(code_text)
    key = SigningKey.generate()
    label = seal_label(
        "equivocator", secret=code.secret, invite_id=code.invite_id, device_id=key.verify_key.key_id
    )
    enrollment = Enrollment(code.org_id, code.invite_id, key.verify_key, Role.FIELD, label, None)
    body = {
        "enrollment": b64encode(enrollment.sign(key).to_bytes()),
        "secret": b64encode(code.secret),
    }
    anonymous = Transport(server.url)
    try:
        answer = anonymous.send(
            Request("POST", f"/v1/orgs/{b64encode(code.org_id)}/enroll", body, signed=False)
        )
    finally:
        anonymous.close()
    roster, _, _ = verify_enrollment(code, answer)
    return key, roster


def _push_equivocation(
    server: LiveServer, key: SigningKey, roster: SignedRoster, first_id: bytes
) -> bytes:
    """Push a key envelope whose wraps carry two chain keys and a revision under it."""
    org = roster.roster.org_id
    committed, other = ChainKey.generate(), ChainKey.generate()
    coordinators = roster.roster.active_coordinators()
    assert len(coordinators) == 2
    wrapped = [
        (m.kem_key, committed if m.device_id == first_id else other)
        for m in coordinators
        if m.kem_key is not None
    ]
    key_envelope = _seal_sender_key_from_parts(
        org=org,
        seq=1,
        prev=bytes(32),
        roster_version=roster.roster.version,
        committed=committed,
        wrapped=wrapped,
        signing_key=key,
    )
    report = os.urandom(16)
    content = ReportContent(client_time=int(time.time()), fields={"place": "EQUIVOCATED"})
    revision = seal_revision(
        org=org,
        report=report,
        parents=(),
        seq=2,
        prev=key_envelope.id,
        roster_version=roster.roster.version,
        key_seq=1,
        message_key=message_key_at(committed, 1),
        content=content.encode(),
        signing_key=key,
    )
    state = DeviceState(org_id=org, device_id=key.verify_key.key_id)
    state._append(key_envelope, None)
    state._append(revision, report)
    flow = push_flow(
        state,
        server_key=roster.roster.server_key,
        max_items=100,
        max_bytes=1 << 20,
        org_path=f"/v1/orgs/{b64encode(org)}",
        log=LogPosition(org, roster.roster.server_key),
    )
    signed = Transport(server.url, signing_key=key)
    try:
        assert drive(flow, signed.send).stored == 2  # the server stores ciphertext it cannot judge
    finally:
        signed.close()
    return report


def test_one_coordinator_reads_the_report_the_other_sees_a_key_commitment_mismatch(
    server: LiveServer, devices
) -> None:
    # PROTOCOL §4.3 item 7, §15.5 item 2; THREAT_MODEL §7.11: no two coordinators read
    # different content from one signed revision; the one whose wrap does not match the
    # signed commitment sees the finding and no content; nothing honest is flagged.
    first, second, honest = devices("first"), devices("second"), devices("honest")
    first.run("org", "create", "--server", server.url, "--name", "Clinic")
    code = first.run("invite", "create", "--role", "coordinator").json["code"]
    second.run("enroll", code, "--label", "deputy")
    first.run("sync")  # admits the second coordinator: roster v2 seals to both
    second.run("sync")
    honest.run("enroll", first.run("invite", "create").json["code"], "--label", "phone")
    key, roster = _enroll(server, first.run("invite", "create", "--role", "field").json["code"])
    assert len(roster.roster.recipients()) == 2
    first.run("sync")  # admits both field devices
    honest.run("sync")
    honest.run("report", "new", "-f", "place=HONEST")
    honest.run("sync")
    first_id = bytes.fromhex(first.run("status").json["device_id"])
    report = _push_equivocation(server, key, roster, first_id)
    first.run("sync")
    synced = second.run("sync")

    device = key.verify_key.key_id.hex()[:12]
    expected = [
        f"key-commitment-mismatch: device {device} seq 1: its author gave coordinators",
        f"key-commitment-mismatch: device {device} seq 2: sealed under the sender key at seq 1",
    ]
    for findings in (synced.json["findings"], second.run("status").json["findings"]):
        assert [f[: len(e)] for f, e in zip(findings, expected, strict=True)] == expected
    listed = second.run("reports", "list", as_json=False)
    assert "WARNING key-commitment-mismatch" in " ".join(listed.stderr.split())
    assert "EQUIVOCATED" not in listed.stdout
    assert {
        r["fields"]["place"]: r["verification"] for r in second.run("reports", "list").json
    } == {"HONEST": "verified"}
    assert second.run("reports", "show", report.hex(), check=False).code != 0

    assert first.run("status").json["findings"] == []
    assert {r["fields"]["place"]: r["verification"] for r in first.run("reports", "list").json} == {
        "HONEST": "verified",
        "EQUIVOCATED": "verified",
    }
