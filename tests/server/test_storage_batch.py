"""Storage primitives: the statement `Batch` (PostgreSQL pipeline / SQLite in order),
range reads of device-chain slots, and the SQLite settings that make a receipt durable
(docs/PROTOCOL.md §7.7)."""

from __future__ import annotations

import os
import secrets
import time
from typing import Any

import pytest
from sqlalchemy import Engine

from server.db import Batch, fetch, make_engine, read_tx, write_tx
from server.services.store import lock_org, queue_known, seq_runs
from server.tables import EnvelopeRow, Head
from sync.dag import Needs


def _org(engine: Engine) -> bytes:
    org_id = secrets.token_bytes(16)
    with write_tx(engine) as conn:
        batch = Batch(conn)
        batch.add(
            "INSERT INTO orgs (id, created_day, last_seq, roster_version, bytes_stored) "
            "VALUES (?, ?, ?, ?, ?)",
            (org_id, 20000, 0, 1, 0),
        )
        batch.run()
    return org_id


def test_batchseq_runs_statements_in_order_and_reports_rows_and_counts(engine: Engine) -> None:
    org_id = _org(engine)
    with write_tx(engine) as conn:
        batch = Batch(conn)
        inserted = batch.add(
            "INSERT INTO heads (org_id, report_id, envelope_id) VALUES (?, ?, ?)",
            [(org_id, b"r" * 16, bytes([i]) * 32) for i in range(3)],
            many=True,
        )
        nothing = batch.add(
            "INSERT INTO heads (org_id, report_id, envelope_id) VALUES (?, ?, ?)", [], many=True
        )
        # Sees the rows queued before it: statements run in order, in one transaction.
        counted = batch.add("SELECT count(*) FROM heads WHERE org_id = ?", (org_id,))
        deleted = batch.add(
            "DELETE FROM heads WHERE org_id = ? AND envelope_id = ?", (org_id, bytes([0]) * 32)
        )
        batch.run()
    assert inserted.rowcount == 3
    assert nothing.rowcount == 0
    assert counted.rows == [(3,)]
    assert deleted.rowcount == 1
    with read_tx(engine) as conn:
        batch = Batch(conn)
        left = batch.add(
            "SELECT envelope_id FROM heads WHERE org_id = ? ORDER BY envelope_id", (org_id,)
        )
        batch.run()
    assert left.rows == [(bytes([1]) * 32,), (bytes([2]) * 32,)]
    assert all(type(v) is bytes for (v,) in left.rows)


def test_lookups_go_in_chunks_and_miss_nothing(engine: Engine) -> None:
    org_id = _org(engine)
    reports = [i.to_bytes(16, "big") for i in range(1_203)]  # three chunks of <= 500
    with write_tx(engine) as conn:
        batch = Batch(conn)
        batch.add(
            "INSERT INTO heads (org_id, report_id, envelope_id) VALUES (?, ?, ?)",
            [(org_id, r, bytes(32)) for r in reports[::2]],
            many=True,
        )
        found = batch.add_lookup(
            "SELECT report_id FROM heads", "org_id = ?", (org_id,), "report_id", reports
        )
        none = batch.add_lookup(
            "SELECT report_id FROM heads", "org_id = ?", (org_id,), "report_id", []
        )
        batch.run()
    assert len(found) == 3
    assert none == []
    assert sorted(r for p in found for (r,) in p.rows) == reports[::2]


def test_a_failing_statement_fails_the_whole_transaction(engine: Engine) -> None:
    org_id = _org(engine)
    row = (org_id, b"r" * 16, b"e" * 32)
    with pytest.raises(Exception), write_tx(engine) as conn:  # noqa: B017 - either driver's error
        batch = Batch(conn)
        batch.add("INSERT INTO heads (org_id, report_id, envelope_id) VALUES (?, ?, ?)", row)
        batch.add("INSERT INTO heads (org_id, report_id, envelope_id) VALUES (?, ?, ?)", row)
        batch.run()
    with read_tx(engine) as conn:
        batch = Batch(conn)
        left = batch.add("SELECT count(*) FROM heads WHERE org_id = ?", (org_id,))
        batch.run()
    assert left.rows == [(0,)]


def test_lock_org_answers_404_for_an_unknown_organisation(engine: Engine) -> None:
    from server.errors import ApiError

    with pytest.raises(ApiError) as caught, write_tx(engine) as conn:
        lock_org(conn, secrets.token_bytes(16))
    assert caught.value.status == 404


def test_slotseq_runs_are_the_contiguous_ranges_of_the_distinct_seqs() -> None:
    assert list(seq_runs([])) == []
    assert list(seq_runs([5])) == [(5, 5)]
    assert list(seq_runs([3, 1, 2, 2, 7, 9, 8, 20])) == [(1, 3), (7, 9), (20, 20)]


def test_known_reads_device_slots_by_range_and_nothing_outside_them(engine: Engine) -> None:
    org_id, device = _org(engine), secrets.token_bytes(32)
    with write_tx(engine) as conn:
        batch = Batch(conn)
        batch.add(
            "INSERT INTO envelopes (org_id, server_seq, envelope_id, device_id, device_seq, prev, "
            "kind, report_id, flags, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (org_id, s, s.to_bytes(32, "big"), device, s, bytes(32), "rev", None, 0, b"x")
                for s in range(1, 41)
            ],
            many=True,
        )
        batch.run()
    need = Needs(frozenset(), frozenset((device, s) for s in (2, 3, 4, 30, 31, 99)), frozenset())
    with read_tx(engine) as conn:
        batch = Batch(conn)
        assemble = queue_known(batch, org_id, need)
        batch.run()
    known = assemble(1)
    assert sorted(seq for _, seq in known.by_slot) == [2, 3, 4, 30, 31]
    assert known.roster_version == 1


def test_sqlite_syncs_every_commit(tmp_path: object) -> None:
    """A receipt lets a device delete its copy: WAL + synchronous=FULL, never NORMAL."""
    from server.db import make_engine

    engine = make_engine(f"sqlite:///{tmp_path}/durable.db")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()


def test_a_batch_can_end_its_transaction_and_the_enclosing_commit_is_harmless(
    engine: Engine,
) -> None:
    org_id = _org(engine)
    with write_tx(engine) as conn:
        batch = Batch(conn)
        batch.add(
            "INSERT INTO heads (org_id, report_id, envelope_id) VALUES (?, ?, ?)",
            (org_id, b"r" * 16, b"e" * 32),
        )
        batch.run(commit=True)
    with read_tx(engine) as conn:
        batch = Batch(conn)
        stored = batch.add("SELECT count(*) FROM heads WHERE org_id = ?", (org_id,))
        batch.run()
    assert stored.rows == [(1,)]


def test_set_parameters_of_mixed_widths_find_the_same_rows(engine: Engine) -> None:
    """Fixed-width ids travel packed in one bytea on PostgreSQL; anything else as an array."""
    org_id = _org(engine)
    stored = [bytes([i]) * 32 for i in range(1, 6)]
    with write_tx(engine) as conn:
        batch = Batch(conn)
        batch.add(
            "INSERT INTO heads (org_id, report_id, envelope_id) VALUES (?, ?, ?)",
            [(org_id, b"r" * 16, e) for e in stored],
            many=True,
        )
        batch.run()
    select, where = "SELECT envelope_id FROM heads", "org_id = ?"
    with read_tx(engine) as conn:
        batch = Batch(conn)
        packed = batch.add_lookup(
            select, where, (org_id,), "envelope_id", [stored[0], stored[3], b"\x00" * 32]
        )
        mixed = batch.add_lookup(
            select, where, (org_id,), "envelope_id", [stored[1], b"short", stored[4]]
        )
        batch.run()
    assert sorted(e for p in packed for (e,) in p.rows) == [stored[0], stored[3]]
    assert sorted(e for p in mixed for (e,) in p.rows) == [stored[1], stored[4]]


def test_bulk_rows_land_in_queue_order_between_statements(engine: Engine) -> None:
    """`add_rows` is a COPY on PostgreSQL, split out of the pipeline but kept in order."""
    org_id = _org(engine)
    heads, columns = Head.__table__, ("org_id", "report_id", "envelope_id")  # type: ignore[attr-defined]
    with write_tx(engine) as conn:
        batch = Batch(conn)
        before = batch.add("SELECT count(*) FROM heads WHERE org_id = ?", (org_id,))
        copied = batch.add_rows(
            heads, columns, [(org_id, b"r" * 16, bytes([i]) * 32) for i in range(50)]
        )
        none = batch.add_rows(heads, columns, [])
        after = batch.add("SELECT count(*) FROM heads WHERE org_id = ?", (org_id,))
        batch.run(commit=True)
    assert (before.rows, copied.rowcount, none.rowcount, after.rows) == ([(0,)], 50, 0, [(50,)])


def test_fetch_reads_one_statement_outside_a_transaction(engine: Engine) -> None:
    org_id = _org(engine)
    assert fetch(engine, "SELECT last_seq FROM orgs WHERE id = ?", (org_id,)) == [(0,)]
    assert fetch(engine, "SELECT last_seq FROM orgs WHERE id = ?", (b"x" * 16,)) == []


@pytest.mark.postgres
def test_a_terminated_postgresql_backend_costs_no_request() -> None:
    """Pooled connections are not pinged on every checkout (a round trip each); one whose
    backend went away while it sat in the pool is noticed at checkout and replaced."""
    url = os.environ.get("SEALBOX_TEST_DATABASE_URL")
    if not url:
        pytest.skip("SEALBOX_TEST_DATABASE_URL is not set: PostgreSQL storage tests skipped")
    name = "sbx_terminate_" + secrets.token_hex(4)
    engine = make_engine(url, connect_args={"application_name": name})
    killer = make_engine(url)
    try:
        with engine.connect() as one, engine.connect() as two:  # two pooled connections
            one.exec_driver_sql("SELECT 1")
            two.exec_driver_sql("SELECT 1")
        for _ in range(3):
            with killer.connect() as conn:
                killed = conn.exec_driver_sql(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = %s",
                    (name,),
                ).scalar()
            assert killed >= 1
            time.sleep(0.1)  # the FATAL notice reaches the idle sockets
            assert fetch(engine, "SELECT 1 + ?", (1,)) == [(2,)]
            with write_tx(engine) as conn:
                assert conn.exec_driver_sql("SELECT 2").scalar() == 2
    finally:
        engine.dispose()
        killer.dispose()


def test_rows_are_inserted_and_deleted_by_key_packed_or_not(engine: Engine) -> None:
    """`Batch.add_rows` / `delete_rows`: one packed statement on PostgreSQL when every
    column is constant or fixed-width, per row otherwise; the same rows either way."""
    org_id = _org(engine)
    heads = Head.__table__  # type: ignore[attr-defined]
    columns = ("org_id", "report_id", "envelope_id")
    rows = [(org_id, bytes([i % 3]) * 16, bytes([i]) * 32) for i in range(12)]
    odd = [(org_id, b"odd-width", b"e" * 32), (org_id, b"r" * 16, b"short")]
    with write_tx(engine) as conn:
        batch = Batch(conn)
        batch.add_rows(heads, columns, rows)
        batch.add_rows(heads, columns, odd)
        batch.add_rows(heads, columns, [])
        batch.run()
    gone = rows[::2] + [(org_id, b"x" * 16, b"y" * 32)]  # one row never existed
    with write_tx(engine) as conn:
        batch = Batch(conn)
        deleted = batch.delete_rows(heads, columns, gone)
        batch.delete_rows(heads, columns, odd[:1])
        nothing = batch.delete_rows(heads, columns, [])
        batch.run()
    assert nothing.rowcount == 0
    assert deleted.rowcount == 6
    with read_tx(engine) as conn:
        left = {
            tuple(r)
            for r in conn.exec_driver_sql("SELECT org_id, report_id, envelope_id FROM heads")
        }
    assert left == set(rows[1::2]) | set(odd[1:])


def _rows_read(plan: dict[str, Any]) -> int:
    """Rows that the plan's scans of ``envelopes`` produced (PostgreSQL EXPLAIN ANALYZE)."""
    own = plan["Actual Rows"] if plan.get("Relation Name") == "envelopes" else 0
    return own + sum(_rows_read(child) for child in plan.get("Plans", []))


@pytest.mark.postgres
def test_the_chain_above_the_watermark_is_read_as_an_index_range(
    pg_schema_engine: Engine,
) -> None:
    """Push reads a device's seqs above its watermark: with a contiguous chain of 2,000
    envelopes that is nothing, not the device's whole chain filtered row by row."""
    from server import migrate
    from server.services.push import _CHAIN_ABOVE_SQL, _ENVELOPE_COLUMNS

    engine = pg_schema_engine
    migrate.upgrade(engine)
    org_id, device = _org(engine), secrets.token_bytes(16)
    with write_tx(engine) as conn:
        batch = Batch(conn)
        batch.add(
            "INSERT INTO devices (org_id, device_id, signing_key, role, state, "
            "equivocation, watermark, max_seq) VALUES (?, ?, ?, 'field', 'admitted', "
            "false, 2000, 2000)",
            (org_id, device, bytes(32)),
        )
        batch.add_rows(
            EnvelopeRow.__table__,  # type: ignore[attr-defined]
            _ENVELOPE_COLUMNS,
            [
                (org_id, s, s.to_bytes(32, "big"), device, s, bytes(32), "rev", None, 0, b"x")
                for s in range(1, 2001)
            ],
        )
        batch.run()
    sql = "EXPLAIN (ANALYZE, FORMAT JSON) " + _CHAIN_ABOVE_SQL.replace("?", "%s")
    with engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE envelopes")
        for lo, hi in ((2001, 2100), (1, 100)):
            plan = conn.exec_driver_sql(sql, (org_id, device, org_id, device, lo, hi)).scalar()
            assert _rows_read(plan[0]["Plan"]) == 0
