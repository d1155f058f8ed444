"""Sealed sneakernet through the real `sealbox` executable (PROTOCOL §23).

The network is shut down (the server process is stopped): a field device exports its
outbox to a file, a second device imports it and relays it when the link returns (the
server restarted on the same data), and the author purges on the receipts of its own next
sync. A coordinator who read the same file with no server shows the same reports as one
who only had the feed, and the feed later applies nothing twice. Then the adversary: an
altered byte, a cut file, a replayed file, another organisation's item, a revoked relay
and a revoked author's late envelopes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from clients.desk.actions import attachment_bytes
from clients.local.profile import Profile
from sync.carry import read_carried, write_carried
from tests.cli.conftest import PASSPHRASE


def _org(server, devices, *names: str, coordinators: tuple[str, ...] = ()):
    coord = devices("coordinator")
    coord.run("org", "create", "--server", server.url, "--name", "Clinic")
    enrolled = []
    for name, role in [*((n, "field") for n in names), *((n, "coordinator") for n in coordinators)]:
        code = coord.run("invite", "create", "--role", role).json["code"]
        device = devices(name)
        device.device_id = device.run("enroll", code, "--label", name).json["device_id"]
        enrolled.append(device)
    coord.run("sync")  # admits every enrolled device into roster v2
    for device in enrolled:
        device.run("sync")  # each learns roster v2 (and seals to every coordinator in it)
    return coord, enrolled


def _export(device, usb: Path) -> Path:
    usb.mkdir(exist_ok=True)
    out = device.run("outbox", "export", "--to", str(usb)).json
    return Path(out["file"])


def _reports(coord) -> str:
    return coord.run("reports", "export", "--format", "json", as_json=False).stdout


def test_shutdown_story_relay_purge_and_direct_import_agree(server, devices, tmp_path) -> None:
    """PROTOCOL §23.1-§23.4: nothing readable is carried, nothing is lost or applied twice."""
    coord, (field, courier, second) = _org(
        server, devices, "field", "courier", coordinators=("second",)
    )
    server.stop()  # the shutdown
    report = field.run("report", "new", "-f", "place=Market", "-f", "CANARY=kept-4471").json[
        "report_id"
    ]
    field.run("report", "edit", report, "-f", "victims=3")
    assert field.run("sync", check=False).code == 4  # unreachable: the outbox stays
    assert field.run("outbox").json["count"] == 3  # a sender key and two revisions
    carried = _export(field, tmp_path / "usb")
    data = carried.read_bytes()
    assert b"kept-4471" not in data and b"Market" not in data  # nothing readable is carried
    assert read_carried(data).complete and len(read_carried(data).items) == 3
    assert field.run("outbox").json["count"] == 3  # exporting purges nothing

    # A coordinator reads the file with no server at all: verified, as from the feed.
    imported = coord.run("import", str(carried)).json
    assert imported["imported"] == 3 and imported["refused"] == 0 and imported["complete"]
    direct = _reports(coord)
    state = json.loads(direct)
    assert [r["fields"]["place"]["value"] for r in state] == ["Market"]
    assert state[0]["fields"]["victims"]["value"] == "3"
    assert coord.run("status").json["carried_not_in_feed"] == 3

    # The relay queues it; the same file again (a replay) changes nothing, anywhere.
    assert courier.run("relay", "import", str(carried)).json["queued"] == 3
    again = courier.run("relay", "import", str(carried)).json
    assert again["queued"] == 0 and {i["status"] for i in again["items"]} == {"duplicate"}
    assert coord.run("import", str(carried)).json["imported"] == 0
    assert _reports(coord) == direct

    server.start()  # the link returns: same data, same keys
    relayed = courier.run("sync").json
    assert relayed["relayed"] == 3 and courier.run("status").json["relay_queue"] == 0
    # The author pushes the same envelopes: duplicates, receipted, purged.
    mine = field.run("sync").json
    assert mine["purged"] == 3 and mine["outbox"] == 0
    assert field.run("outbox").json["count"] == 0

    # The feed delivers what the coordinator already holds: nothing new, nothing twice.
    pulled = coord.run("sync").json
    assert pulled["pulled"] == 0 and pulled["reports"] == 1
    assert _reports(coord) == direct
    assert coord.run("status").json["carried_not_in_feed"] == 0  # now placed in the log
    assert coord.run("status").json["findings"] == []
    # A coordinator who only had the feed shows the same state.
    second.run("sync")
    assert _reports(second) == direct


def test_altered_cut_replayed_and_foreign_items_are_refused_item_by_item(
    shared_server, devices, tmp_path
) -> None:
    """PROTOCOL §23.2: each item on its own; the good ones go on, the reasons are said."""
    coord, (field, courier) = _org(shared_server, devices, "field", "courier")
    field.run("report", "new", "-f", "title=one")
    field.run("report", "new", "-f", "title=two")
    carried = _export(field, tmp_path / "usb")
    data = carried.read_bytes()
    items = read_carried(data).items

    # An altered byte in the second revision's body: that item is refused, the rest queued.
    altered = tmp_path / "altered.carried"
    second_at = data.index(items[2].data)
    flipped = bytearray(data)
    flipped[second_at + len(items[2].data) - 70] ^= 0x01
    altered.write_bytes(bytes(flipped))
    result = courier.run("relay", "import", str(altered), check=False)
    assert result.code == 1
    verdicts = [i["status"] for i in result.json["items"]]
    assert verdicts == ["accepted", "accepted", "refused"]
    assert "signature" in result.json["items"][2]["reason"]
    assert any("checksum" in p for p in result.json["problems"])

    # Cut inside the last item: the items before it are kept, the cut one is refused.
    cut = tmp_path / "cut.carried"
    cut.write_bytes(data[: second_at + 100])
    result = courier.run("relay", "import", str(cut), check=False)
    assert result.code == 1 and result.json["items"][-1]["reason"] == "truncated"
    assert [i["status"] for i in result.json["items"]] == ["duplicate", "duplicate", "refused"]

    # Another organisation's items mixed in: refused, by name; ours go on.
    other_coord = devices("other-coordinator")
    other_coord.run("org", "create", "--server", shared_server.url, "--name", "Elsewhere")
    other_coord.run("report", "new", "-f", "title=theirs")
    theirs = _export(other_coord, tmp_path / "usb2")
    mixed = tmp_path / "mixed.carried"
    mixed.write_bytes(
        write_carried([i.data for i in read_carried(theirs.read_bytes()).items] + [items[2].data])
    )
    result = courier.run("relay", "import", str(mixed), check=False)
    assert result.code == 1
    assert [i["status"] for i in result.json["items"]] == ["refused", "refused", "accepted"]
    assert all("another organisation" in i["reason"] for i in result.json["items"][:2])
    result = coord.run("import", str(mixed), check=False)
    assert result.code == 1 and result.json["imported"] == 1
    assert not read_carried(b"sealbox-carried\x00\x01").complete
    not_ours = tmp_path / "not.carried"
    not_ours.write_bytes(b"PK\x03\x04 a zip file")
    refused = courier.run("relay", "import", str(not_ours), check=False)
    assert refused.code == 1 and "not a Sealbox carried file" in refused.stderr
    field_reads = courier.run("import", str(mixed), check=False)  # it can only relay
    assert field_reads.code == 1 and "`sealbox relay import" in field_reads.stderr

    # Relayed once, stored once: the author's own push is all duplicates, and purges.
    assert courier.run("sync").json["relayed"] == 3
    mine = field.run("sync").json
    assert mine["purged"] == 3 and mine["outbox"] == 0
    coord.run("sync")
    titles = sorted(r["fields"]["title"] for r in coord.run("reports", "list").json)
    assert titles == ["one", "two"]


def test_a_revoked_relay_carries_nothing_and_a_revoked_authors_late_envelopes_are_refused(
    shared_server, devices, tmp_path
) -> None:
    """PROTOCOL §23.3: the server refuses a revoked relay (and the CLI says so first); a
    revoked author's envelopes after its point are refused by the relay, and a coordinator
    who imports them sees them flagged, never merged, as from the feed."""
    coord, (field, courier, seized) = _org(shared_server, devices, "field", "courier", "seized")
    field.run("report", "new", "-f", "title=honest")
    carried = _export(field, tmp_path / "usb")
    coord.run("devices", "revoke", courier.device_id)
    courier.run("sync", check=False)  # learns it is revoked
    refused = courier.run("relay", "import", str(carried), check=False)
    assert refused.code == 3 and "revoked" in refused.stderr

    seized.run("report", "new", "-f", "title=before")
    seized.run("sync")
    coord.run("devices", "revoke", seized.device_id)
    seized.run("report", "new", "-f", "title=planted after the seizure")  # offline: no sync
    late = _export(seized, tmp_path / "usb3")
    field.run("sync")  # the relay learns the revocation from the roster
    result = field.run("relay", "import", str(late), check=False)
    assert result.code == 1
    assert [i["status"] for i in result.json["items"]] == ["refused"]
    assert "revoked" in result.json["items"][0]["reason"]
    imported = coord.run("import", str(late)).json
    assert imported["imported"] == 1
    assert any("revoked" in f for f in imported["findings"])
    titles = sorted(r["fields"]["title"] for r in coord.run("reports", "list").json)
    assert "planted after the seizure" not in titles


def test_photos_cross_the_shutdown_in_the_carried_file_and_open_with_no_server(
    server, devices, tmp_path
) -> None:
    """PROTOCOL §23.1, §23.4: the export carries the sealed chunks of what the server does
    not have yet; a coordinator with no server reads the photo byte for byte from them;
    a relay does not relay them (the server takes an attachment only from its author); a
    chunk altered on the way is refused and nothing of it kept; ``--max-mb`` leaves the
    photo out and says so; and the author still uploads once the link returns."""
    coord, (field, courier, second) = _org(
        server, devices, "field", "courier", coordinators=("second",)
    )
    server.stop()  # the shutdown
    photo = tmp_path / "bruises.jpg"
    photo.write_bytes(os.urandom(2 * 1024 * 1024 + 12_345))  # three chunks
    field.run("report", "new", "-f", "place=Market", "--attach", str(photo))
    usb = tmp_path / "usb"
    usb.mkdir()
    small = field.run("outbox", "export", "--to", str(usb), "--max-mb", "1").json
    assert small["attachments"] == 0 and small["attachments_not_carried"] == 1
    out = field.run("outbox", "export", "--to", str(usb)).json
    assert out["attachments"] == 1 and out["attachments_not_carried"] == 0
    carried = Path(out["file"])
    data = carried.read_bytes()
    assert photo.read_bytes()[:4096] not in data and b"bruises" not in data
    assert len(read_carried(data).chunks) == 3

    # The relay takes the envelopes only, and says why.
    relay = courier.run("relay", "import", str(carried)).json
    assert relay["queued"] == 2 and relay["attachments_not_relayed"] == 1  # key + revision

    # A coordinator with no server: the photo opens from the file's chunks, verified.
    imported = coord.run("import", str(carried)).json
    assert imported["attachments_kept"] == 1 and imported["refused"] == 0
    (judged,) = imported["attachments"]
    assert judged["status"] == "accepted" and judged["name"] == "bruises.jpg"
    report_id = json.loads(_reports(coord))[0]["report_id"]
    shown = coord.run("reports", "show", report_id).json
    assert [a["state"] for a in shown["attachments"]] == ["carried"]
    listed = coord.run("attachments", "list", report_id).json  # no server: the last states
    assert listed["offline"] and [(a["state"], a["on_this_device"]) for a in listed[
        "attachments"]] == [("carried", True)]  # fmt: skip
    got = tmp_path / "got.jpg"
    coord.run("attachments", "get", report_id, "bruises.jpg", "-o", str(got))
    assert got.read_bytes() == photo.read_bytes()
    assert coord.run("import", str(carried)).json["attachments"][0]["status"] == "duplicate"
    # Sealbox Desk opens it the same way, in memory, still with no server.
    profile = Profile.open(coord.home, secret_passphrase=PASSPHRASE.encode())
    try:
        (entry,) = profile.view().report(bytes.fromhex(report_id)).attachments
        assert attachment_bytes(profile, entry) == photo.read_bytes()
    finally:
        profile.close()

    # One byte of a chunk altered on the way: refused, nothing kept, exit 1.
    altered = bytearray(data)
    altered[len(data) // 2] ^= 0x01  # inside the second chunk
    bad = tmp_path / "bad.carried"
    bad.write_bytes(bytes(altered))
    refused = second.run("import", str(bad), check=False)
    assert refused.code == 1
    (judged,) = refused.json["attachments"]
    assert judged["status"] == "refused" and judged["reason"].startswith("altered")
    assert refused.json["attachments_kept"] == 0
    assert second.run("attachments", "get", report_id, "bruises.jpg", "-o", str(tmp_path / "x"),
                      check=False).code != 0  # fmt: skip
    assert not (tmp_path / "x").exists()

    # The link returns: the author uploads as ever; the coordinator's copy still opens.
    server.start()
    synced = field.run("sync").json
    assert synced["attachments_uploaded"] == 1
    second.run("sync")
    fetched = tmp_path / "fetched.jpg"
    second.run("attachments", "get", report_id, "bruises.jpg", "-o", str(fetched))
    assert fetched.read_bytes() == photo.read_bytes()
