"""How varied the delivered rows are: distinct-n and a Vendi score.

Owns: the diversity figures on the dataset card.
- distinct-n (Li et al. 2016): distinct word n-grams / all word n-grams, over
  the generated text of every row. Cheap and easy to read, but it falls as a
  dataset grows even when the rows stay varied, so compare it only between
  datasets of similar size.
- Vendi score (Friedman & Dieng 2023): exp of the entropy of the eigenvalues of
  K/n, with K the row-by-row similarity matrix. It reads as "the effective
  number of distinct rows": 1 when all rows are the same, n when none share
  anything. The kernel here is the cosine similarity of word unigram + bigram
  count vectors, so the score measures lexical variety (an embedding kernel
  would measure semantic variety, but needs a model the coordinator does not
  load). For cost it runs on at most VENDI_SAMPLE rows spread evenly over the
  dataset; `vendi_ratio` (score / rows sampled) is comparable across sizes.
Must not: filter or reorder rows.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from coordinator.spec import DatasetSpec, FieldType

VENDI_SAMPLE = 1000
"""Rows the Vendi score looks at: eigenvalues of a 1000x1000 matrix take well under a second."""

_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class DiversityReport:
    rows: int
    distinct_1: float
    distinct_2: float
    vendi: float
    vendi_rows: int
    """How many rows the Vendi score was computed on."""

    @property
    def vendi_ratio(self) -> float:
        return self.vendi / self.vendi_rows if self.vendi_rows else 0.0


def row_texts(spec: DatasetSpec, rows: Sequence[dict[str, Any]]) -> list[str]:
    """The generated free text of each row (derived fields and enums say nothing about variety)."""
    names = [f.name for f in spec.fields if not f.derived and f.type is FieldType.STRING]
    return [" ".join(str(row.get(n, "")) for n in names) for row in rows]


def _tokens(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


def distinct_n(texts: Sequence[str], n: int) -> float:
    seen: set[tuple[str, ...]] = set()
    total = 0
    for text in texts:
        toks = _tokens(text)
        grams = [tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)]
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else 0.0


def vendi_score(texts: Sequence[str]) -> float:
    """Vendi score with a cosine kernel over word uni+bigram counts (see module docstring).

    K is built from an inverted index: a feature in one row only touches the diagonal, and a
    feature shared by rows adds the outer product of their weights, so the kernel is exact
    (no feature hashing) and costs about the number of shared feature pairs.
    """
    n = len(texts)
    if not n:
        return 0.0
    postings: dict[str, list[tuple[int, float]]] = {}
    for i, text in enumerate(texts):
        toks = _tokens(text)
        # A row with no words still counts as a row: all such rows are alike.
        counts = Counter([*toks, *(f"{a} {b}" for a, b in itertools.pairwise(toks))] or ["\x00empty"])
        norm = math.sqrt(sum(c * c for c in counts.values()))
        for feature, c in counts.items():
            postings.setdefault(feature, []).append((i, c / norm))
    k = np.zeros((n, n))
    diag = np.zeros(n)
    for plist in postings.values():
        if len(plist) == 1:
            row, weight = plist[0]
            diag[row] += weight * weight
            continue
        idx = np.fromiter((i for i, _ in plist), dtype=np.int64, count=len(plist))
        weights = np.fromiter((w for _, w in plist), dtype=np.float64, count=len(plist))
        k[np.ix_(idx, idx)] += np.outer(weights, weights)
    k[np.diag_indices(n)] += diag
    eig = np.linalg.eigvalsh(k / n)
    eig = eig[eig > 1e-12]
    return float(math.exp(-float(np.sum(eig * np.log(eig)))))


def measure(spec: DatasetSpec, rows: Sequence[dict[str, Any]]) -> DiversityReport:
    texts = row_texts(spec, rows)
    if len(texts) > VENDI_SAMPLE:
        step = len(texts) / VENDI_SAMPLE
        sample = [texts[int(i * step)] for i in range(VENDI_SAMPLE)]
    else:
        sample = texts
    return DiversityReport(
        rows=len(rows),
        distinct_1=distinct_n(texts, 1),
        distinct_2=distinct_n(texts, 2),
        vendi=vendi_score(sample),
        vendi_rows=len(sample),
    )
