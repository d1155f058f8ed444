"""Scenarios through the real `sealbox` executable against a live server.

Offline conflict and its resolution, revocation, panic wipe, and a sync killed
mid-way and resumed (PROTOCOL §14.6, §15.2-§15.8, §16).
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from tests.cli.conftest import grep_tree


def _org(server, devices, *names: str):
    coord = devices("coordinator")
    coord.run("org", "create", "--server", server.url, "--name", "Clinic")
    fields = []
    for name in names:
        code = coord.run("invite", "create", "--role", "field").json["code"]
        device = devices(name)
        device.device_id = device.run("enroll", code, "--label", name).json["device_id"]
        fields.append(device)
    coord.run("sync")  # admits the enrolled devices into roster v2
    return coord, fields


def test_offline_conflict_keeps_both_values_and_resolution_converges(server, devices) -> None:
    coord, (field,) = _org(server, devices, "field")
    report = field.run("report", "new", "-f", "place=Market", "-f", "victims=2").json["report_id"]
    field.run("sync")
    coord.run("sync")

    # Apart: both edit the same field, and the field worker also edits another one.
    server.stop()
    field.run("report", "edit", report, "-f", "place=North market", "-f", "victims=3")
    coord.run("report", "edit", report, "-f", "place=Central market")
    server.start()
    field.run("sync")
    coord.run("sync")

    conflicts = coord.run("conflicts", "list").json
    assert [(c["report_id"], c["field"]) for c in conflicts] == [(report, "place")]
    values = {(v["value"], v["author"]) for v in conflicts[0]["values"]}
    assert values == {
        ("North market", field.device_id),
        ("Central market", coord.run("status").json["device_id"]),
    }
    shown = coord.run("reports", "show", report).json
    assert shown["fields"]["victims"] == {
        **shown["fields"]["victims"],
        "value": "3",
        "conflict": False,
    }
    assert shown["fields"]["place"]["conflict"] and shown["fields"]["place"]["value"] is None

    resolved = coord.run("conflicts", "resolve", report, "-f", "place=North market").json
    assert resolved["unresolved"] == []
    coord.run("sync")
    assert coord.run("conflicts", "list").json == []
    after = coord.run("reports", "show", report).json
    assert after["fields"]["place"]["value"] == "North market"
    assert len(after["heads"]) == 1

    # Converges: re-reading everything from the server gives the same state.
    export = coord.run("reports", "export", "--format", "json", as_json=False).stdout
    coord.run("sync")
    assert coord.run("reports", "export", "--format", "json", as_json=False).stdout == export
    assert json.loads(export)[0]["fields"]["place"]["value"] == "North market"
    csv_text = coord.run("reports", "export", "--format", "csv", as_json=False).stdout
    assert "place,North market" in csv_text


def test_revoked_device_sync_fails_clearly_keeps_its_queue_and_others_carry_on(
    shared_server, devices
) -> None:
    coord, (seized, other) = _org(shared_server, devices, "seized", "other")
    seized.run("report", "new", "-f", "title=before seizure")
    seized.run("sync")
    revoked = coord.run("devices", "revoke", seized.device_id).json
    assert revoked["revoked_after"] == 2 and revoked["roster_version"] == 3

    seized.run("report", "new", "-f", "title=after seizure")
    failed = seized.run("sync", check=False)
    assert failed.code == 3
    assert "revoked" in failed.stderr
    assert seized.run("outbox").json["count"] == 1  # nothing queued is lost

    other.run("report", "new", "-f", "title=unaffected")
    assert other.run("sync").json["purged"] == 2
    coord.run("sync")
    titles = sorted(r["fields"]["title"] for r in coord.run("reports", "list").json)
    assert titles == ["before seizure", "unaffected"]
    states = {d["device_id"]: d for d in coord.run("devices", "list").json}
    assert states[seized.device_id]["revoked_after"] == 2


def test_panic_wipe_shreds_the_profile_in_well_under_a_second(shared_server, devices) -> None:
    coord, (field,) = _org(shared_server, devices, "field")
    field.run("report", "new", "-f", "secret=CANARY-wipe-5521")
    started = time.monotonic()
    wiped = field.run("wipe", "--panic", "--yes").json
    elapsed = time.monotonic() - started
    assert wiped["seconds"] < 0.2
    assert elapsed < 5  # the whole process, interpreter start included
    assert not field.home.exists()
    after = field.run("status", check=False)
    assert after.code == 1 and "no sealbox profile" in after.stderr
    refused = field.run("wipe", check=False)
    assert refused.code == 1  # never without --panic --yes


def test_wrong_passphrase_fails_cleanly(shared_server, devices) -> None:
    coord, _ = _org(shared_server, devices)
    coord.env["SEALBOX_PASSPHRASE"] = "not the passphrase"
    result = coord.run("status", check=False)
    assert result.code == 1 and "wrong passphrase" in result.stderr


def test_canaries_never_reach_disk_on_either_side_at_any_step(shared_server, devices) -> None:
    coord, (field,) = _org(shared_server, devices, "field")
    canaries = [b"CANARY-Mariupol-0042", b"CANARY-note-Ivanka", b"CANARY-coord-edit"]
    homes = [coord.home, field.home, shared_server.data_dir]
    report = field.run(
        "report", "new", "-f", "where=CANARY-Mariupol-0042", "--note", "CANARY-note-Ivanka"
    ).json["report_id"]
    for step in (
        lambda: field.run("sync"),
        lambda: coord.run("sync"),
        lambda: coord.run("report", "edit", report, "-f", "who=CANARY-coord-edit"),
        lambda: coord.run("sync"),
        lambda: coord.run("reports", "show", report),
    ):
        step()
        assert [h for home in homes for h in grep_tree(home, canaries)] == []
    shown = coord.run("reports", "show", report).json
    assert shown["fields"]["who"]["value"] == "CANARY-coord-edit"
    assert [n["text"] for n in shown["notes"]] == ["CANARY-note-Ivanka"]


@pytest.mark.timeout(240)
def test_a_sync_killed_mid_way_resumes_with_nothing_lost_or_duplicated(
    shared_server, devices, tmp_path
) -> None:
    coord, (field,) = _org(shared_server, devices, "field")
    n = 400
    source = tmp_path / "reports.jsonl"
    source.write_text(
        "".join(json.dumps({"title": f"report {i}", "n": str(i)}) + "\n" for i in range(n))
    )
    field.run("report", "import", str(source))
    assert field.run("outbox").json["count"] == n + 1

    store = field.home / "store.db"
    before = store.stat().st_mtime_ns
    process = field.popen("sync", "--batch-size", "4")
    deadline = time.monotonic() + 60
    while (
        store.stat().st_mtime_ns == before
        and time.monotonic() < deadline
        and process.poll() is None
    ):
        time.sleep(0.005)
    time.sleep(0.3)  # let the first checkpoint commit, then kill mid-sync
    os.kill(process.pid, signal.SIGKILL)
    process.communicate()
    left = field.run("outbox").json["count"]
    assert 0 < left < n + 1, "the kill should land in the middle of the sync"

    resumed = field.run("sync").json
    assert resumed["outbox"] == 0
    assert field.run("outbox").json["count"] == 0
    assert field.run("status").json["sent"] == n + 1

    coord.run("sync")
    listed = coord.run("reports", "list").json
    assert len(listed) == n
    assert sorted(int(r["fields"]["n"]) for r in listed) == list(range(n))
    assert all(r["revisions"] == 1 for r in listed)
    assert coord.run("status").json["findings"] == []


def test_an_expired_invite_is_refused_with_a_clear_message(shared_server, devices) -> None:
    coord, _ = _org(shared_server, devices)
    # 3 s, not 1: the expiry is whole seconds from the CLI's clock, so a 1 s invite could
    # already be expired when the server registers it (a flake seen under load).
    code = coord.run("invite", "create", "--role", "field", "--expires", "3s").json["code"]
    time.sleep(4.1)
    late = devices("late")
    result = late.run("enroll", code, check=False)
    assert result.code == 3
    assert "expired" in result.stderr
    assert not (late.home / "keyfile").exists()


def test_a_server_restored_from_an_old_backup_is_reported_healed_and_nothing_local_is_lost(
    server, devices, tmp_path
) -> None:
    import shutil

    coord, (field,) = _org(server, devices, "field")
    report = field.run("report", "new", "-f", "title=kept").json["report_id"]
    field.run("sync")
    coord.run("sync")
    server.stop()
    backup = tmp_path / "backup"
    shutil.copytree(server.data_dir, backup)  # last week's backup: roster v2
    server.start()

    code = coord.run("invite", "create").json["code"]
    devices("second").run("enroll", code)
    assert coord.run("sync").json["roster_version"] == 3
    coord.run("report", "edit", report, "-f", "checked=yes")
    coord.run("sync")

    server.stop()  # the operator restores the backup
    shutil.rmtree(server.data_dir)
    shutil.copytree(backup, server.data_dir)
    server.start()
    healed = coord.run("sync").json
    assert healed["roster_rollback"] == 2 and healed["roster_reposted"] == 1
    assert healed["server_went_back"] is True and healed["republished"] >= 1
    warnings = coord.run("status").json["warnings"]
    assert any("went back in time" in w for w in warnings)
    assert any("older than the verified version 3" in w for w in warnings)
    shown = coord.run("reports", "show", report).json
    assert shown["fields"]["title"]["value"] == "kept"
    assert shown["fields"]["checked"]["value"] == "yes"
    # The re-posted roster is served again, so devices move on to version 3.
    field.run("sync")
    assert field.run("status").json["roster_version"] == 3


def test_a_second_coordinator_is_admitted_and_both_coordinators_show_the_same_state(
    shared_server, devices
) -> None:
    # PROTOCOL §15.7 item 1, §14.7 item 1: the role comes from the invite; a coordinator
    # enrolls with its HPKE key, is admitted, and devices seal new epochs to it too.
    first, (field,) = _org(shared_server, devices, "field")
    code = first.run("invite", "create", "--role", "coordinator").json["code"]
    second = devices("second")
    enrolled = second.run("enroll", code, "--label", "deputy").json
    assert enrolled["role"] == "coordinator"
    assert first.run("sync").json["roster_version"] == 3
    field.run("sync")  # learns roster v3: its next epoch is sealed to both coordinators
    report = field.run("report", "new", "-f", "place=Market", "-f", "victims=2").json["report_id"]
    field.run("sync")
    second.run("sync")
    second.run("report", "edit", report, "-f", "victims=3")
    second.run("sync")
    first.run("sync")
    shown = [c.run("reports", "show", report).json for c in (first, second)]
    assert shown[0] == shown[1]
    assert shown[0]["fields"]["victims"]["value"] == "3"
    assert shown[0]["fields"]["victims"]["values"][0]["author"] == enrolled["device_id"]
