"""Inclusion, consistency (RFC 9162 §2.1.3, §2.1.4) and batch inclusion proofs, each as
``*_nodes`` (which perfect subtrees it needs), ``*_proof`` (built from them) and ``verify_*``."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence

from sync.merkle.tree import (
    EMPTY_ROOT,
    MAX_PROOF_HASHES,
    Node,
    ProofError,
    _hash,
    _hashes,
    _index,
    _size,
    _split,
    node_hash,
    range_nodes,
    subtree_hash,
)

__all__ = [
    "batch_inclusion_proof",
    "batch_nodes",
    "consistency_nodes",
    "consistency_proof",
    "inclusion_nodes",
    "inclusion_proof",
    "verify_batch_inclusion",
    "verify_consistency",
    "verify_inclusion",
]


# --- inclusion ----------------------------------------------------------------------------


def _inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The subtrees of RFC 9162 PATH(index, D[size]), bottom-up."""
    lo, hi = 0, size
    ranges = []
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
    ranges.reverse()
    return ranges


def inclusion_nodes(index: int, size: int) -> set[Node]:
    """The perfect subtrees `inclusion_proof` needs."""
    index = _index(index, _size(size))
    return {n for lo, hi in _inclusion_ranges(index, size) for n in range_nodes(lo, hi)}


def inclusion_proof(index: int, size: int, nodes: Mapping[Node, bytes]) -> list[bytes]:
    """RFC 9162 §2.1.3.1 PATH(index, D[size]): sibling hashes, bottom-up."""
    index = _index(index, _size(size))
    return [subtree_hash(lo, hi, nodes) for lo, hi in _inclusion_ranges(index, size)]


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """RFC 9162 §2.1.3.2, with the proof's length checked against the shape first."""
    value = _hash(leaf_hash, "leaf hash")
    root = _hash(root, "root")
    index = _index(index, _size(size))
    path = _hashes(proof, MAX_PROOF_HASHES)
    if len(path) != len(_inclusion_ranges(index, size)):
        raise ProofError("inclusion proof has the wrong length")
    fn, sn = index, size - 1
    for p in path:
        if sn == 0:
            raise ProofError("inclusion proof is too long")
        if fn & 1 or fn == sn:
            value = node_hash(p, value)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            value = node_hash(value, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0 or value != root:
        raise ProofError("inclusion proof does not verify")


# --- consistency --------------------------------------------------------------------------


def _consistency_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """The subtrees of RFC 9162 SUBPROOF(old_size, D[new_size], true), in proof order."""
    if not 0 < old_size < new_size:
        return []
    lo, hi, m, whole = 0, new_size, old_size, True
    ranges = []
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo, m, whole = lo + k, m - k, False
    if not whole:
        ranges.append((lo, hi))
    ranges.reverse()
    return ranges


def _sizes(old_size: int, new_size: int) -> None:
    _size(old_size, "old size")
    _size(new_size, "new size")
    if old_size > new_size:
        raise ProofError("old size is larger than new size")


def consistency_nodes(old_size: int, new_size: int) -> set[Node]:
    """The perfect subtrees `consistency_proof` needs (none when old_size is 0 or new_size)."""
    _sizes(old_size, new_size)
    ranges = _consistency_ranges(old_size, new_size)
    return {n for lo, hi in ranges for n in range_nodes(lo, hi)}


def consistency_proof(old_size: int, new_size: int, nodes: Mapping[Node, bytes]) -> list[bytes]:
    """RFC 9162 §2.1.4.1 PROOF(old_size, D[new_size]); empty when old_size is 0 or new_size."""
    _sizes(old_size, new_size)
    return [subtree_hash(lo, hi, nodes) for lo, hi in _consistency_ranges(old_size, new_size)]


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 §2.1.4.2. Also: equal sizes need an empty proof and equal roots; old size 0
    needs an empty proof and ``old_root == EMPTY_ROOT`` (every tree extends the empty one)."""
    _sizes(old_size, new_size)
    old_root = _hash(old_root, "old root")
    new_root = _hash(new_root, "new root")
    path = _hashes(proof, MAX_PROOF_HASHES)
    if len(path) != len(_consistency_ranges(old_size, new_size)):
        raise ProofError("consistency proof has the wrong length")
    if old_size == 0:
        if old_root != EMPTY_ROOT or (new_size == 0 and new_root != EMPTY_ROOT):
            raise ProofError("the empty tree's root is SHA-256 of the empty string")
        return
    if old_size == new_size:
        if old_root != new_root:
            raise ProofError("equal sizes with different roots")
        return
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0 or fr != old_root or sr != new_root:
        raise ProofError("consistency proof does not verify")


# --- batch inclusion ----------------------------------------------------------------------


def _batch_walk(indices: list[int], size: int) -> list[tuple[int, int] | int]:
    """Left-to-right depth-first walk of the tree shape over [0, size): each maximal subtree
    holding none of ``indices`` as its range, each leaf in ``indices`` as its index."""
    out: list[tuple[int, int] | int] = []
    stack = [(0, size)]
    while stack:
        lo, hi = stack.pop()
        first = bisect_left(indices, lo)
        if first == len(indices) or indices[first] >= hi:
            out.append((lo, hi))
        elif hi - lo == 1:
            out.append(lo)
        else:
            k = _split(hi - lo)
            stack += [(lo + k, hi), (lo, lo + k)]  # the left half is walked first
    return out


def _batch_indices(indices: Iterable[int], size: int) -> list[int]:
    _size(size)
    out = sorted({_index(i, size) for i in indices})
    if not out:
        raise ProofError("a batch proof covers at least one index")
    return out


def batch_ranges(indices: Iterable[int], size: int) -> list[tuple[int, int]]:
    """The leaf ranges ``[lo, hi)`` of the maximal subtrees holding none of ``indices``, in
    the order of a left-to-right depth-first walk of the tree shape: one per hash of their
    batch inclusion proof.  A prover walks the tree once and takes both the nodes it must
    read (`range_nodes` of each) and the proof (`subtree_hash` of each) from the result."""
    walk = _batch_walk(_batch_indices(indices, size), size)
    return [step for step in walk if isinstance(step, tuple)]


def batch_nodes(indices: Iterable[int], size: int) -> set[Node]:
    """The perfect subtrees `batch_inclusion_proof` needs."""
    return {n for lo, hi in batch_ranges(indices, size) for n in range_nodes(lo, hi)}


def batch_inclusion_proof(
    indices: Iterable[int], size: int, nodes: Mapping[Node, bytes]
) -> list[bytes]:
    """The hashes of the maximal subtrees holding none of ``indices``, in the order of a
    left-to-right depth-first walk of the tree shape. For one leaf these are its RFC 9162
    inclusion path ordered by position (left siblings top-down, then right siblings
    bottom-up); for a contiguous run, at most about 2 * log2(size) hashes."""
    return [subtree_hash(lo, hi, nodes) for lo, hi in batch_ranges(indices, size)]


def verify_batch_inclusion(
    leaf_hashes: Mapping[int, bytes], size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that each ``leaf_hashes[i]`` is leaf i of the tree of ``size`` leaves with ``root``."""
    if not isinstance(leaf_hashes, Mapping):
        raise ProofError("leaf hashes must map index to hash")
    indices = _batch_indices(leaf_hashes, size)
    leaves = {i: _hash(leaf_hashes[i], "leaf hash") for i in indices}
    root = _hash(root, "root")
    walk = _batch_walk(indices, size)
    path = _hashes(proof, len(walk))
    if len(path) != sum(isinstance(step, tuple) for step in walk):
        raise ProofError("batch proof has the wrong length")
    values = iter(path)
    # Rebuild bottom-up: each step is a subtree's range and hash; merge siblings as they close.
    stack: list[tuple[int, int, bytes]] = []
    for step in walk:
        lo, hi = step if isinstance(step, tuple) else (step, step + 1)
        value = next(values) if isinstance(step, tuple) else leaves[step]
        stack.append((lo, hi, value))
        while len(stack) >= 2 and _siblings(stack[-2], stack[-1], size):
            right, left = stack.pop(), stack.pop()
            stack.append((left[0], right[1], node_hash(left[2], right[2])))
    if len(stack) != 1 or stack[0][:2] != (0, size) or stack[0][2] != root:
        raise ProofError("batch proof does not verify")


def _siblings(left: tuple[int, int, bytes], right: tuple[int, int, bytes], size: int) -> bool:
    """Whether two adjacent subtrees are the two children of one node of the tree shape."""
    lo, mid, hi = left[0], left[1], right[1]
    if left[1] != right[0]:
        return False
    width = mid - lo
    # Node [lo, hi) splits at lo + width iff width is the largest power of two below hi - lo,
    # its left child is perfect, and [lo, hi) is a subtree (aligned, within the size).
    return (
        width & (width - 1) == 0
        and hi - lo > width
        and hi - lo <= 2 * width
        and lo % (2 * width) == 0
        and (hi == min(lo + 2 * width, size))
    )
