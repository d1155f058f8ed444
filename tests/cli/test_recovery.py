"""Recovery when coordinators are lost: k-of-n trustee shares restore a coordinator
(PROTOCOL §20), through the real `sealbox` executable against a live server."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from clients.local.transport import Transport
from crypto import SigningKey
from crypto.recovery import RecoveryKey, combine_shares, split_master_secret
from sync.client import Request
from sync.messages import b64encode
from tests.cli.conftest import Device, LiveServer


def _org_with_recovery(server: LiveServer, devices, tmp_path: Path):
    """A founder and a field device that file reports (one with an attachment) before the
    founder sets recovery up, and more after: the earlier epochs are not sealed to the
    recovery key, so setup grants them to it (§20.3); the later ones are sealed to it."""
    founder, field = devices("founder"), devices("field")
    founder.run("org", "create", "--server", server.url, "--name", "Clinic")
    code = founder.run("invite", "create", "--role", "field").json["code"]
    field.device_id = field.run("enroll", code, "--label", "phone").json["device_id"]
    founder.run("sync")  # admits the field device (roster v2)
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(os.urandom(70_000))
    field.run("report", "new", "-f", "place=Market", "-f", "victims=2", "--attach", str(photo))
    field.run("report", "new", "-f", "title=report 0")
    founder.run("report", "new", "-f", "title=the founder's own note")
    field.run("sync")
    founder.run("sync")
    setup = founder.run("recovery", "setup", "--threshold", "3", "--shares", "5").json
    assert setup["roster_version"] == 3 and len(setup["shares"]) == 5
    # The field device's epoch and the founder's own, sealed before setup, are granted.
    assert setup["granted_epochs"] == 2
    field.run("sync")  # learns roster v3: its next epoch is sealed to the recovery key
    for n in (1, 2):
        field.run("report", "new", "-f", f"title=report {n}")
    field.run("sync")
    founder.run("sync")
    founder.device_id = founder.run("status").json["device_id"]
    return founder, field, setup, photo


def _restore(device: Device, setup: dict, shares: list[str], tmp_path: Path, *extra: str):
    sheet = tmp_path / f"shares-{device.home.name}.txt"
    sheet.write_text("\n".join(shares) + "\n")
    return device.run(
        "recovery", "restore", "--locator", setup["locator"], "--shares-file", str(sheet),
        *extra, check=False,
    )  # fmt: skip


def _signed_get(server: LiveServer, key: SigningKey, path: str) -> int:
    """The status of a GET signed by ``key`` (what a lost laptop's key could still try)."""
    transport = Transport(server.url, signing_key=key, retries=0)
    try:
        return transport.send(Request("GET", path)).status
    finally:
        transport.close()


def test_three_of_five_trustees_restore_a_seized_founder_and_revoke_it(
    server: LiveServer, devices, tmp_path: Path
) -> None:
    """PROTOCOL §20.4: the founder's laptop is seized (its profile gone); three trustees
    restore a coordinator on a new machine that reads everything, attachments included,
    sealed before the recovery setup (granted to the recovery key, §20.3) and after, with
    no warning, and revokes the lost founder, whose requests the server then refuses."""
    founder, field, setup, photo = _org_with_recovery(server, devices, tmp_path)
    before = founder.run("reports", "list").json
    assert len(before) == 5
    lost_key = SigningKey(_founder_seed(founder))
    shutil.rmtree(founder.home)  # seized: nothing of it remains to this organisation

    restored = devices("restored")
    shares = [setup["shares"][i] for i in (4, 0, 2)]  # any three, in any order
    done = _restore(restored, setup, shares, tmp_path, "--revoke", founder.device_id[:10])
    assert done.code == 0, done.stderr
    assert done.json["revoked"] == [{"device_id": founder.device_id, "revoked_after": 2}]

    restored.run("sync")
    after = restored.run("reports", "list").json
    assert sorted(r["report_id"] for r in after) == sorted(r["report_id"] for r in before)
    assert sorted(str(r["fields"]) for r in after) == sorted(str(r["fields"]) for r in before)
    status = restored.run("status").json
    assert status["findings"] == [] and status["warnings"] == []
    assert status["grants"]["lost_epochs"] == 0
    assert status["grants"]["epochs_granted_to_me"] == 2  # the two pre-setup epochs
    market = next(r for r in after if r["fields"].get("place") == "Market")
    out = tmp_path / "photo-restored.jpg"
    restored.run("attachments", "get", market["report_id"], "photo.jpg", "-o", str(out))
    assert out.read_bytes() == photo.read_bytes()

    # The lost founder's key is refused from now on; the field device carries on, and its
    # new epoch is sealed to the restored coordinator (and the recovery key).
    org_path = f"/v1/orgs/{b64encode(bytes.fromhex(status['org_id']))}"
    assert _signed_get(server, lost_key, f"{org_path}/devices") == 403
    field.run("report", "new", "-f", "title=after the raid")
    field.run("sync")
    restored.run("sync")
    titles = {r["fields"].get("title") for r in restored.run("reports", "list").json}
    assert "after the raid" in titles
    assert restored.run("status").json["findings"] == []


def _founder_seed(founder: Device) -> bytes:
    """The founder's signing seed, read as the seizer of its laptop (who has the passphrase)."""
    from clients.local.store import Store

    store = Store.open(founder.home, founder.env["SEALBOX_PASSPHRASE"].encode())
    try:
        return store.secrets.signing_seed
    finally:
        store.close()


def test_two_of_five_shares_restore_nothing_and_bad_shares_are_named(
    server: LiveServer, devices, tmp_path: Path
) -> None:
    """PROTOCOL §20.2: fewer than k shares, a mistyped share, a share of another split or
    another organisation's shares are refused with the problem named, and nothing is
    created on this machine or changed on the server."""
    founder = devices("founder")
    founder.run("org", "create", "--server", server.url, "--name", "Clinic")
    setup = founder.run("recovery", "setup", "--threshold", "3", "--shares", "5").json
    shares = setup["shares"]
    # The recovery key signs requests only to read the roster and devices and to post a
    # roster version: it reads no report, pushes nothing, issues no invite.
    org_id = bytes.fromhex(founder.run("status").json["org_id"])
    recovery = RecoveryKey.derive(combine_shares(shares[:3]), org_id)
    org_path = f"/v1/orgs/{b64encode(org_id)}"
    assert _signed_get(server, recovery.signing_key, f"{org_path}/roster") == 200
    for path in ("/changes", "/log", "/receipts", "/attachments"):
        assert _signed_get(server, recovery.signing_key, org_path + path) == 403, path
    other_split = split_master_secret(RecoveryKey.new_master_secret(), threshold=3, shares=5)
    words = shares[2].split()
    words[7], words[8] = words[8], words[7]
    cases = {
        "two": (shares[:2], "2 share(s) given, 3 needed"),
        "mistyped": ([shares[0], shares[1], " ".join(words)], "share 3 does not check"),
        "unknown word": (
            [shares[0], shares[1].replace(shares[1].split()[4], "sealbox", 1), shares[3]],
            "share 2: word 5 is not in the SLIP-39 word list",
        ),
        "mixed": ([shares[0], other_split[1], shares[3]], "share 2 is from another split"),
        "repeated": ([shares[0], shares[0], shares[3]], "share 2 is the same share as share 1"),
        "another org": (other_split[:3], "the server does not know this recovery key"),
    }
    for name, (given, message) in cases.items():
        device = devices(f"restore-{name.replace(' ', '-')}")
        result = _restore(device, setup, given, tmp_path)
        assert result.code != 0, name
        assert message in " ".join(result.stderr.split()), (name, result.stderr)
        assert not (device.home / "keyfile").exists(), name
    # The server's roster did not move: v2 (the setup) is still the newest.
    founder.run("sync")
    assert founder.run("status").json["roster_version"] == 2


def test_the_last_coordinator_revokes_itself_only_with_recovery_set_up(
    shared_server: LiveServer, devices, tmp_path: Path
) -> None:
    """PROTOCOL §5.2 R5, §20.5: without a recovery key the client refuses, naming the fix.
    Setup writes one sheet per trustee (words, locator, QR), readable by its owner only, and
    runs once (R7)."""
    alone = devices("alone")
    alone.run("org", "create", "--server", shared_server.url, "--name", "Solo")
    me = alone.run("status").json["device_id"]
    refused = alone.run("devices", "revoke", me, check=False)
    assert refused.code == 1 and "sealbox recovery setup" in " ".join(refused.stderr.split())
    sheets = tmp_path / "sheets"
    setup = alone.run("recovery", "setup", "--threshold", "2", "--shares", "3", "--out",
                      str(sheets)).json  # fmt: skip
    assert setup["shares"] == []  # on the sheets only
    names = sorted(p.name for p in sheets.iterdir())
    assert names == [f"trustee-{n}.{ext}" for n in (1, 2, 3) for ext in ("svg", "txt")]
    texts = [(sheets / f"trustee-{n}.txt").read_text() for n in (1, 2, 3)]
    assert all(setup["locator"] in t and "SHARE" in t for t in texts)
    assert all((sheets / n).stat().st_mode & 0o077 == 0 for n in names)
    assert all((sheets / n).read_bytes().startswith(b"<?xml") for n in names if n.endswith("svg"))
    again = alone.run("recovery", "setup", check=False)
    assert again.code != 0 and "already has a recovery key" in " ".join(again.stderr.split())
    revoked = alone.run("devices", "revoke", me).json
    assert revoked["device_id"] == me
