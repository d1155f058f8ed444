"""Random interleavings, duplicates, lost responses and reordering of pushes (PROTOCOL.md §8.3).

Several honest devices write revisions on shared reports (each revision's parents
are heads the writer had seen when it wrote).  The network delivers their
outboxes in arbitrary batches: reordered within a batch, repeated, with
responses lost.  Devices keep an item until a result says it is stored or
terminal (missing_parents stays queued).  Whatever happens:

* nothing acknowledged is ever lost and keeps its server_seq (invariant);
* server sequence numbers are 1..N without gaps or repeats (invariant);
* when everything is delivered, the store holds every envelope exactly once,
  and the heads of every report and each device's watermark equal those of
  in-order delivery.  No honest device is ever flagged.
"""

from __future__ import annotations

import random
import secrets

from dag_memory import MemoryStore, Writer
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from crypto import Envelope
from sync.messages import ItemStatus


def write_script(
    rng: random.Random, devices: int, revisions: int
) -> tuple[list[Writer], list[Envelope]]:
    """Global creation order of every envelope; parents are heads the writer saw."""
    writers = [Writer() for _ in range(devices)]
    reports = [secrets.token_bytes(16) for _ in range(2)]
    seen_heads: dict[bytes, set[bytes]] = {r: set() for r in reports}
    order: list[Envelope] = []
    for w in writers:
        order.append(w.key_envelope())
    for _ in range(revisions):
        w = rng.choice(writers)
        report = rng.choice(reports)
        heads = sorted(seen_heads[report])
        parents = heads if rng.random() < 0.7 else rng.sample(heads, k=min(len(heads), 1))
        env = w.revision(report, parents)
        seen_heads[report] = (seen_heads[report] - set(parents)) | {env.id}
        order.append(env)
    return writers, order


class PushInterleavings(RuleBasedStateMachine):
    @initialize(seed=st.integers(0, 2**32), devices=st.integers(1, 3), revisions=st.integers(1, 12))
    def setup(self, seed: int, devices: int, revisions: int) -> None:
        rng = random.Random(seed)
        self.writers, self.order = write_script(rng, devices, revisions)
        self.by_device = {
            w.device_id: [e for e in self.order if e.header.device == w.device_id]
            for w in self.writers
        }
        self.outbox = {d: list(envs) for d, envs in self.by_device.items()}
        self.store = MemoryStore()
        self.acked: dict[bytes, int] = {}
        # Reference: in-order delivery, one envelope at a time.
        self.reference = MemoryStore()
        for env in self.order:
            assert (
                self.reference.push(env.header.device, [env]).outcomes[0].status
                is ItemStatus.CREATED
            )

    def _deliver(self, device: bytes, batch: list[Envelope], lose_response: bool) -> None:
        plan = self.store.push(device, list(batch))
        for env, outcome in zip(batch, plan.outcomes, strict=True):
            assert outcome.status in (
                ItemStatus.CREATED,
                ItemStatus.CONFLICT,
                ItemStatus.DUPLICATE,
                ItemStatus.MISSING_PARENTS,
            ), outcome
            if outcome.status.stored:
                assert outcome.server_seq is not None
                if env.id in self.acked:
                    assert outcome.server_seq == self.acked[env.id]  # idempotent
                if not lose_response:
                    self.acked[env.id] = outcome.server_seq
                    if env in self.outbox[device]:
                        self.outbox[device].remove(env)

    @precondition(lambda self: any(self.outbox.values()))
    @rule(data=st.data(), lose_response=st.booleans())
    def push_some(self, data: st.DataObject, lose_response: bool) -> None:
        ready = [w.device_id for w in self.writers if self.outbox[w.device_id]]
        device = data.draw(st.sampled_from(ready))  # writer order: stable across runs
        box = self.outbox[device]
        size = data.draw(st.integers(1, len(box)))
        batch = data.draw(st.permutations(box[:size]))
        self._deliver(device, list(batch), lose_response)

    @precondition(lambda self: bool(self.acked))
    @rule(data=st.data())
    def replay_acked(self, data: st.DataObject) -> None:
        acked = [e for e in self.order if e.id in self.acked]
        env = data.draw(st.sampled_from(acked))
        self._deliver(env.header.device, [env], lose_response=False)

    @invariant()
    def nothing_acknowledged_is_lost(self) -> None:
        if not hasattr(self, "store"):
            return
        for envelope_id, seq in self.acked.items():
            assert self.store.rows[envelope_id].server_seq == seq
        seqs = sorted(r.server_seq for r in self.store.rows.values())
        assert seqs == list(range(1, len(seqs) + 1))
        assert not self.store.evidence

    def teardown(self) -> None:
        if not hasattr(self, "store"):
            return
        # Drain: each device retries its outbox in order until everything is stored.
        for _ in range(len(self.order) + 1):
            for w in self.writers:
                device, box = w.device_id, self.outbox[w.device_id]
                if box:
                    self._deliver(device, list(box), lose_response=False)
        assert not any(self.outbox.values())
        assert set(self.store.rows) == {e.id for e in self.order}
        assert self.store.heads == self.reference.heads
        assert self.store.watermarks == self.reference.watermarks
        # And both equal the DAG's own definition: heads are the revisions no other names.
        named = {p for e in self.order for p in e.header.parents}
        expected: dict[bytes, set[bytes]] = {}
        for e in self.order:
            if e.header.report is not None and e.id not in named:
                expected.setdefault(e.header.report, set()).add(e.id)
        assert {r: set(h) for r, h in self.store.heads.items()} == expected
        assert self.store.watermarks == {w.device_id: w.seq for w in self.writers}


TestPushInterleavings = PushInterleavings.TestCase
