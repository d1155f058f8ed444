"""Stateful property test of the client engine (PROTOCOL §15.2, §15.3, §15.8).

A device writes edits, pushes over a link that loses replies and a client that
crashes between the server's commit and its own checkpoint (state reverts to
what was last persisted), and a coordinator pulls the server's envelopes in
any order with duplicates.  Invariants: nothing sealed is ever lost (it is
queued or stored), the server never sees two envelopes for one device sequence
number, and after a final clean sync the coordinator's merged state equals the
model and has no findings.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from crypto import encoding, parse_envelope
from sync.engine import Checkpoint, DeviceState, Limits, push_flow, seal_edit
from tests.sync.test_engine import PATH, HonestServer, Org, content

REPORTS = [bytes([i]) * 16 for i in range(3)]


class CrashedMidSync(Exception):
    pass


class DeviceSync(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.org = Org()
        self.state = self.org.device()
        self.persisted = encoding.encode(self.state.to_cbor())
        self.server = HonestServer(self.org)
        self.sealed: set[bytes] = set()
        self.by_seq: dict[int, bytes] = {}
        self.model: dict[bytes, str] = {}

    def persist(self) -> None:
        self.persisted = encoding.encode(self.state.to_cbor())

    def restart(self) -> None:
        self.state = DeviceState.from_cbor(encoding.decode(self.persisted))

    @rule(report=st.sampled_from(REPORTS), value=st.text(min_size=1, max_size=8))
    def write(self, report: bytes, value: str) -> None:
        seal_edit(
            self.state,
            roster=self.org.roster,
            signing_key=self.org.field,
            report=report,
            content=content(v=value),
        )
        self.persist()  # sealing and persisting are one local transaction
        self.sealed.update(i.envelope_id for i in self.state.outbox)
        self.model[report] = value

    @rule(
        batch=st.integers(1, 4),
        crash_at=st.one_of(st.none(), st.integers(0, 4)),
        lose_reply=st.booleans(),
    )
    def push(self, batch: int, crash_at: int | None, lose_reply: bool) -> None:
        flow = push_flow(
            self.state,
            server_key=self.org.server.verify_key,
            limits=Limits(batch, 10**6),
            org_path=PATH,
        )
        exchanges = 0
        try:
            message = next(flow)
            while True:
                if isinstance(message, Checkpoint):
                    self.persist()
                    reply = None
                else:
                    reply = self.server(message)  # the server commits...
                    if crash_at is not None and exchanges == crash_at:
                        # ...and the client dies (or the reply is lost) before it checkpoints.
                        raise CrashedMidSync
                    exchanges += 1
                message = flow.send(reply)
        except StopIteration:
            pass
        except CrashedMidSync:
            self.restart()

    @invariant()
    def nothing_sealed_is_lost(self) -> None:
        queued = {i.envelope_id for i in self.state.outbox}
        assert self.sealed <= queued | set(self.server.stored)

    @invariant()
    def the_server_never_sees_a_sequence_number_twice(self) -> None:
        for envelope_id in self.server.stored:
            seq = self.server_seqs().get(envelope_id)
            assert self.by_seq.setdefault(seq, envelope_id) == envelope_id

    def server_seqs(self) -> dict[bytes, int]:
        return {i: parse_envelope(self.server.raw[i]).header.seq for i in self.server.stored}

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def final_sync_converges(self, data) -> None:
        for _ in range(3):  # a clean sync (each item is tried once per run)
            self.push(batch=100, crash_at=None, lose_reply=False)
        assert self.state.outbox == []
        view = self.org.view()
        envelopes = list(self.server.raw.values())
        order = data.draw(st.permutations(envelopes + envelopes[: len(envelopes) // 2]))
        for raw in order:
            view.ingest(raw)
        assert view.findings() == []
        for report, value in self.model.items():
            assert view.report(report).field("v").value == value


TestDeviceSync = DeviceSync.TestCase
TestDeviceSync.settings = settings(max_examples=25, stateful_step_count=15, deadline=None)
