"""The Merkle tree of RFC 6962 / RFC 9162 over audit events, and its proofs.

Leaves are ``SHA-256(0x00 || canonical event)``, interior nodes
``SHA-256(0x01 || left || right)``, and the tree over ``n`` leaves is split at
the largest power of two below ``n`` (RFC 9162 section 2.1.1), so any
implementation of the RFC checks our proofs.

Hashes come from a ``HashSource``: leaf hashes for a range, and, optionally,
stored hashes of complete aligned subtrees at every ``STRIDE``-th level. With
those, any subtree hash costs at most ``2**STRIDE - 1`` hash operations plus
one small read, so proofs stay logarithmic over millions of events.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Protocol

STRIDE = 4  #: nodes are stored at levels 4, 8, 12, ... (one row per 16 leaves, and fewer above)
EMPTY_ROOT = hashlib.sha256(b"").digest()
_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


def largest_power_of_two_below(n: int) -> int:
    """The ``k`` of RFC 9162: the largest power of two smaller than ``n`` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_of(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of RFC 9162 over leaf hashes, by the recursive definition."""
    n = len(leaves)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaves[0]
    k = largest_power_of_two_below(n)
    return node_hash(root_of(leaves[:k]), root_of(leaves[k:]))


def reduce_perfect(hashes: Sequence[bytes]) -> bytes:
    """The root of a perfect subtree from its 2**j bottom hashes, pairwise."""
    level = list(hashes)
    while len(level) > 1:
        level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def fold(perfect: Sequence[bytes]) -> bytes:
    """The root over consecutive perfect subtrees, largest first (a compact range)."""
    if not perfect:
        return EMPTY_ROOT
    acc = perfect[-1]
    for h in reversed(perfect[:-1]):
        acc = node_hash(h, acc)
    return acc


def decompose(start: int, end: int) -> list[tuple[int, int]]:
    """[start, end) as aligned perfect subtrees (level, index), largest first.

    Valid for the ranges the RFC algorithms ask for, whose start is a multiple
    of a power of two at least as large as the range.
    """
    parts = []
    size = end - start
    pos = start
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            parts.append((level, pos >> level))
            pos += 1 << level
    return parts


class Frontier:
    """The right edge of a growing tree: hashes of the perfect subtrees of [0, size).

    ``append`` adds a leaf and reports each completed subtree whose level is a
    multiple of ``STRIDE`` through ``on_node(level, index, hash)``.
    """

    __slots__ = ("size", "stack", "on_node")

    def __init__(self, size: int = 0, stack: Sequence[bytes] = (),
                 on_node: Callable[[int, int, bytes], None] | None = None) -> None:
        if len(stack) != size.bit_count():
            raise ValueError("a frontier needs one hash per set bit of its size")
        self.size = size
        self.stack = list(stack)
        self.on_node = on_node

    def append(self, leaf: bytes) -> None:
        position, h, level, size = self.size, leaf, 0, self.size
        stack = self.stack
        while size & 1:
            h = _sha256(b"\x01" + stack.pop() + h).digest()
            level += 1
            size >>= 1
            if level % STRIDE == 0 and self.on_node is not None:
                self.on_node(level, position >> level, h)
        stack.append(h)
        self.size = position + 1

    def root(self) -> bytes:
        return fold(self.stack)


class HashSource(Protocol):
    """Where a tree reads its hashes from."""

    def leaves(self, start: int, end: int) -> list[bytes]:
        """Leaf hashes of [start, end)."""
        ...

    def nodes(self, level: int, first: int, last: int) -> list[bytes] | None:
        """Stored hashes at ``level`` for indices [first, last], or None if not all stored."""
        ...


class ListSource:
    """Leaf hashes held in memory; no stored nodes."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        self._leaves = leaves

    def leaves(self, start: int, end: int) -> list[bytes]:
        return list(self._leaves[start:end])

    def nodes(self, level: int, first: int, last: int) -> list[bytes] | None:
        return None


class Tree:
    """Tree heads and proofs over a ``HashSource``."""

    def __init__(self, source: HashSource) -> None:
        self.source = source
        self.perfect = lru_cache(maxsize=65536)(self._perfect)

    def _perfect(self, level: int, index: int) -> bytes:
        """The hash of the complete subtree of 2**level leaves at ``index``."""
        base = level - level % STRIDE
        if base:
            span = 1 << (level - base)
            stored = self.source.nodes(base, index * span, (index + 1) * span - 1)
            if stored is not None and len(stored) == span:
                return reduce_perfect(stored)
        start = index << level
        return reduce_perfect(self.source.leaves(start, start + (1 << level)))

    def range_hash(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) for the ranges the RFC algorithms visit."""
        return fold([self.perfect(level, index) for level, index in decompose(start, end)])

    def root(self, size: int) -> bytes:
        return self.range_hash(0, size)

    def frontier(self, size: int, on_node: Callable[[int, int, bytes], None] | None = None,
                 ) -> Frontier:
        """The frontier of the tree at ``size``, ready to take more leaves."""
        stack = [self.perfect(level, index) for level, index in decompose(0, size)]
        return Frontier(size, stack, on_node)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """PATH(index, D[size]) of RFC 9162 section 2.1.3.1."""
        if not 0 <= index < size:
            raise ValueError(f"leaf {index} is not in a tree of size {size}")
        return self._path(index, 0, size)

    def _path(self, m: int, start: int, end: int) -> list[bytes]:
        n = end - start
        if n == 1:
            return []
        k = largest_power_of_two_below(n)
        if m < k:
            return self._path(m, start, start + k) + [self.range_hash(start + k, end)]
        return self._path(m - k, start + k, end) + [self.range_hash(start, start + k)]

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        """PROOF(old, D[new]) of RFC 9162 section 2.1.4.1 (empty when old is 0 or new)."""
        if not 0 <= old <= new:
            raise ValueError(f"no consistency proof from size {old} to size {new}")
        if old in (0, new):
            return []
        return self._subproof(old, 0, new, True)

    def _subproof(self, m: int, start: int, end: int, complete: bool) -> list[bytes]:
        n = end - start
        if m == n:
            return [] if complete else [self.range_hash(start, end)]
        k = largest_power_of_two_below(n)
        if m <= k:
            return self._subproof(m, start, start + k, complete) + [self.range_hash(start + k, end)]
        return (self._subproof(m - k, start + k, end, False)
                + [self.range_hash(start, start + k)])


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes],
                     root: bytes) -> bool:
    """RFC 9162 section 2.1.3.2: does ``proof`` put ``leaf`` at ``index`` under ``root``?"""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(old: int, new: int, proof: Sequence[bytes], old_root: bytes,
                       new_root: bytes) -> bool:
    """RFC 9162 section 2.1.4.2: is the tree at ``new`` an extension of the one at ``old``?"""
    if old == new:
        return not proof and old_root == new_root
    if old == 0:
        return not proof and old_root == EMPTY_ROOT
    if old > new or not proof:
        return False
    path = list(proof)
    if old & (old - 1) == 0:  # old is a power of two: its root is the first node
        path.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root
