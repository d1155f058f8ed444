"""Roster housekeeping through the real `sealbox` executable against a live server: a
passphrase changed (PROTOCOL §12.5), invites listed and cancelled (§6.7), a device revoked
twice.  The adversaries are a seized or snooped passphrase, a leaked invite code, and an
operator who ignores a cancellation (THREAT_MODEL §7.17, §7.18)."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from pathlib import Path

import pytest

from tests.cli.conftest import CAN_BE_DENIED, PASSPHRASE, read_only
from tests.cli.test_scenarios import _org

NEW = "lantern quarry mustard violet harbour"
WEAK = "password123"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _with(device, passphrase: str, new: str | None = None):
    env = dict(device.env, SEALBOX_PASSPHRASE=passphrase)
    if new is not None:
        env["SEALBOX_NEW_PASSPHRASE"] = new
    return type(device)(device.home, env)


# --- passphrase change ---------------------------------------------------------------------


def test_a_changed_passphrase_opens_the_same_store_and_the_old_one_opens_nothing(
    shared_server, devices
) -> None:
    """PROTOCOL §12.5: the key file is re-wrapped, the store is not touched: the old
    passphrase fails like any wrong one, the new one shows the same reports."""
    coord, (field,) = _org(shared_server, devices, "phone")
    field.run("report", "new", "-f", "place=north", "--note", "three people taken")
    field.run("sync")
    coord.run("sync")
    before = coord.run("reports", "list").json
    status = coord.run("status").json
    store_before = _digest(coord.home / "store.db")
    keyfile_before = _digest(coord.home / "keyfile")

    changed = _with(coord, PASSPHRASE, NEW).run("passphrase", "change").json
    assert changed["changed"] is True

    assert _digest(coord.home / "store.db") == store_before  # not one byte of the store
    assert _digest(coord.home / "keyfile") != keyfile_before
    assert (coord.home / "keyfile").stat().st_mode & 0o777 == 0o600
    assert not (coord.home / "keyfile.tmp").exists()
    old = coord.run("status", check=False)
    assert old.code == 1 and "wrong passphrase" in old.stderr
    renewed = _with(coord, NEW)
    assert renewed.run("reports", "list").json == before
    again = renewed.run("status").json
    assert (again["device_id"], again["roster_version"]) == (
        status["device_id"],
        status["roster_version"],
    )
    renewed.run("sync")  # signs requests with the same keys: the server still knows it


def test_a_weak_new_passphrase_is_refused_with_the_reason_and_nothing_changes(
    shared_server, devices
) -> None:
    """PROTOCOL §12.5: below 10^14 estimated guesses a new passphrase is refused, saying why
    (zxcvbn's warning) and what to do; the key file is untouched. The same floor holds where
    a passphrase is first chosen: `org create` and `enroll`, before the server is asked."""
    coord, _ = _org(shared_server, devices)
    keyfile = _digest(coord.home / "keyfile")
    refused = _with(coord, PASSPHRASE, WEAK).run("passphrase", "change", check=False)
    assert refused.code == 1
    assert "too easy to guess" in refused.stderr and "10^14" in refused.stderr
    assert "common password" in refused.stderr  # zxcvbn's own explanation
    assert "random words" in refused.stderr
    assert _digest(coord.home / "keyfile") == keyfile
    same = _with(coord, PASSPHRASE, PASSPHRASE).run("passphrase", "change", check=False)
    assert same.code == 1 and "the old one" in same.stderr
    coord.run("status")  # still the old passphrase

    founder = _with(devices("weak-founder"), WEAK)
    created = founder.run(
        "org", "create", "--server", shared_server.url, "--name", "Clinic", check=False
    )
    assert created.code == 1 and "too easy to guess" in created.stderr
    assert not (founder.home / "keyfile").exists()

    code = coord.run("invite", "create").json["code"]
    joiner = _with(devices("weak-joiner"), "Clinic2024!")
    enrolled = joiner.run("enroll", code, check=False)
    assert enrolled.code == 1 and "too easy to guess" in enrolled.stderr
    # Refused before the server was asked: the invite is still unused.
    _with(joiner, PASSPHRASE).run("enroll", code)


@pytest.mark.skipif(not CAN_BE_DENIED, reason="root without setpriv ignores file modes")
def test_a_change_that_cannot_write_the_new_key_file_leaves_the_old_one_valid(
    shared_server, devices
) -> None:
    """PROTOCOL §12.5: the old file stays the key file until the new one is durably in
    place: a profile directory that cannot be written fails the change (exit 7) and the old
    passphrase still opens everything. A `keyfile.tmp` left by a crash is no obstacle."""
    coord, _ = _org(shared_server, devices)
    keyfile = _digest(coord.home / "keyfile")
    read_only(coord.home)
    try:
        failed = _with(coord, PASSPHRASE, NEW).run(
            "passphrase", "change", check=False, unprivileged=True
        )
    finally:
        for child in [coord.home, *coord.home.rglob("*")]:
            child.chmod(0o700 if child.is_dir() else 0o600)
    assert failed.code == 7, failed.stderr
    assert _digest(coord.home / "keyfile") == keyfile
    coord.run("status")

    (coord.home / "keyfile.tmp").write_bytes(b"half a key file, left by a crash")
    coord.run("status")
    _with(coord, PASSPHRASE, NEW).run("passphrase", "change")
    _with(coord, NEW).run("status")
    assert not (coord.home / "keyfile.tmp").exists()


# --- invites -------------------------------------------------------------------------------


def _states(coord) -> dict[str, str]:
    return {i["invite_id"]: i["state"] for i in coord.run("invites", "list").json}


def test_invites_are_listed_as_created_used_expired_or_cancelled_and_a_cancelled_one_never_enrolls(
    shared_server, devices
) -> None:
    """PROTOCOL §6.7: `invites list` says what became of each invite; a cancelled one is
    refused by the server with `invite_cancelled` (a clear message, no profile left behind),
    and cancelling again is the same request."""
    coord, _ = _org(shared_server, devices)
    used = coord.run("invite", "create").json
    devices("used").run("enroll", used["code"])
    leaked = coord.run("invites", "create", "--role", "coordinator").json
    short = coord.run("invite", "create", "--expires", "3s").json
    states = _states(coord)
    assert states[used["invite_id"]] == "used"
    assert states[leaked["invite_id"]] == "created"

    cancel = coord.run("invites", "cancel", leaked["invite_id"][:10]).json
    assert cancel == {
        "invite_id": leaked["invite_id"],
        "cancelled": True,
        "used_by": None,
        "used_by_admitted": False,
    }
    assert coord.run("invites", "cancel", leaked["invite_id"]).json == cancel  # idempotent
    thief = devices("thief")
    refused = thief.run("enroll", leaked["code"], check=False)
    assert refused.code == 3
    assert "cancelled this invite" in refused.stderr
    assert not (thief.home / "keyfile").exists()

    deadline = time.monotonic() + 30  # the short invite expires on the server's clock
    while _states(coord)[short["invite_id"]] != "expired":
        assert time.monotonic() < deadline, "the 3 s invite never showed as expired"
        time.sleep(0.5)
    states = _states(coord)
    assert states[leaked["invite_id"]] == "cancelled"
    assert states[used["invite_id"]] == "used"
    unknown = coord.run("invites", "cancel", "ffffffffffff", check=False)
    assert unknown.code == 1 and "no single invite" in unknown.stderr


def test_a_leaked_invite_used_before_the_cancel_admits_nobody(shared_server, devices) -> None:
    """PROTOCOL §6.7: a code used by someone else before the coordinator noticed: the cancel
    says who enrolled, and that device is never admitted nor shown as pending."""
    coord, _ = _org(shared_server, devices)
    invite = coord.run("invite", "create").json
    intruder = devices("intruder")
    intruder_id = intruder.run("enroll", invite["code"], "--label", "mine").json["device_id"]
    cancel = coord.run("invites", "cancel", invite["invite_id"]).json
    assert cancel["used_by"] == intruder_id and cancel["used_by_admitted"] is False
    synced = coord.run("sync").json
    assert synced["roster_version"] == 1  # nobody admitted
    listed = {d["device_id"]: d for d in coord.run("devices", "list").json}
    assert listed[intruder_id]["in_roster"] is False
    warnings = coord.run("status").json["warnings"]
    assert any("was cancelled" in w and "MISBEHAVED" not in w for w in warnings), warnings


def test_a_server_that_accepts_a_cancelled_invite_gets_its_device_refused_at_admission(
    server, devices
) -> None:
    """PROTOCOL §6.7, THREAT_MODEL §7.18: the operator wipes the stored cancellation and lets
    the leaked code enroll. The coordinator, which recorded its cancellation first and was
    told the invite was unused, admits nobody and names the server."""
    coord, _ = _org(server, devices)
    invite = coord.run("invite", "create").json
    coord.run("invites", "cancel", invite["invite_id"])
    with sqlite3.connect(server.data_dir / "sealbox.db") as conn:  # the operator turns
        conn.execute("UPDATE invites SET cancellation = NULL")
    intruder = devices("intruder")
    intruder_id = intruder.run("enroll", invite["code"]).json["device_id"]  # accepted
    intruder.run("report", "new", "-f", "claim=forged")
    intruder.run("sync")

    synced = coord.run("sync").json
    assert synced["roster_version"] == 1
    assert any("SERVER MISBEHAVED" in w and intruder_id[:12] in w for w in synced["warnings"])
    listed = {d["device_id"]: d for d in coord.run("devices", "list").json}
    assert listed[intruder_id]["in_roster"] is False
    # Its report is not shown as verified, nor even as pending admission.
    assert all(r["verification"] == "verified" for r in coord.run("reports", "list").json)
    assert "forged" not in coord.run("reports", "list", as_json=True).stdout


def test_a_cancel_the_server_never_heard_holds_here_and_finishes_when_sent_again(
    server, devices
) -> None:
    """PROTOCOL §6.7: the cancellation is recorded before it is sent. With the server down it
    is said (exit 4) and kept: a device that enrolls meanwhile is not admitted, and sending
    the cancellation again reaches the server, which names the device."""
    coord, _ = _org(server, devices)
    invite = coord.run("invite", "create").json
    server.stop()
    try:
        offline = coord.run("invites", "cancel", invite["invite_id"], check=False)
    finally:
        server.start()
    assert offline.code == 4 and "the server was not told" in offline.stderr
    (row,) = coord.run("invites", "list").json
    assert (row["state"], row["cancel_sent"]) == ("cancelled", False)
    early = devices("early").run("enroll", invite["code"]).json["device_id"]  # server unaware
    synced = coord.run("sync").json
    assert synced["roster_version"] == 1
    assert any("was cancelled" in w and "MISBEHAVED" not in w for w in synced["warnings"])
    sent = coord.run("invites", "cancel", invite["invite_id"]).json
    assert sent["used_by"] == early
    (row,) = coord.run("invites", "list").json
    assert (row["state"], row["cancel_sent"]) == ("cancelled", True)


# --- revocation ----------------------------------------------------------------------------


def test_revoking_a_revoked_device_is_a_no_op_with_a_message(shared_server, devices) -> None:
    """PROTOCOL §6.7 (last item): no second roster version for the same revocation."""
    coord, (field,) = _org(shared_server, devices, "seized")
    first = coord.run("devices", "revoke", field.device_id).json
    assert first["already_revoked"] is False and first["roster_version"] == 3
    again = coord.run("devices", "revoke", field.device_id, as_json=False)
    assert "already revoked" in again.stderr and "nothing to do" in again.stderr
    second = coord.run("devices", "revoke", field.device_id).json
    assert second == dict(first, already_revoked=True)
    assert coord.run("status").json["roster_version"] == 3
    coord.run("sync")
    assert coord.run("status").json["roster_version"] == 3
