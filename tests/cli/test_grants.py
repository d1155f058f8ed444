"""Grants with real processes (PROTOCOL §19): a coordinator admitted late reads the whole
archive; a server that replays or swaps grants is refused; keys rotate.

Each scenario runs the real `sealbox-server` and the real `sealbox` CLI (tests/cli/conftest.py).
"""

from __future__ import annotations

import json
from pathlib import Path

from crypto import encoding
from sync.messages import b64decode, b64encode
from tests.cli.conftest import Device
from tests.cli.hostile_proxy import Answer, HostileProxy, Seen


def _org(server, devices, *names: str) -> tuple[Device, list[Device]]:
    coord = devices("founder")
    coord.run("org", "create", "--server", server.url, "--name", "Clinic")
    fields = []
    for name in names:
        code = coord.run("invite", "create", "--role", "field").json["code"]
        device = devices(name)
        device.device_id = device.run("enroll", code, "--label", name).json["device_id"]
        fields.append(device)
    coord.run("sync")  # admits the enrolled field devices into roster v2
    return coord, fields


def _import(device: Device, tmp_path: Path, count: int, tag: str) -> list[str]:
    source = tmp_path / f"{tag}.jsonl"
    lines = [json.dumps({"place": f"{tag}-{i}", "victims": str(i % 7)}) for i in range(count)]
    source.write_text("\n".join(lines) + "\n")
    return device.run("report", "import", str(source)).json["report_ids"]


def _second_coordinator(first: Device, devices, name: str = "deputy") -> Device:
    code = first.run("invite", "create", "--role", "coordinator").json["code"]
    second = devices(name)
    second.device_id = second.run("enroll", code, "--label", name).json["device_id"]
    return second


def test_a_coordinator_admitted_after_300_reports_reads_all_of_them_with_no_warning(
    server, devices, tmp_path: Path
) -> None:
    # PROTOCOL §19.1: the admitting coordinator grants the newcomer every epoch it holds;
    # §19.3: the newcomer opens them like its own wraps, checked against each commitment.
    founder, (north, south) = _org(server, devices, "north", "south")
    ids = _import(north, tmp_path, 200, "north") + _import(south, tmp_path, 99, "south")
    media = tmp_path / "photo.jpg"
    media.write_bytes(bytes(range(256)) * 40)
    ids.append(
        north.run("report", "new", "-f", "kind=photo", "--attach", str(media)).json["report_id"]
    )
    for field in (north, south):
        field.run("sync")
    founder.run("sync")
    founder.run("report", "edit", ids[0], "-f", "victims=9")  # the founder's own epoch too
    founder.run("sync")
    assert len(founder.run("reports", "list").json) == 300

    second = _second_coordinator(founder, devices)
    admitted = founder.run("sync").json
    assert admitted["admitted"] == [second.device_id]
    assert admitted["granted"] == 3  # north's, south's and the founder's epoch

    second.run("sync")
    listed = second.run("reports", "list")
    assert len(listed.json) == 300
    assert {r["verification"] for r in listed.json} == {"verified"}
    assert "WARNING" not in listed.stderr
    status = second.run("status").json
    assert status["findings"] == [] and status["warnings"] == []
    assert status["grants"]["epochs_granted_to_me"] == 3
    assert status["grants"]["lost_epochs"] == 0
    assert second.run("reports", "show", ids[0]).json["fields"]["victims"]["value"] == "9"
    out = tmp_path / "got.jpg"
    second.run("attachments", "get", ids[-1], "photo.jpg", "-o", str(out))
    assert out.read_bytes() == media.read_bytes()

    # Every coordinator sees the grant in its log: who granted how many epochs to whom.
    for coordinator in (founder, second):
        log = coordinator.run("grants").json
        assert [(g["granter"], g["grantee"], g["epochs"]) for g in log["grants"]] == [
            (founder.run("status").json["device_id"], second.device_id, 3)
        ]
        assert log["refused"] == []
    # Syncing again grants nothing twice.
    assert founder.run("sync").json.get("granted", 0) == 0


def test_grant_on_demand_from_a_date_grants_only_later_epochs(
    server, devices, tmp_path: Path
) -> None:
    # PROTOCOL §19.4: --from compares the date with when the granter first stored each key
    # envelope; a date in the future grants nothing, and what was not granted stays a
    # `waiting-key` (a coordinator who holds it can still grant it), never a silent gap.
    founder, (north,) = _org(server, devices, "north")
    _import(north, tmp_path, 5, "north")
    north.run("sync")
    founder.run("sync")
    second = _second_coordinator(founder, devices)
    done = founder.run("grant", "--to", second.device_id, "--from", "2999-01-01").json
    assert done["granted_epochs"] == 0
    second.run("sync")
    assert second.run("reports", "list", check=False).json == []
    findings = second.run("status").json["findings"]
    assert findings and all(f.startswith("waiting-key") and "grant" in f for f in findings)
    done = founder.run("grant", "--to", second.device_id[:12]).json
    assert done["granted_epochs"] == 1
    second.run("sync")
    assert len(second.run("reports", "list").json) == 5
    assert second.run("status").json["findings"] == []


def _swap_wraps(document: bytes) -> bytes:
    """The server's forgery: the wraps of two epochs swapped inside a signed grant."""
    outer = encoding.decode(document)
    body = encoding.decode(outer[2])
    body["w"][0][4], body["w"][1][4] = body["w"][1][4], body["w"][0][4]
    outer[2] = encoding.encode(body)
    return encoding.encode(outer)


def test_a_server_that_swaps_or_replays_grants_is_refused_and_changes_nothing(
    server, devices, tmp_path: Path
) -> None:
    # PROTOCOL §19.3, THREAT_MODEL §3.6.1: a grant is signed whole, so a server that swaps
    # wraps between epochs is refused (loudly, `grant-refused`, kept as evidence), and one
    # that serves a grant twice changes nothing: grants are named by their bytes.
    with HostileProxy(server.url) as proxy:
        founder = devices("founder")
        founder.run("org", "create", "--server", proxy.url, "--name", "Clinic")
        fields = []
        for name in ("north", "south"):
            code = founder.run("invite", "create", "--role", "field").json["code"]
            fields.append(devices(name))
            fields[-1].run("enroll", code, "--label", name)
        founder.run("sync")
        for i, field in enumerate(fields):
            _import(field, tmp_path, 3, f"f{i}")
            field.run("sync")
        founder.run("sync")
        second = _second_coordinator(founder, devices)
        assert founder.run("sync").json["granted"] == 2  # one grant of two epochs

        def grants_page(seen: Seen, change) -> Answer | None:
            if not (seen.method == "GET" and seen.path.endswith("/grants")):
                return None
            page = json.loads(seen.body)
            page["grants"] = change(page["grants"])
            return Answer(200, json.dumps(page).encode(), "application/json")

        def swapped(items: list[dict]) -> list[dict]:
            return [{**g, "grant": b64encode(_swap_wraps(b64decode(g["grant"])))} for g in items]

        proxy.attack = lambda seen: grants_page(seen, swapped)
        second.run("sync")
        assert second.run("reports", "list", check=False).json == []
        findings = second.run("status").json["findings"]
        assert any(f.startswith("grant-refused") and "signature" in f for f in findings)
        assert any(f.startswith("waiting-key") and "grant" in f for f in findings)

        def replayed(items: list[dict]) -> list[dict]:
            return [{**g, "seq": g["seq"] + k} for g in items for k in (0, 1)]

        proxy.attack = lambda seen: grants_page(seen, replayed)
        second.run("sync")
        proxy.attack = None
        listed = second.run("reports", "list")
        assert len(listed.json) == 6
        assert {r["verification"] for r in listed.json} == {"verified"}
        status = second.run("status").json
        assert status["grants"]["epochs_granted_to_me"] == 2
        assert status["grants"]["verified"] == 1  # the replayed grant counted once
        # The forgery stays on record: evidence, never hidden.
        assert [f for f in status["findings"] if not f.startswith("grant-refused")] == []
        assert len(status["findings"]) == 1


def test_a_coordinator_rotates_its_keys_and_old_and_new_reports_stay_readable(
    server, devices, tmp_path: Path
) -> None:
    # PROTOCOL §19.7: one roster version signed by the old key admits the new keys and
    # revokes the old id; the old identity grants its epochs to the new HPKE key first.
    founder, (north,) = _org(server, devices, "north")
    second = _second_coordinator(founder, devices)
    founder.run("sync")  # admits the deputy (roster v3): north's next epoch is sealed to both
    north.run("sync")
    old_ids = _import(north, tmp_path, 4, "before")
    north.run("sync")
    founder.run("sync")
    founder.run("report", "edit", old_ids[0], "-f", "victims=8")  # signed by the old key
    founder.run("sync")
    old_device = founder.run("status").json["device_id"]

    rotated = founder.run("rotate").json
    assert rotated["old_device_id"] == old_device != rotated["device_id"]
    assert rotated["granted_epochs"] >= 2  # north's epochs and its own

    north.run("sync")  # learns the rotation: its next epoch is sealed to the new key
    new_ids = _import(north, tmp_path, 3, "after")
    north.run("sync")
    founder.run("sync")  # opens north's new epoch with its own new key
    founder.run("report", "edit", new_ids[0], "-f", "victims=5")  # signed by the new key
    founder.run("sync")
    second.run("sync")
    for coordinator in (founder, second):
        listed = coordinator.run("reports", "list")
        assert len(listed.json) == 7, coordinator.home
        assert {r["verification"] for r in listed.json} == {"verified"}
        assert "WARNING" not in listed.stderr
        status = coordinator.run("status").json
        assert status["findings"] == [], status["findings"]
        shown = coordinator.run("reports", "show", old_ids[0]).json
        assert shown["fields"]["victims"]["value"] == "8"
        assert (
            coordinator.run("reports", "show", new_ids[0]).json["fields"]["victims"]["value"] == "5"
        )
    status = founder.run("status").json
    assert status["device_id"] == rotated["device_id"]
    members = {m["device_id"]: m for m in founder.run("devices", "list").json}
    assert members[old_device]["state"] == "revoked"
    assert members[rotated["device_id"]]["role"] == "coordinator"


def test_a_field_device_rotates_its_signing_key_through_a_coordinator(
    server, devices, tmp_path: Path
) -> None:
    # PROTOCOL §19.7: the device signs a request with its old and new keys; a coordinator
    # compares the fingerprint and applies it; the device's next sync switches keys.
    founder, (north,) = _org(server, devices, "north")
    old_ids = _import(north, tmp_path, 2, "before")
    asked = north.run("rotate").json  # syncs first: the outbox is delivered under the old key
    assert asked["device_id"] == north.device_id != asked["new_device_id"]
    waiting = founder.run("rotations", "list").json
    assert [(r["device_id"], r["fingerprint"], r["conflicting"]) for r in waiting["rotations"]] == [
        (north.device_id, asked["fingerprint"], False)
    ]
    applied = founder.run("rotations", "apply", north.device_id[:12]).json
    assert applied["new_device_id"] == asked["new_device_id"]
    synced = north.run("sync").json
    assert synced["rotated_to"] == asked["new_device_id"]
    assert north.run("status").json["device_id"] == asked["new_device_id"]
    new_ids = _import(north, tmp_path, 2, "after")
    north.run("sync")
    founder.run("sync")
    listed = founder.run("reports", "list")
    assert {r["report_id"] for r in listed.json} == set(old_ids + new_ids)
    assert {r["verification"] for r in listed.json} == {"verified"}
    assert founder.run("status").json["findings"] == []
    assert founder.run("rotations", "list").json["rotations"] == []
