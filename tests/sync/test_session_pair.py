"""The real client session against the real server, linked in memory (after h11's pair).

`sync.client.sync_flow` runs against the FastAPI app through its test client (the CLI's
own `Transport` over it), so every answer comes from the real server rules.  Hostile
tests wrap that link and corrupt one kind of answer; each asserts the flow refuses it,
that the persisted state is byte for byte what it was before (PROTOCOL §15.9 item 3),
and that the next honest sync converges with nothing lost.
"""

from __future__ import annotations

import os
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cbor2
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "attachments"))

from attach_support import attach_env  # noqa: E402
from server_api import Org  # noqa: E402

from clients.local.transport import Transport  # noqa: E402
from crypto import parse_envelope  # noqa: E402
from server.blobstore import FilesystemBlobStore  # noqa: E402
from sync.client import (  # noqa: E402
    BatchAcknowledged,
    Bounds,
    ChangesPulled,
    CoordinatorView,
    DeviceState,
    Event,
    ItemRefused,
    LogCheckpointAdopted,
    Request,
    Response,
    RunBudgetSpent,
    ServerMisbehaved,
    SyncInputs,
    drive,
    seal_edit,
    sync_flow,
)
from sync.cursor import decode_cursor, encode_cursor  # noqa: E402
from sync.report import ReportContent  # noqa: E402
from sync.roster import Role, SignedRoster  # noqa: E402


@dataclass
class Persisted:
    """What a driver keeps on disk: only what events name (as the CLI's store does)."""

    cursor: str | None = None
    envelopes: dict[bytes, bytes] = field(default_factory=dict)
    device: bytes = b""
    log_frontier: bytes = b""  # the pulled tree at ``cursor`` (PROTOCOL §17.4)
    log_checkpoint: bytes | None = None  # the newest verified checkpoint

    def snapshot(self) -> bytes:
        """What a page could change (the held checkpoint moves on with ``/log`` too)."""
        return cbor2.dumps(
            [self.cursor, sorted(self.envelopes.items()), self.device, self.log_frontier]
        )


@dataclass
class Peer:
    org: Org
    key: Any
    role: Role
    trusted: SignedRoster
    state: DeviceState
    send: Callable[[Request], Response]
    kem: Any = None
    saved: Persisted = field(default_factory=Persisted)
    events: list[Event] = field(default_factory=list)

    def view(self) -> CoordinatorView:
        view = CoordinatorView(roster=self.trusted, kem_key=self.kem, history=self.org.rosters)
        for data in self.saved.envelopes.values():
            view.ingest(data)
        return view

    def on_event(self, event: Event) -> None:
        self.events.append(event)
        if isinstance(event, ChangesPulled):
            self.saved.envelopes.update({parse_envelope(e).id: e for e in event.envelopes})
            self.saved.cursor = event.cursor
            self.saved.log_frontier = event.log_frontier
        elif isinstance(event, LogCheckpointAdopted):
            self.saved.log_checkpoint = event.checkpoint
        elif isinstance(event, (BatchAcknowledged, ItemRefused)):
            self.saved.device = cbor2.dumps(self.state.to_cbor())

    def sync(self, send: Callable[[Request], Response] | None = None, **bounds: Any) -> Any:
        view = self.view() if self.role is Role.COORDINATOR else None
        inputs = SyncInputs(
            org_path=self.org.path,
            role=self.role,
            signing_key=self.key,
            trusted=self.trusted,
            roster_chain=self.org.rosters,
            state=self.state,
            clock=bounds.pop("clock", time.monotonic),
            view=view,
            cursor=self.saved.cursor,
            bounds=Bounds(**bounds),
            log_checkpoint=self.saved.log_checkpoint,
            log_frontier=self.saved.log_frontier,
        )
        self.events = []
        report = drive(sync_flow(inputs), send or self.send, self.on_event)
        return report, view


@dataclass
class World:
    field: Peer
    coord: Peer
    reports: int = 0

    def write(self, n: int) -> None:
        roster = self.field.trusted
        for i in range(n):
            content = ReportContent(client_time=1_700_000_000, fields={"n": str(self.reports + i)})
            seal_edit(
                self.field.state,
                roster=roster,
                signing_key=self.field.key,
                report=secrets.token_bytes(16),
                content=content,
            )
        self.reports += n
        self.field.sync()
        assert not self.field.state.outbox

    def converged(self) -> None:
        _, view = self.coord.sync(page_items=4)
        assert len(view.reports()) == self.reports
        assert all(view.verification(r).verified for r in view.reports())
        assert [f for f in view.findings() if f.kind != "not-addressed"] == []


def _link(env: Any, key: Any) -> Callable[[Request], Response]:
    """The CLI's own Transport, signing with ``key``, over the app's in-memory test client."""
    transport = Transport("http://testserver", signing_key=key, retries=0, sleep=lambda s: None)
    transport.client.close()
    transport.client = env.client
    return transport.send


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    for env in attach_env(tmp_path, FilesystemBlobStore(tmp_path / "blobs")):
        org = env.org
        device = org.add_device(Role.FIELD)
        me = org.coordinator.verify_key.key_id
        yield World(
            Peer(org, device.key, Role.FIELD, org.rosters[-1],
                 DeviceState(org_id=org.org_id, device_id=device.device_id),
                 _link(env, device.key)),
            Peer(org, org.coordinator, Role.COORDINATOR, org.rosters[-1],
                 DeviceState(org_id=org.org_id, device_id=me), _link(env, org.coordinator),
                 kem=org.coordinator_kem),
        )  # fmt: skip


def test_a_field_device_and_a_coordinator_converge_through_the_real_server(world) -> None:
    """PROTOCOL §15: the whole session order, both roles, against the real rules."""
    world.write(12)
    assert world.field.state.sent == 13  # the sender key and 12 revisions, all receipted
    world.converged()
    assert any(isinstance(e, ChangesPulled) for e in world.coord.events)


def _feed(request: Request) -> bool:
    return request.method == "GET" and request.path.endswith("/changes")


def _page(response: Response) -> dict[str, Any]:
    return cbor2.loads(response.content)  # type: ignore[no-any-return]


def _answer(page: dict[str, Any]) -> Response:
    return Response.of_cbor(200, page)


def _same_cursor_forever(request: Request, page: dict[str, Any]) -> dict[str, Any]:
    epoch, _ = decode_cursor(page["cursor"]) or (b"", 0)
    asked = decode_cursor(request.query.get("cursor", ""))
    return {"items": [], "cursor": encode_cursor(epoch, asked[1] if asked else 0), "more": True}


FEED_ATTACKS: dict[str, Callable[[Request, dict[str, Any]], dict[str, Any] | bytes]] = {
    "random_bytes": lambda r, p: os.urandom(2000),
    "nested_500000": lambda r, p: b"\x81" * 500_000 + b"\x00",
    "length_2_63": lambda r, p: b"\x9b" + (2**63).to_bytes(8, "big"),
    "drop_middle_item": lambda r, p: {**p, "items": p["items"][:1] + p["items"][2:]},
    "drop_last_items_keep_cursor": lambda r, p: {**p, "items": p["items"][:-2]},
    "repeat_an_item": lambda r, p: {**p, "items": p["items"][:1] * 2 + p["items"][2:]},
    "reorder_items": lambda r, p: {**p, "items": list(reversed(p["items"]))},
    "junk_cursor": lambda r, p: {**p, "cursor": "junk"},
    "huge_cursor": lambda r, p: {**p, "cursor": "A" * 10_000},
    "cursor_of_another_epoch": lambda r, p: {
        **p,
        "cursor": encode_cursor(os.urandom(16), decode_cursor(p["cursor"])[1]),  # type: ignore[index]
    },
    "more_for_ever": _same_cursor_forever,
    "more_items_than_asked": lambda r, p: {**p, "items": p["items"] * 3},
    "junk_items": lambda r, p: {**p, "items": [{"x": 1}] * len(p["items"])},
}


@pytest.mark.parametrize("attack", FEED_ATTACKS)
def test_a_hostile_feed_page_persists_nothing_and_the_next_sync_converges(world, attack) -> None:
    """PROTOCOL §9.1, §15.9: the page is refused whole; its cursor is never adopted."""
    world.write(6)
    world.converged()
    world.write(6)
    before = world.coord.saved.snapshot()
    hits = []

    def hostile(request: Request) -> Response:
        response = world.coord.send(request)
        if _feed(request) and response.status == 200 and len(_page(response)["items"]) >= 3:
            hits.append(request)
            made = FEED_ATTACKS[attack](request, _page(response))
            return (
                Response(200, made, "application/cbor")
                if isinstance(made, bytes)
                else _answer(made)
            )
        return response

    with pytest.raises(ServerMisbehaved, match="feed"):
        world.coord.sync(hostile, page_items=4)
    assert hits
    assert world.coord.saved.snapshot() == before
    world.converged()


def test_an_oversized_feed_answer_is_asked_again_smaller_then_refused(world) -> None:
    world.write(6)
    asked: list[int] = []

    def oversized(request: Request) -> Response:
        response = world.coord.send(request)
        if _feed(request):
            asked.append(int(request.query["limit"]))
            return Response(200, b"", "application/cbor", oversized=True)
        return response

    with pytest.raises(ServerMisbehaved, match="larger than this client accepts"):
        world.coord.sync(oversized, page_items=8)
    assert asked == [8, 4, 2, 1]
    world.converged()


PUSH_ATTACKS: dict[str, Callable[[dict[str, Any]], dict[str, Any] | bytes]] = {
    "garbage": lambda a: os.urandom(100),
    "results_reordered": lambda a: {**a, "results": list(reversed(a["results"]))},
    "a_result_dropped": lambda a: {**a, "results": a["results"][:-1]},
    "forged_receipt": lambda a: {**a, "receipt": a["receipt"][:-4] + "AAAA"},
    "unknown_status": lambda a: {**a, "results": [{**r, "status": "lost"} for r in a["results"]]},
}


@pytest.mark.parametrize("attack", PUSH_ATTACKS)
def test_a_hostile_push_answer_purges_nothing_and_the_next_sync_delivers(world, attack) -> None:
    """PROTOCOL §15.2 item 3, §15.3 item 1: nothing of that answer is applied."""
    import json

    world.write(1)
    for i in range(4):
        content = ReportContent(client_time=1_700_000_000, fields={"k": str(i)})
        seal_edit(world.field.state, roster=world.field.trusted, signing_key=world.field.key,
                  report=secrets.token_bytes(16), content=content)  # fmt: skip
    world.reports += 4
    queued = [i.envelope_id for i in world.field.state.outbox]

    def hostile(request: Request) -> Response:
        response = world.field.send(request)
        if request.path.endswith("/push") and response.status == 200:
            made = PUSH_ATTACKS[attack](json.loads(response.content))
            body = made if isinstance(made, bytes) else json.dumps(made).encode()
            return Response(200, body, "application/json")
        return response

    with pytest.raises(ServerMisbehaved):
        world.field.sync(hostile)
    assert [i.envelope_id for i in world.field.state.outbox] == queued
    world.field.sync()
    assert not world.field.state.outbox
    world.converged()


def test_a_run_stops_at_its_page_budget_and_the_next_resumes(world) -> None:
    """PROTOCOL §15.9 item 2."""
    world.write(10)
    report, _ = world.coord.sync(page_items=2, max_pages=2)
    assert any(isinstance(e, RunBudgetSpent) for e in world.coord.events)
    assert not report.pull.finished and report.pull.pages == 2
    world.converged()


def test_a_run_stops_when_its_time_budget_is_spent(world) -> None:
    world.write(10)
    ticks = iter(range(0, 10_000, 50))
    report, _ = world.coord.sync(page_items=2, run_seconds=120, clock=lambda: float(next(ticks)))
    assert any(isinstance(e, RunBudgetSpent) for e in world.coord.events)
    assert report.pull.pages < 10
    world.converged()
