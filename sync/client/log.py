"""The organisation's transparency log as a client holds it (PROTOCOL §17.6).

Rules:
* A client keeps the newest checkpoint it verified (`LogPosition`) and adopts a newer
  one only through a consistency proof from it (`advance`).  A smaller tree is
  ``log-rolled-back``, the same size with another root ``log-forked``, a proof that
  does not verify ``log-inconsistent``: each is a `LogMisbehaviour` event carrying both
  signed checkpoints, the proof a third party can check with the server key.
* Being told is not being stopped: after a finding the client adopts the server's
  checkpoint and goes on (a server restored from a backup looks like a rollback, and
  §15.6 repairs it by re-pushing), but the finding is kept and shown on every read.
  What would do harm stops the run instead: a receipt whose checkpoint does not hold
  its items purges nothing (`sync.receipt.Receipt.verify_logged`), and a feed page that
  is not a prefix of its checkpoint is not applied (`check_page`).
* A coordinator also keeps the frontier of the leaves it pulled (the feed's envelope
  ids in server order), so each page is checked against the tree, not only the proofs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from crypto import VerificationFailed, VerifyKey
from sync.checkpoint import Checkpoint, is_fork
from sync.client.events import LogCheckpointAdopted, LogMisbehaviour
from sync.client.flow import Flow, Request, ServerMisbehaved, decode, expect
from sync.merkle import Frontier, ProofError, leaf_hash, verify_consistency
from sync.messages import ChangesPage, LogState

if TYPE_CHECKING:
    from sync.client.chain import DeviceState

__all__ = ["LogPosition", "advance", "ask_log", "check_page", "log_flow", "verified", "witness_of"]

ROLLED_BACK = "log-rolled-back"
FORKED = "log-forked"
INCONSISTENT = "log-inconsistent"


@dataclass(slots=True)
class LogPosition:
    """The newest verified checkpoint (its signed bytes) and, for coordinators, the
    frontier of the feed pulled so far (its size is the feed cursor's position)."""

    org_id: bytes
    server_key: VerifyKey
    document: bytes | None = None
    checkpoint: Checkpoint | None = None
    frontier: Frontier = field(default_factory=Frontier.empty)
    device: DeviceState | None = None  # its ``witness`` follows every adopted checkpoint

    @classmethod
    def restore(
        cls,
        org_id: bytes,
        server_key: VerifyKey,
        document: bytes | None,
        frontier: Frontier | None = None,
        device: DeviceState | None = None,
    ) -> LogPosition:
        """From what the client persisted; a held checkpoint that no longer verifies (the
        server key changed) is dropped, and the next one is adopted afresh."""
        position = cls(org_id, server_key, frontier=frontier or Frontier.empty(), device=device)
        if document is not None:
            try:
                position.checkpoint = Checkpoint.verify(document, server_key, org_id=org_id)
                position.document = document
            except VerificationFailed:
                pass
        return position

    @property
    def size(self) -> int:
        return self.checkpoint.size if self.checkpoint is not None else 0

    def query(self) -> dict[str, str]:
        """The ``since`` a request carries so the server proves from what is held."""
        return {"since": str(self.size)} if self.checkpoint is not None else {}


def verified(position: LogPosition, document: bytes, what: str) -> Checkpoint:
    """``document`` as a checkpoint of this org by the pinned server key; misbehaviour if not."""
    try:
        return Checkpoint.verify(document, position.server_key, org_id=position.org_id)
    except VerificationFailed:
        raise ServerMisbehaved(f"{what}: the log checkpoint does not verify") from None


def advance(
    position: LogPosition,
    document: bytes,
    proof: Sequence[bytes],
    *,
    what: str,
    strict: bool = False,
) -> Flow[Checkpoint]:
    """Adopt ``document`` if the held checkpoint is a prefix of it (``proof``); otherwise
    report the finding with both checkpoints, and adopt it all the same (module rules),
    or, ``strict``, stop the run with `ServerMisbehaved` and adopt nothing."""
    offered = verified(position, document, what)
    held, held_document = position.checkpoint, position.document
    if held is not None and held_document is not None and held_document != document:
        kind = _finding(held, offered, proof)
        if kind is not None:
            yield LogMisbehaviour(kind, held_document, document, what)
            if strict:
                raise ServerMisbehaved(
                    f"{what}: {kind}: the log does not extend the held checkpoint"
                )
    if held is None or held_document != document:
        position.checkpoint, position.document = offered, document
        if position.device is not None:
            position.device.witness = witness_of(offered)
        yield LogCheckpointAdopted(document)
    return offered


def witness_of(checkpoint: Checkpoint) -> bytes:
    """A revision header's ``w`` for ``checkpoint``: ``u64be(size) || root`` (§4.1, §17.8)."""
    return checkpoint.size.to_bytes(8, "big") + checkpoint.root


def _finding(held: Checkpoint, offered: Checkpoint, proof: Sequence[bytes]) -> str | None:
    if offered.size < held.size:
        return ROLLED_BACK
    if is_fork(held, offered):
        return FORKED
    try:
        verify_consistency(held.size, offered.size, held.root, offered.root, proof)
    except ProofError:
        return INCONSISTENT
    return None


def log_flow(position: LogPosition, *, org_path: str) -> Flow[Checkpoint]:
    """Ask for the current checkpoint with a proof from the held one (§17.6 item 2)."""
    state = yield from ask_log(org_path, position.query())
    return (yield from advance(position, state.checkpoint, state.consistency, what="log"))


def ask_log(org_path: str, query: dict[str, str]) -> Flow[LogState]:
    """``GET /log`` (§17.5): the current checkpoint, with a proof from ``since`` if given."""
    response = yield Request("GET", f"{org_path}/log", query=query, max_answer_bytes=64 * 1024)
    if isinstance(response, tuple) or response is None:
        raise TypeError("the driver must send a Response back for a Request")
    return decode(expect(response, 200), LogState, what="log")


def check_page(
    position: LogPosition, page: ChangesPage, ids: Sequence[bytes], *, after: int, last: int
) -> Flow[Frontier]:
    """The frontier after ``page`` (whose items' envelope ids are ``ids``) if the items extend
    the pulled tree to a prefix of the page's checkpoint (§17.6 item 3); the page is refused
    otherwise.  Adopts the page's checkpoint through its ``consistency`` proof.  The caller
    persists the frontier with the cursor."""
    if position.frontier.size != after:
        raise ValueError("the pulled frontier does not match the cursor it pulls from")
    frontier, _ = position.frontier.append(leaf_hash(e) for e in ids)
    checkpoint = verified(position, page.log.checkpoint, "feed")
    if checkpoint.size < last:
        raise ServerMisbehaved("feed: the page's checkpoint does not cover its items")
    if not page.more and last < checkpoint.size:
        raise ServerMisbehaved("feed: the feed ends before the log its checkpoint signs")
    try:
        verify_consistency(last, checkpoint.size, frontier.root(), checkpoint.root, page.log.prefix)
    except ProofError:
        raise ServerMisbehaved(
            "feed: the page's items are not the first entries of the log its checkpoint signs"
            " (an item dropped, altered or reordered, or a forked log)"
        ) from None
    yield from advance(position, page.log.checkpoint, page.log.consistency, what="feed")
    position.frontier = frontier
    return frontier
