"""The compiler's parts on their own: Merkle tree, evidence location, diversity figures."""

from __future__ import annotations

import hashlib

import pytest

from coordinator.compile.diversity import distinct_n, measure, vendi_score
from coordinator.compile.evidence import locate, normalize, quote_at
from coordinator.compile.merkle import inclusion_proof, leaf_hash, merkle_root, verify_inclusion
from coordinator.spec import DatasetSpec, FieldSpec

# RFC 6962 reference vectors (certificate-transparency's merkle_tree_test): leaves and the roots of
# the trees made of their first 1..8 entries.
CT_LEAVES = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


@pytest.mark.parametrize("n", range(1, 9))
def test_merkle_root_matches_rfc6962_vectors(n: int) -> None:
    leaves = [leaf_hash(bytes.fromhex(x)) for x in CT_LEAVES[:n]]
    assert merkle_root(leaves).hex() == CT_ROOTS[n - 1]


def test_empty_tree_root_is_hash_of_nothing() -> None:
    assert merkle_root([]) == hashlib.sha256(b"").digest()


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 8, 13])
def test_inclusion_proofs_verify_and_reject_the_wrong_leaf(n: int) -> None:
    leaves = [leaf_hash(bytes([i])) for i in range(n)]
    root = merkle_root(leaves)
    for i in range(n):
        proof = inclusion_proof(i, leaves)
        assert verify_inclusion(leaves[i], i, n, proof, root)
        assert not verify_inclusion(leaf_hash(b"other"), i, n, proof, root)
        if n > 1:
            assert not verify_inclusion(leaves[i], (i + 1) % n, n, proof, root)


def test_locate_exact_and_normalized() -> None:
    text = "Intro.\nPython’s  “deque” type — fast\nappends."
    assert locate("Intro.", text) == (0, 6)
    span = locate('Python\'s "deque" type - fast appends.', text)
    assert span is not None
    assert text[span[0] : span[1]] == "Python’s  “deque” type — fast\nappends."
    assert quote_at('Python\'s "deque" type - fast appends.', text, *span)
    assert locate("slow appends", text) is None
    assert locate("   ", text) is None
    assert not quote_at("Intro.", text, 3, 2)


def test_normalize_keeps_combining_marks_with_their_letter() -> None:
    composed, decomposed = "caf\u00e9 au lait", "cafe\u0301 au lait"
    assert normalize(composed) == normalize(decomposed)
    span = locate("café", "Un " + decomposed)
    assert span == (3, 8)


def test_distinct_n() -> None:
    assert distinct_n(["a b a b"], 1) == 0.5
    assert distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)
    assert distinct_n([], 1) == 0.0


def test_vendi_is_one_for_copies_and_n_for_disjoint_rows() -> None:
    assert vendi_score(["the same row"] * 10) == pytest.approx(1.0)
    disjoint = [f"alpha{i} beta{i} gamma{i}" for i in range(10)]
    assert vendi_score(disjoint) == pytest.approx(10.0, rel=0.02)
    half = ["red fox"] * 5 + ["blue whale"] * 5
    assert vendi_score(half) == pytest.approx(2.0, rel=0.02)


def test_measure_uses_generated_text_and_samples_big_sets() -> None:
    spec = DatasetSpec(topic="t", fields=[FieldSpec(name="question"), FieldSpec(name="answer")])
    rows = [{"question": f"q{i} thing{i}", "answer": f"answer{i}"} for i in range(1500)]
    report = measure(spec, rows)
    assert report.rows == 1500 and report.vendi_rows == 1000
    assert 0.9 < report.vendi_ratio <= 1.0
    assert report.distinct_1 == 1.0
