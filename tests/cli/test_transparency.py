"""The transparency log end to end (PROTOCOL §17; THREAT_MODEL §3.2, §7.5): the real CLI
against a real server whose operator turns malicious between two syncs.

Tail truncation after a receipt: the server signs receipts, the field device purges, then
the server deletes those revisions and rebuilds a log without them, consistent in itself.
Neither the device (it holds nothing but receipts) nor the coordinator (its feed restarts)
could see it before the log: now both name it, with the two signed checkpoints as evidence.
"""

from __future__ import annotations

import importlib
import sqlite3

from sqlalchemy import create_engine, text

from tests.cli.test_scenarios import _org


def _truncate_tail(db: str, keep: int) -> None:
    """What a malicious operator does with the database: drop every envelope after server
    seq ``keep`` and rebuild the log from what is left, so that it is consistent in itself."""
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM envelopes WHERE server_seq > ?", (keep,))
        conn.execute("DELETE FROM heads")
        conn.execute("DELETE FROM log_nodes")
        conn.execute(
            "UPDATE orgs SET last_seq = ?, log_frontier = NULL, checkpoint = NULL", (keep,)
        )
    migration = importlib.import_module("migrations.versions.0004_transparency_log")
    engine = create_engine(f"sqlite:///{db}")
    try:
        with engine.begin() as conn:
            migration._build_existing_logs(conn)
            conn.execute(text("SELECT 1"))
    finally:
        engine.dispose()


def test_tail_truncation_after_a_receipt_is_named_by_the_device_and_the_coordinator(
    server, devices
) -> None:
    """PROTOCOL §17.6 items 1 and 2: honest syncs say nothing; after the server cut its log
    back, the field device's and the coordinator's next syncs report ``log-rolled-back``
    and keep both signed checkpoints, and `status` says so afterwards."""
    coord, (field,) = _org(server, devices, "field")
    for place in ("Market", "School", "Clinic"):
        field.run("report", "new", "-f", f"place={place}")
    honest = field.run("sync").json
    assert honest["purged"] == 4 and not honest.get("log_findings")
    pulled = coord.run("sync").json
    assert not pulled.get("log_findings")
    assert not any("log-" in w for w in field.run("status").json["warnings"])

    server.stop()
    _truncate_tail(str(server.data_dir / "sealbox.db"), keep=2)  # the key envelope and one
    server.start()

    field.run("report", "new", "-f", "place=Bazaar")
    seen = field.run("sync").json
    assert seen["log_findings"] == ["log-rolled-back"]
    assert any(w.startswith("log-rolled-back") for w in field.run("status").json["warnings"])
    assert seen["purged"] == 1  # what it sends now is receipted against the new log
    named = coord.run("sync").json
    assert "log-rolled-back" in named["log_findings"]
    assert any(w.startswith("log-rolled-back") for w in coord.run("status").json["warnings"])
    # Nothing honest is flagged afterwards: the next syncs extend the adopted checkpoint.
    field.run("report", "new", "-f", "place=Port")
    assert not field.run("sync").json.get("log_findings")
    assert not coord.run("sync").json.get("log_findings")
