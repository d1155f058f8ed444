"""The coordinator's ratchet walk: any arrival order opens every revision (PROTOCOL §4.3)."""

from __future__ import annotations

import random

import pytest

from crypto import ChainKey
from tests.sync.client.support import REPORT, Org, field_of, sealed


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_revisions_far_apart_in_one_epoch_open_in_any_order(seed: int) -> None:
    org = Org()
    envelopes = sealed(org, 200)  # one sender key, then 200 revisions: past several marks
    key, revisions = envelopes[0], envelopes[1:]
    random.Random(seed).shuffle(revisions)
    view = org.view()
    view.ingest(key)
    for data in revisions:
        view.ingest(data)
    assert view.findings() == []
    assert view.verification(REPORT).verified
    assert field_of(view, REPORT, "a").value == "199"
    state = view.report(REPORT)
    assert state is not None and state.revision_count == 200


def test_out_of_order_revisions_do_not_walk_the_chain_from_its_start_each_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    org = Org()
    envelopes = sealed(org, 300)
    view = org.view()
    view.ingest(envelopes[0])
    steps = [0]
    advance = ChainKey.advance

    def counted(self: ChainKey):  # type: ignore[no-untyped-def]
        steps[0] += 1
        return advance(self)

    monkeypatch.setattr(ChainKey, "advance", counted)
    for data in reversed(envelopes[1:]):  # newest first: the worst order for a plain walk
        view.ingest(data)
    assert view.report(REPORT) is not None and view.findings() == []
    # A walk from CK0 each time would take ~300 * 300 / 2 = 45,000 steps: each chain key
    # is derived once, and one more step gives each revision its message key.
    assert steps[0] <= 2 * 300
