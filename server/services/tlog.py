"""The per-organisation transparency log on the server (docs/PROTOCOL.md §17).

The tree rules and proofs are `sync.merkle`'s, the checkpoint format `sync.checkpoint`'s;
this module only keeps the tree in the database:

* the frontier (the right edge, ≤ 64 hashes) lives in the org row with ``last_seq`` and is
  advanced inside the push transaction, under the org lock: no push rehashes history;
* perfect subtrees of ``STORED_LEVEL`` and above (16 leaves and more) are rows of
  ``log_nodes``, written by the push that completes them; a smaller subtree is rehashed
  from at most 16 envelope ids, which costs less than storing a row per envelope;
* proofs are built from the nodes a proof needs (`sync.merkle.*_nodes`), taken from what
  the caller already holds (the push's own frontier and new leaves) and otherwise read in
  one batch.  A perfect subtree never changes once complete, so a proof for a checkpoint
  may be read after the checkpoint's own snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import Connection

from crypto import SigningKey
from server.db import Batch
from sync.checkpoint import Checkpoint
from sync.merkle import (
    EMPTY_ROOT,
    Frontier,
    Node,
    batch_ranges,
    consistency_nodes,
    consistency_proof,
    leaf_hash,
    node_hash,
    range_nodes,
    subtree_hash,
)

__all__ = [
    "STORED_LEVEL",
    "LogGrowth",
    "current_checkpoint",
    "frontier_nodes",
    "frontier_of",
    "grow",
    "prove",
    "read_nodes",
    "store_nodes",
]

STORED_LEVEL = 4
"""Perfect subtrees of 2^4 leaves and more are stored; smaller ones are rehashed."""

_BLOCK = 1 << STORED_LEVEL


@dataclass(frozen=True, slots=True)
class LogGrowth:
    """The log after a push: what the push transaction writes and what it proves from."""

    frontier: Frontier
    checkpoint: bytes  # the signed checkpoint document of ``frontier.size``
    stored: list[tuple[int, int, bytes]]  # new log_nodes rows (level, idx, hash)
    known: dict[Node, bytes]  # nodes the push holds in memory, for its proofs


def frontier_of(size: int, data: bytes | None) -> Frontier:
    return Frontier.from_bytes(size, data or b"")


def frontier_nodes(frontier: Frontier) -> dict[Node, bytes]:
    """The frontier's hashes by node: the perfect subtrees covering ``[0, size)``."""
    return dict(zip(frontier.nodes(), frontier.hashes, strict=True))


def grow(
    *,
    org_id: bytes,
    frontier: Frontier,
    envelope_ids: Iterable[bytes],
    server_key: SigningKey,
    now: int,
) -> LogGrowth:
    """Append the push's new envelopes (in server sequence order) and sign the checkpoint."""
    after, completed = frontier.append(leaf_hash(e) for e in envelope_ids)
    # Every perfect subtree of the new tree that a proof could need from memory: the old
    # right edge, and what the new leaves completed (themselves included, at level 0; the
    # new right edge is made of these two).
    known = frontier_nodes(frontier)
    known.update(completed)
    checkpoint = Checkpoint(org_id, after.size, after.root(), now).sign(server_key).to_bytes()
    stored = [(level, idx, h) for (level, idx), h in completed if level >= STORED_LEVEL]
    return LogGrowth(after, checkpoint, stored, known)


def store_nodes(writes: Batch, org_id: bytes, stored: list[tuple[int, int, bytes]]) -> None:
    """Queue the push's new ``log_nodes`` rows.  PostgreSQL: one ``INSERT ... SELECT`` from
    three arrays, as the heads are (`Batch.add_rows`): about a dozen rows per push of 100,
    each a statement of its own in the pipeline otherwise.  SQLite: ``executemany``."""
    if not stored:
        return
    if writes.postgres:
        levels, idxs, hashes = (list(column) for column in zip(*stored, strict=True))
        writes.add(
            "INSERT INTO log_nodes (org_id, level, idx, hash) SELECT ?, l, i, h FROM "
            "unnest(CAST(? AS integer[]), CAST(? AS bigint[]), CAST(? AS bytea[])) AS t(l, i, h)",
            (org_id, levels, idxs, hashes),
        )
        return
    writes.add(
        "INSERT INTO log_nodes (org_id, level, idx, hash) VALUES (?, ?, ?, ?)",
        [(org_id, level, idx, h) for level, idx, h in stored],
        many=True,
    )


def read_nodes(conn: Connection, org_id: bytes, needed: Iterable[Node]) -> dict[Node, bytes]:
    """The hashes of ``needed`` perfect subtrees, in one batch of reads: stored ones from
    ``log_nodes``, smaller ones rehashed from the envelope ids of their 16-leaf block."""
    needed = set(needed)
    high: dict[int, list[int]] = {}
    blocks: set[int] = set()
    for level, idx in needed:
        if level >= STORED_LEVEL:
            high.setdefault(level, []).append(idx)
        else:
            blocks.add((idx << level) >> STORED_LEVEL)
    batch = Batch(conn)
    stored = [
        batch.add(
            "SELECT level, idx, hash FROM log_nodes WHERE org_id = ? AND level = ? "
            f"AND idx IN ({','.join('?' * len(idxs))})",
            (org_id, level, *idxs),
        )
        for level, idxs in high.items()
    ]
    leaf_rows = [
        batch.add(
            "SELECT server_seq, envelope_id FROM envelopes WHERE org_id = ? "
            "AND server_seq > CAST(? AS BIGINT) AND server_seq <= CAST(? AS BIGINT)",
            (org_id, block * _BLOCK, (block + 1) * _BLOCK),
        )
        for block in sorted(blocks)
    ]
    if not stored and not leaf_rows:
        return {}
    batch.run()
    out: dict[Node, bytes] = {
        (level, idx): h for pending in stored for level, idx, h in pending.rows
    }
    leaves = {seq - 1: leaf_hash(e) for pending in leaf_rows for seq, e in pending.rows}
    for level, idx in needed:
        if level < STORED_LEVEL:
            out[(level, idx)] = _rehash(leaves, level, idx)
    missing = needed - out.keys()
    if missing:
        raise LookupError(f"the log lacks {len(missing)} node(s) it should hold")
    return out


def _rehash(leaves: Mapping[int, bytes], level: int, idx: int) -> bytes:
    row = [leaves[i] for i in range(idx << level, (idx + 1) << level)]
    while len(row) > 1:
        row = [node_hash(row[i], row[i + 1]) for i in range(0, len(row), 2)]
    return row[0]


def prove(
    conn: Connection,
    org_id: bytes,
    *,
    size: int,
    batch_of: Iterable[int] = (),
    consistency_from: Iterable[int] = (),
    known: Mapping[Node, bytes] | None = None,
) -> tuple[list[bytes], list[list[bytes]]]:
    """A batch inclusion proof of the leaves ``batch_of`` and one consistency proof from
    each size in ``consistency_from`` (0 or not smaller than ``size``: empty), all in the
    tree of ``size``, with at most one batch of reads for the nodes ``known`` lacks."""
    leaves = sorted(set(batch_of))
    olds = list(consistency_from)
    ranges = batch_ranges(leaves, size) if leaves else []  # one walk for nodes and proof
    needed = {n for lo, hi in ranges for n in range_nodes(lo, hi)}
    for old in olds:
        if 0 < old < size:
            needed |= consistency_nodes(old, size)
    have = dict(known or {})
    have.update(read_nodes(conn, org_id, needed - have.keys()))
    inclusion = [subtree_hash(lo, hi, have) for lo, hi in ranges]
    consistency = [consistency_proof(old, size, have) if 0 < old < size else [] for old in olds]
    return inclusion, consistency


def current_checkpoint(
    *,
    org_id: bytes,
    last_seq: int,
    frontier: bytes | None,
    stored: bytes | None,
    server_key: SigningKey,
    now: int,
) -> bytes:
    """The checkpoint of the org's tree at ``last_seq``: the one its last push signed (written
    with ``last_seq`` in one statement, so of that size), or (an empty org, or one whose log
    a migration built) a fresh one of the same size."""
    if stored is not None:
        return stored
    root = frontier_of(last_seq, frontier).root() if last_seq else EMPTY_ROOT
    return Checkpoint(org_id, last_seq, root, now).sign(server_key).to_bytes()
