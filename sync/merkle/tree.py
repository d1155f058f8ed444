"""The tree itself: RFC 9162 hashing, input checks, the shape (`range_nodes`,
`subtree_hash`) and the `Frontier` (see the package docstring)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "EMPTY_ROOT",
    "HASH_LENGTH",
    "MAX_PROOF_HASHES",
    "MAX_TREE_SIZE",
    "Frontier",
    "Node",
    "ProofError",
    "leaf_hash",
    "node_hash",
    "range_nodes",
    "root_of",
    "subtree_hash",
]

Node = tuple[int, int]
"""(level, index): the perfect subtree over leaves [index << level, (index + 1) << level)."""

HASH_LENGTH = 32
MAX_TREE_SIZE = 1 << 63
"""The largest tree size accepted anywhere (so a tree has at most 63 levels)."""
MAX_PROOF_HASHES = 64
"""No single inclusion or consistency proof of a tree of at most 2^63 leaves is longer."""

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""MTH({}) = SHA-256 of the empty string (RFC 9162 §2.1.1)."""


class ProofError(ValueError):
    """A proof, a hash, a size or an index is malformed or does not verify."""


def leaf_hash(leaf: bytes) -> bytes:
    """``SHA-256(0x00 || leaf)``."""
    return hashlib.sha256(b"\x00" + bytes(leaf)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


# --- validation ---------------------------------------------------------------------------


def _size(size: object, name: str = "size") -> int:
    if type(size) is not int or not 0 <= size <= MAX_TREE_SIZE:
        raise ProofError(f"{name} must be an int in [0, 2^63]")
    return size


def _hash(value: object, name: str = "hash") -> bytes:
    if not isinstance(value, (bytes, bytearray)) or len(value) != HASH_LENGTH:
        raise ProofError(f"{name} must be {HASH_LENGTH} bytes")
    return bytes(value)


def _hashes(proof: object, limit: int) -> list[bytes]:
    if isinstance(proof, (bytes, bytearray, str)) or not isinstance(proof, Sequence):
        raise ProofError("proof must be a sequence of hashes")
    if len(proof) > limit:
        raise ProofError("proof is too long")
    return [_hash(p, "proof hash") for p in proof]


def _index(index: object, size: int) -> int:
    if type(index) is not int or not 0 <= index < size:
        raise ProofError("index must be an int in [0, size)")
    return index


# --- tree shape ---------------------------------------------------------------------------


def _split(n: int) -> int:
    """The largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def range_nodes(lo: int, hi: int) -> list[Node]:
    """The perfect subtrees that make up the RFC 9162 subtree over leaves [lo, hi), left to right
    (largest first). ``lo`` must be a multiple of the smallest power of two >= hi - lo, which
    holds for every subtree of the RFC 9162 shape and for every prefix [0, n)."""
    if type(lo) is not int or type(hi) is not int or not 0 <= lo < hi <= MAX_TREE_SIZE:
        raise ProofError("range must satisfy 0 <= lo < hi <= 2^63")
    width = hi - lo
    if lo % (1 << (width - 1).bit_length()):
        raise ProofError("range is not a subtree of the tree shape")
    nodes = []
    for level in range(width.bit_length() - 1, -1, -1):
        if width >> level & 1:
            nodes.append((level, lo >> level))
            lo += 1 << level
    return nodes


def _lookup(nodes: Mapping[Node, bytes], node: Node) -> bytes:
    try:
        value = nodes[node]
    except KeyError:
        raise ProofError(f"node {node} is missing") from None
    return _hash(value, f"node {node}")


def subtree_hash(lo: int, hi: int, nodes: Mapping[Node, bytes]) -> bytes:
    """MTH of the leaves [lo, hi) (a subtree of the RFC 9162 shape, see `range_nodes`), from
    the hashes of its perfect parts: the parts folded right to left with `node_hash`."""
    parts = [_lookup(nodes, n) for n in range_nodes(lo, hi)]
    value = parts.pop()
    while parts:
        value = node_hash(parts.pop(), value)
    return value


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH over ``leaf_hashes`` (the reference construction, O(n))."""
    frontier, _ = Frontier.empty().append(leaf_hashes)
    return frontier.root()


# --- frontier -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Frontier:
    """The compact range of a tree's right edge: the roots of its perfect subtrees, left to
    right (one per set bit of `size`, largest first). Enough to append and to compute the root.
    """

    size: int
    hashes: tuple[bytes, ...]

    def __post_init__(self) -> None:
        _size(self.size)
        if len(self.hashes) != self.size.bit_count():
            raise ProofError("a frontier holds one hash per set bit of its size")
        for value in self.hashes:
            _hash(value, "frontier hash")

    @classmethod
    def empty(cls) -> Frontier:
        return cls(0, ())

    def nodes(self) -> list[Node]:
        """The perfect subtrees whose hashes this frontier holds, in the same order."""
        return range_nodes(0, self.size) if self.size else []

    def append(self, leaf_hashes: Iterable[bytes]) -> tuple[Frontier, list[tuple[Node, bytes]]]:
        """Append leaves (given as leaf hashes). Returns the new frontier and every perfect
        subtree these leaves completed, in completion order: each leaf ``(0, i)`` followed by
        the subtrees it closes, lowest level first."""
        stack = list(self.hashes)
        size = self.size
        completed: list[tuple[Node, bytes]] = []
        for leaf in leaf_hashes:
            if size >= MAX_TREE_SIZE:
                raise ProofError("the tree is full")
            value = _hash(leaf, "leaf hash")
            completed.append(((0, size), value))
            level = 0
            while size >> level & 1:
                value = node_hash(stack.pop(), value)
                level += 1
                completed.append(((level, size >> level), value))
            stack.append(value)
            size += 1
        return Frontier(size, tuple(stack)), completed

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        value = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            value = node_hash(left, value)
        return value

    def to_bytes(self) -> bytes:
        """The hashes concatenated: 32 * popcount(size) bytes (the size travels beside it)."""
        return b"".join(self.hashes)

    @classmethod
    def from_bytes(cls, size: int, data: bytes) -> Frontier:
        _size(size)
        if not isinstance(data, (bytes, bytearray)) or len(data) != HASH_LENGTH * size.bit_count():
            raise ProofError("a frontier is 32 bytes per set bit of its size")
        data = bytes(data)
        return cls(size, tuple(data[i : i + HASH_LENGTH] for i in range(0, len(data), 32)))
