"""A withheld revocation past the freshness horizon, end to end (PROTOCOL §18; THREAT_MODEL
§7.4): the real CLI against a real server whose operator turns malicious between two syncs.

A coordinator revokes a second coordinator (roster version 3) and signs a freshness statement
for it. The operator then removes version 3 and puts back the statement for version 2, so a
field device keeps sealing to the revoked coordinator. Within the horizon the device cannot
tell (the residual risk §18.5 states); past it, the device says it is stale at `sync` and in
`status`, and still seals and sends.
"""

from __future__ import annotations

import sqlite3
import time

from tests.cli.test_scenarios import _org


def _statement(db: str) -> tuple[int, int, bytes]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT version, issued_at, document FROM roster_freshness").fetchone()


def _withhold(db: str, version: int, statement: tuple[int, int, bytes]) -> None:
    """What a malicious operator does: forget roster ``version`` and serve an older statement."""
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM roster_versions WHERE version = ?", (version,))
        conn.execute("UPDATE orgs SET roster_version = ?", (version - 1,))
        conn.execute(
            "UPDATE roster_freshness SET version = ?, issued_at = ?, document = ?", statement
        )


def _stale(warnings: list[str]) -> bool:
    return any(w.startswith("roster: STALE") for w in warnings)


def test_a_withheld_revocation_makes_the_device_stale_past_the_horizon(server, devices) -> None:
    """PROTOCOL §18.3: fresh while a coordinator's statement for the trusted roster is younger
    than the horizon; the device that is served none says so at every sync and in status,
    and goes on sealing and sending."""
    coord, (field,) = _org(server, devices, "field")
    code = coord.run("invite", "create", "--role", "coordinator").json["code"]
    second = devices("second")
    second_id = second.run("enroll", code, "--label", "second").json["device_id"]
    assert coord.run("sync").json["roster_version"] == 3  # admits the second coordinator
    second.run("sync")
    honest = field.run("sync").json
    assert honest.get("roster_fresh_at") and not honest.get("roster_stale")
    assert not _stale(honest["warnings"]) and not _stale(field.run("status").json["warnings"])
    db = str(server.data_dir / "sealbox.db")
    before = _statement(db)
    assert before[0] == 3

    coord.run("devices", "revoke", second_id)  # version 4: the second coordinator is out
    revoked = coord.run("sync").json
    assert revoked["roster_version"] == 4 and not revoked.get("log_findings")
    assert _statement(db)[0] == 4
    server.stop()
    _withhold(db, 4, before)
    server.start()

    # Within the horizon the device cannot tell (THREAT_MODEL §7.4, what remains).
    field.run("report", "new", "-f", "place=Market")
    within = field.run("sync").json
    assert not within.get("roster_stale") and field.run("status").json["roster_version"] == 3

    # Past it (a horizon of 1 s stands for a device offline for a week), it says so.
    field.env["SEALBOX_FRESHNESS_HORIZON"] = "1"
    time.sleep(1.5)
    field.run("report", "new", "-f", "place=School")
    stale = field.run("sync")
    assert stale.code == 0
    assert stale.json["roster_stale"] is True and _stale(stale.json["warnings"])
    assert stale.json["stored"] == 1 and stale.json["outbox"] == 0  # still sealed and sent
    status = field.run("status").json
    assert _stale(status["warnings"]) and status["roster_version"] == 3
    text = field.run("sync", as_json=False)
    assert "roster: STALE" in text.stderr

    # The coordinators' own syncs stay fresh: they sign their own statements.
    assert not _stale(coord.run("status").json["warnings"])

    # The coordinator, who knew version 4 before the server stored these, flags what the
    # device sealed to version 3 since (PROTOCOL §18.4): readable by the revoked coordinator.
    named = coord.run("sync").json
    assert "stale-roster" in named["log_findings"]
    warnings = coord.run("status").json["warnings"]
    assert any(w.startswith("stale-roster") and field.device_id in w for w in warnings)
