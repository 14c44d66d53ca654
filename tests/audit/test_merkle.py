"""The Merkle tree against RFC 6962's reference vectors and against its own definition."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.merkle import (
    EMPTY_ROOT,
    STRIDE,
    Frontier,
    ListSource,
    Tree,
    leaf_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)

# The Certificate Transparency reference tree (RFC 6962 test data, 8 leaves).
DATA = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243",
                                   "5051525354555657", "606162636465666768696a6b6c6d6e6f")]
LEAVES = [leaf_hash(d) for d in DATA]
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
INCLUSION = [  # (0-based leaf, tree size, proof)
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]
CONSISTENCY = [
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]


def test_roots_match_the_reference_tree():
    assert EMPTY_ROOT == hashlib.sha256(b"").digest() == root_of([])
    tree = Tree(ListSource(LEAVES))
    frontier = Frontier()
    for n in range(1, 9):
        frontier.append(LEAVES[n - 1])
        assert root_of(LEAVES[:n]).hex() == ROOTS[n - 1]
        assert tree.root(n).hex() == ROOTS[n - 1]
        assert frontier.root().hex() == ROOTS[n - 1]


@pytest.mark.parametrize(("index", "size", "expected"), INCLUSION)
def test_inclusion_proofs_match_the_reference(index, size, expected):
    proof = Tree(ListSource(LEAVES)).inclusion_proof(index, size)
    assert [p.hex() for p in proof] == expected
    root = bytes.fromhex(ROOTS[size - 1])
    assert verify_inclusion(index, size, LEAVES[index], proof, root)
    assert not verify_inclusion(index, size, LEAVES[index], proof, EMPTY_ROOT)


@pytest.mark.parametrize(("old", "new", "expected"), CONSISTENCY)
def test_consistency_proofs_match_the_reference(old, new, expected):
    proof = Tree(ListSource(LEAVES)).consistency_proof(old, new)
    assert [p.hex() for p in proof] == expected
    old_root, new_root = bytes.fromhex(ROOTS[old - 1]), bytes.fromhex(ROOTS[new - 1])
    assert verify_consistency(old, new, proof, old_root, new_root)
    if old != new:
        assert not verify_consistency(old, new, proof, new_root, new_root)


def _leaves(n: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=300), st.data())
def test_every_proof_verifies_and_any_change_breaks_it(n, data):
    leaves = _leaves(n)
    tree = Tree(ListSource(leaves))
    root = root_of(leaves)
    m = data.draw(st.integers(min_value=0, max_value=n - 1))
    proof = tree.inclusion_proof(m, n)
    assert verify_inclusion(m, n, leaves[m], proof, root)
    assert not verify_inclusion(m, n, leaf_hash(b"forged"), proof, root)
    if proof:
        k = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
        bent = list(proof)
        bent[k] = bytes([bent[k][0] ^ 1]) + bent[k][1:]
        assert not verify_inclusion(m, n, leaves[m], bent, root)
        assert not verify_inclusion(m, n, leaves[m], proof[:-1], root)
    old = data.draw(st.integers(min_value=0, max_value=n))
    proof = tree.consistency_proof(old, n)
    assert verify_consistency(old, n, proof, root_of(leaves[:old]), root)
    if 0 < old < n:
        assert not verify_consistency(old, n, proof, root_of(_leaves(old + 1)[1:]), root)


def test_frontier_reports_stored_levels_and_restarts_from_them():
    n = 1000
    leaves = _leaves(n)
    stored: dict[tuple[int, int], bytes] = {}
    frontier = Frontier(on_node=lambda lv, ix, h: stored.__setitem__((lv, ix), h))
    for leaf in leaves:
        frontier.append(leaf)
    assert {lv for lv, _ in stored} == {STRIDE, 2 * STRIDE}
    assert stored[(STRIDE, 3)] == root_of(leaves[48:64])
    assert stored[(2 * STRIDE, 2)] == root_of(leaves[512:768])

    class NodesOnly(ListSource):
        """Serves leaves only inside the last partial block: the rest must come from nodes."""

        def leaves(self, start, end):
            assert start >= 992 or end - start <= 16, "read leaves a stored node covers"
            return super().leaves(start, end)

        def nodes(self, level, first, last):
            got = [stored.get((level, i)) for i in range(first, last + 1)]
            return None if None in got else got

    tree = Tree(NodesOnly(leaves))
    for size in (16, 256, 500, 768, 999, 1000):
        assert tree.root(size) == root_of(leaves[:size])
        resumed = tree.frontier(size)
        assert resumed.root() == root_of(leaves[:size])
    assert verify_inclusion(700, 1000, leaves[700], tree.inclusion_proof(700, 1000),
                            root_of(leaves))


def test_bad_requests_are_refused():
    tree = Tree(ListSource(_leaves(4)))
    with pytest.raises(ValueError):
        tree.inclusion_proof(4, 4)
    with pytest.raises(ValueError):
        tree.consistency_proof(5, 4)
    with pytest.raises(ValueError):
        Frontier(3, [EMPTY_ROOT])
