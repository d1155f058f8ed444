"""`sealbox checkpoint`: short codes compared by phone (PROTOCOL §17.4; THREAT_MODEL §7.5),
through the real CLI against a real server, and the parser of what a person types."""

from __future__ import annotations

import pytest

from clients.reference_cli.checkpoint_command import parse_code
from tests.cli.test_scenarios import _org
from tests.cli.test_transparency import _truncate_tail


@pytest.mark.parametrize(
    "typed",
    [
        "13:7882-6044-3646-5216",
        " 13:7882-6044-3646-5216\n",
        "13: 7882 6044 3646 5216",
        "13 : 7882604436465216",
        "13:7882 - 6044 - 3646 - 5216",
        "13 7882 6044 3646 5216",
        "13-7882-6044-3646-5216",
        "13:7882\u20136044\u20133646\u20135216",  # en dashes, as a phone's keyboard may type
        "013:7882.6044.3646.5216",
    ],
)
def test_a_code_is_read_loosely(typed: str) -> None:
    assert parse_code(typed) == (13, "13:7882-6044-3646-5216")


@pytest.mark.parametrize(
    "junk",
    [
        "",
        "hello",
        "13",
        "13:",
        "7882-6044-3646-5216",
        "13:7882-6044-3646-521",  # 15 digits
        "13:7882-6044-3646-52160",  # 17
        "13:7882-6044-3646-521x",
        "13:7882:6044-3646-5216",
        "x13:7882-6044-3646-5216",
        "-13:7882-6044-3646-5216",
        "13:\u0667882-6044-3646-5216",  # an Arabic-Indic digit
        "99999999999999999999:7882-6044-3646-5216",
        "9223372036854775809:7882-6044-3646-5216",  # 2^63 + 1
        "13:" + " " * 80 + "7882-6044-3646-5216",
        "1 3:7882-6044-3646-5216",
    ],
)
def test_junk_is_not_a_code(junk: str) -> None:
    with pytest.raises(ValueError):
        parse_code(junk)


def _log_warnings(device) -> list[str]:
    return [w for w in device.run("status").json["warnings"] if w.startswith("log-")]


def test_honest_devices_show_the_same_code_and_codes_of_other_sizes_are_not_compared(
    shared_server, devices
) -> None:
    """After honest syncs a coordinator and a field device hold the same checkpoint; each
    shows its code and comparing either way matches. A code of another size is "sync both
    and compare again" (exit 1), unless this side kept a signed checkpoint of that size.
    Nothing is recorded; junk is a usage error."""
    coord, (field,) = _org(shared_server, devices, "field")
    none = field.run("checkpoint", check=False)
    assert none.code == 1 and "sync" in none.json["error"]
    for place in ("Market", "School", "Clinic"):
        field.run("report", "new", "-f", f"place={place}")
    field.run("sync")
    coord.run("sync")
    field.run("sync")
    mine, theirs = field.run("checkpoint").json, coord.run("checkpoint").json
    assert mine == theirs and mine["size"] == 4
    assert mine["code"].startswith("4:") and set(mine) == {
        "size",
        "code",
        "issued_at",
        "checkpoint",
    }
    human = field.run("checkpoint", as_json=False).stdout
    assert mine["code"] in human and "ask for theirs" in human
    spoken = mine["code"].replace(":", " ").replace("-", " ")  # "4 9975 1323 3414 7387"
    for device, code in ((field, theirs["code"]), (coord, spoken)):
        same = device.run("checkpoint", "compare", code).json
        assert same["result"] == "match" and same["recorded"] is None
    assert "match" in coord.run("checkpoint", "compare", mine["code"], as_json=False).stdout

    field.run("report", "new", "-f", "place=Port")
    field.run("sync")  # the field device is at 5 now, the coordinator still at 4
    newer = field.run("checkpoint").json["code"]
    behind = coord.run("checkpoint", "compare", newer, check=False)
    assert behind.code == 1 and behind.json["result"] == "behind"
    said = coord.run("checkpoint", "compare", newer, check=False, as_json=False).stdout
    assert "this device is behind" in said and "Sync both, then compare again" in said
    # The field device kept the size-4 checkpoint of its first receipt: the same check.
    kept = field.run("checkpoint", "compare", theirs["code"]).json
    assert kept["result"] == "match" and kept["against"] == "kept"
    coord.run("sync")
    ahead = coord.run("checkpoint", "compare", "2:1234-5678-9012-3456", check=False)
    assert ahead.code == 1 and ahead.json["result"] == "ahead"
    said = coord.run("checkpoint", "compare", "2:1234-5678-9012-3456", check=False, as_json=False)
    assert "the other side is behind" in said.stdout

    for junk in ("hello", "4:1234", "4:1234-5678-9012-345x"):
        refused = coord.run("checkpoint", "compare", junk, check=False)
        assert refused.code == 2 and "CODE" in refused.stderr
    for device in (field, coord):
        assert device.run("checkpoint", "evidence").json == {"count": 0, "findings": []}
        assert not _log_warnings(device)


def test_a_fork_at_the_same_size_entered_by_phone_is_a_finding(server, devices) -> None:
    """The server cuts its log back after the coordinator synced and lets the field device
    grow it again to the same size with other envelopes: the coordinator's code, entered
    on the field device, is a `log-forked-reported` finding (exit 5), kept with the signed
    checkpoint and shown by `status`; the field device's signed checkpoint, entered on the
    coordinator, is the conclusive `log-forked`, kept with both."""
    coord, (field,) = _org(server, devices, "field")
    for place in ("Market", "School", "Clinic"):
        field.run("report", "new", "-f", f"place={place}")
    field.run("sync")
    coord.run("sync")
    held = coord.run("checkpoint").json
    assert held["size"] == 4

    server.stop()
    _truncate_tail(str(server.data_dir / "sealbox.db"), keep=2)
    server.start()
    for place in ("Bazaar", "Port"):
        field.run("report", "new", "-f", f"place={place}")
    field.run("sync")  # names the rollback itself; its log is at size 4 again
    other = field.run("checkpoint").json
    assert other["size"] == 4 and other["code"] != held["code"]

    forked = field.run("checkpoint", "compare", held["code"], check=False)
    assert forked.code == 5
    assert forked.json["result"] == "forked"
    assert forked.json["recorded"] == "log-forked-reported"
    said = field.run("checkpoint", "compare", held["code"], check=False, as_json=False)
    assert said.code == 5 and "FORK" in said.stderr and held["code"] in said.stderr
    warnings = _log_warnings(field)
    reported = [w for w in warnings if w.startswith("log-forked-reported")]
    assert len(reported) == 1 and held["code"] in reported[0] and other["code"] in reported[0]
    assert "log-forked-reported" in field.run("status", as_json=False).stderr
    kept = field.run("checkpoint", "evidence").json
    by_kind = {f["kind"]: f for f in kept["findings"]}
    assert kept["count"] == 2 and set(by_kind) == {"log-rolled-back", "log-forked-reported"}
    phoned = by_kind["log-forked-reported"]
    assert phoned["where"] == "compared by phone" and phoned["code_entered"] == held["code"]
    assert phoned["held"]["checkpoint"] == other["checkpoint"] and phoned["held"]["verifies"]
    assert phoned["offered"] is None
    listed = field.run("checkpoint", "evidence", as_json=False).stdout
    assert "log-forked-reported" in listed and held["code"] in listed

    # The coordinator has not synced since: the field device's signed checkpoint proves it.
    proof = coord.run("checkpoint", "compare", other["checkpoint"], check=False)
    assert proof.code == 5 and proof.json["recorded"] == "log-forked"
    (conclusive,) = coord.run("checkpoint", "evidence").json["findings"]
    assert conclusive["kind"] == "log-forked"
    assert conclusive["held"]["checkpoint"] == held["checkpoint"]
    assert conclusive["offered"]["checkpoint"] == other["checkpoint"]
    assert conclusive["offered"]["code"] == other["code"]
    assert any(w.startswith("log-forked:") for w in _log_warnings(coord))
    garbled = coord.run("checkpoint", "compare", other["checkpoint"][:-8] + "AAAAAAAA", check=False)
    assert garbled.code == 1 and "signed" in garbled.json["error"]
