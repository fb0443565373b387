"""The Merkle tree over a dataset's rows (RFC 6962 / RFC 9162 section 2.1, SHA-256).

Owns: leaf and node hashing, the root, and inclusion proofs.
- leaf hash  = SHA-256(0x00 || leaf data), where the leaf data of a row is its
  canonical msgpack encoding (`protocol.encoding.encode`, sorted keys);
- node hash  = SHA-256(0x01 || left || right);
- MTH({})    = SHA-256(""); MTH of one leaf is its leaf hash; for n > 1 leaves
  the left subtree holds the largest power of two smaller than n.
The distinct prefixes mean a leaf can never be passed off as an inner node
(second-preimage attack), and the odd-size rule makes the tree independent of
padding: any RFC 6962 implementation gives the same root for the same rows.
Must not: know what a row is (callers pass bytes).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
TREE_NAME = "rfc6962-sha256"
"""How the manifest names this tree."""


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly smaller than n (n >= 2)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """MTH over already-hashed leaves (`leaf_hash` of each row)."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return node_hash(merkle_root(leaves[:k]), merkle_root(leaves[k:]))


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """The audit path of leaf `index` (RFC 6962 PATH), bottom-up."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf {index} is outside a tree of {len(leaves)}")
    if len(leaves) == 1:
        return []
    k = _split(len(leaves))
    if index < k:
        return [*inclusion_proof(index, leaves[:k]), merkle_root(leaves[k:])]
    return [*inclusion_proof(index - k, leaves[k:]), merkle_root(leaves[:k])]


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 section 2.1.3.2: does `proof` place `leaf` at `index` in a tree of `size` with `root`?"""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root
