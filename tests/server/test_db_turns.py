"""A process's write transactions go first: parse slices wait for them (server.db)."""

from __future__ import annotations

import threading
import time

import server.db as db
from server.db import _TransactionsFirst


def test_a_slice_waits_for_an_open_transaction_and_transactions_do_not_wait_for_each_other(
    monkeypatch,
):
    monkeypatch.setattr(db, "_SLICE_MAX_WAIT", 30.0)
    turns = _TransactionsFirst()
    events: list[str] = []
    in_tx = threading.Event()
    with turns.transaction():
        with turns.transaction():  # a second one (another organisation) is not held up
            pass

        def slice_() -> None:
            in_tx.wait(5)
            with turns.slice():
                events.append("slice")

        t = threading.Thread(target=slice_)
        t.start()
        in_tx.set()
        time.sleep(0.2)
        events.append("transaction ends")
    t.join(5)
    assert events == ["transaction ends", "slice"]


def test_a_transaction_waits_for_the_running_slice():
    turns = _TransactionsFirst()
    events: list[str] = []
    sliced = threading.Event()

    def slice_() -> None:
        with turns.slice():
            sliced.set()
            time.sleep(0.2)
            events.append("slice ends")

    t = threading.Thread(target=slice_)
    t.start()
    assert sliced.wait(5)
    with turns.transaction():
        events.append("transaction")
    t.join(5)
    assert events == ["slice ends", "transaction"]


def test_a_slice_does_not_starve_behind_transactions_that_never_pause(monkeypatch):
    monkeypatch.setattr(db, "_SLICE_MAX_WAIT", 0.1)
    turns = _TransactionsFirst()
    with turns.transaction():
        start = time.monotonic()
        with turns.slice():
            waited = time.monotonic() - start
    assert 0.09 <= waited < 5
