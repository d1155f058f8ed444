"""Checkpoints inside signed data: the log each author saw, checked by coordinators (§17.8).

Every revision carries ``w``, the newest log checkpoint its device had verified when it
sealed it (size and root), under the device's signature.  A coordinator that pulls the
revision learns what log the server showed that device, and asks the server to prove that
log a prefix of the one it is shown itself:

* a witnessed size larger than the coordinator's own log: the server showed the device a
  longer log than it shows this coordinator (it withholds from one side);
* a consistency proof from the witnessed size to the coordinator's checkpoint that does not
  verify against the witnessed root: the two were shown different histories.

Either is a ``split-view`` finding (`SplitViewSeen`) that names the device, the revision and
the server-signed checkpoint it contradicts.  Each witness is checked once (the caller
persists the checked ones), at most `MAX_CHECKS_PER_RUN` per run, so a burst of new
witnesses costs a bounded number of small requests, and the rest wait for the next sync.

What it rests on: the witness is the device's signed claim, not the server's signature, so
a malicious *device* can make the server look forked; the device's kept checkpoint (the
server-signed one its claim names) settles it.  And it needs evidence from the other side
to reach the coordinator at all: a device whose revisions the server withholds from this
coordinator altogether stays unseen until checkpoints are compared some other way (§17.4).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from sync.client.events import SplitViewSeen, WitnessesChecked
from sync.client.flow import Flow
from sync.client.log import LogPosition, ask_log, verified
from sync.client.staleness import Stored
from sync.merkle import ProofError, verify_consistency

__all__ = ["MAX_CHECKS_PER_RUN", "Witness", "witness_flow", "witnesses_in"]

MAX_CHECKS_PER_RUN = 64


@dataclass(frozen=True, slots=True)
class Witness:
    """One author's view of the log: ``key`` is the header's ``w`` bytes."""

    key: bytes
    device: bytes
    envelope_id: bytes

    @property
    def size(self) -> int:
        return int.from_bytes(self.key[:8], "big")

    @property
    def root(self) -> bytes:
        return self.key[8:]


def witnesses_in(stored: Iterable[Stored]) -> Iterator[Witness]:
    """The witnesses of the revisions among ``stored`` (size 0 says nothing: skipped)."""
    for item in stored:
        witness = item.header.witness
        if witness is not None and any(witness[:8]):
            yield Witness(witness, item.header.device, item.envelope_id)


def witness_flow(
    position: LogPosition,
    candidates: Iterable[Witness],
    *,
    org_path: str,
    checked: frozenset[bytes],
) -> Flow[int]:
    """Check the witnesses not checked before against the log this client is shown; the
    number checked.  ``position`` must hold the checkpoint of the feed just pulled."""
    todo: dict[bytes, Witness] = {}
    for witness in candidates:
        if witness.key not in checked:
            todo.setdefault(witness.key, witness)
    done: list[bytes] = []
    held = position.checkpoint
    for witness in sorted(todo.values(), key=lambda w: w.size)[:MAX_CHECKS_PER_RUN]:
        if held is None:
            break
        if witness.size > held.size:
            yield _split(witness, position, "the device was shown a longer log than you are")
        else:
            yield from _check(witness, position, org_path)
        done.append(witness.key)
    if done:
        yield WitnessesChecked(tuple(done))
    return len(done)


def _check(witness: Witness, position: LogPosition, org_path: str) -> Flow[None]:
    state = yield from ask_log(org_path, {"since": str(witness.size)})
    shown = verified(position, state.checkpoint, "log")
    if shown.size < witness.size:
        yield _split(witness, position, "the device was shown a longer log than you are")
        return
    try:
        verify_consistency(witness.size, shown.size, witness.root, shown.root, state.consistency)
    except ProofError:
        yield SplitViewSeen(
            witness.device,
            witness.envelope_id,
            witness.size,
            witness.root,
            state.checkpoint,
            "the device was shown another history of the log than you are",
        )


def _split(witness: Witness, position: LogPosition, why: str) -> SplitViewSeen:
    assert position.document is not None
    return SplitViewSeen(
        witness.device, witness.envelope_id, witness.size, witness.root, position.document, why
    )
