"""Quality gates on rows that already passed verification: grounding, dedup, length, language.

Owns: whether an accepted row is good enough to enter the dataset.
- Grounding: the quoted evidence occurs verbatim in the source chunk (after
  whitespace/typography normalization), the row's text is lexically
  supported by the chunk (share of its content words found in the chunk), and
  each field that asks names something the chunk talks about.
  The check sits behind the `GroundingChecker` protocol so an embedding or
  LLM-judge checker can replace or back up the lexical one.
- Deduplication: exact (digest of normalized text) and near-duplicate
  (MinHash + LSH from `datasketch`, Jaccard over word 3-shingles).
- Length and language filters (language by `py3langid`, a small offline
  naive-Bayes identifier over 97 languages).
- The page cap: no source page holds more than a quarter of a job's rows.
Answer-first questions have their own gates (`questions.py`); text normalisation is in `text.py`.
Must not: touch the store or the network, or change a row (gates only say yes
or no, with a typed `Failure`).
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from typing import Any, Protocol

from datasketch import MinHash, MinHashLSH

from coordinator.verify.reasons import Failure, Reason
from coordinator.verify.text import WORD, content_words, normalize_ws, row_text, stem
from protocol.tasks import GeneratedRow, JsonObject, SourceChunk

# --- grounding -----------------------------------------------------------------------


@dataclass(frozen=True)
class GroundingResult:
    failure: Failure | None
    support: float
    """Share of content words found in the chunk, for the least supported field (1.0 when none has any)."""

    @property
    def ok(self) -> bool:
        return self.failure is None


class GroundingChecker(Protocol):
    """Decides whether a row is supported by its source chunk."""

    def check(self, row: GeneratedRow, chunk: SourceChunk) -> GroundingResult: ...


@dataclass(frozen=True)
class LexicalGrounding:
    """Verbatim evidence + content-word overlap. Cheap, explainable, no model needed.

    Support is measured per string field and the weakest field decides: a question
    copied from the chunk must not carry a fabricated answer through on average
    ("Johannes Brahms in 1789", docs/notes/llama.md, shares one content word of
    five with a chunk about Gutenberg).
    min_support: provisional 0.6. A faithful answer paraphrases, but most of its
    content words come from the chunk; a fabricated one brings names and numbers
    the chunk lacks. Lexical overlap cannot see negation or swapped roles; that is
    what a model-based checker behind `GroundingChecker` is for.
    """

    min_support: float = 0.6
    min_evidence_chars: int = 8
    """A quote shorter than this ("the", "1") could be found anywhere and proves nothing."""
    answer_fields: tuple[str, ...] | None = None
    """Top-level row keys to check; None checks every string field."""
    question_fields: tuple[str, ...] = ()
    """Keys of fields that ask: each must share a content word with the chunk
    (docs/notes/quality.md#questions-without-a-content-word)."""

    def check(self, row: GeneratedRow, chunk: SourceChunk) -> GroundingResult:
        source = normalize_ws(chunk.text)
        evidence = normalize_ws(row.evidence)
        if len(evidence) < self.min_evidence_chars:
            detail = f"evidence of {len(evidence)} chars; need {self.min_evidence_chars}"
            return GroundingResult(Failure(Reason.EVIDENCE_NOT_FOUND, detail), 0.0)
        if evidence not in source:
            detail = f"evidence {evidence[:80]!r} does not occur in the source chunk"
            return GroundingResult(Failure(Reason.EVIDENCE_NOT_FOUND, detail), 0.0)
        chunk_stems = {stem(w) for w in content_words(chunk.text)}
        keys = self.answer_fields if self.answer_fields is not None else sorted(row.data)
        worst: tuple[float, str, list[str]] = (1.0, "", [])
        for key in keys:
            words = content_words(row_text({key: row.data.get(key)}))
            if not words:
                continue
            missing = [w for w in words if stem(w) not in chunk_stems]
            support = 1.0 - len(missing) / len(words)
            if support < worst[0]:
                worst = (support, key, missing)
        support, key, missing = worst
        if support < self.min_support:
            detail = f"field {key!r}: only {support:.0%} of its content words are in the source; missing {missing[:5]}"
            return GroundingResult(Failure(Reason.UNSUPPORTED_ANSWER, detail), support)
        for key in self.question_fields:
            asked = row.data.get(key)
            if isinstance(asked, str) and not {stem(w) for w in content_words(asked)} & chunk_stems:
                detail = f"field {key!r} names nothing its source talks about: {asked[:80]!r}"
                return GroundingResult(Failure(Reason.QUESTION_OFF_SOURCE, detail), support)
        return GroundingResult(None, support)


MIN_PAGE_ROWS = 3
MAX_PAGE_SHARE = 0.25
"""No source page holds more than a quarter of a job's rows (or 3 rows, for small jobs)
(docs/notes/quality.md#rows-per-page)."""


def page_cap(rows: int | None) -> int:
    """Most rows one source page may hold in a job of `rows` rows."""
    return max(MIN_PAGE_ROWS, math.ceil((rows or 0) * MAX_PAGE_SHARE))


# --- length and language -----------------------------------------------------------------


@dataclass(frozen=True)
class TextFilters:
    min_chars: int = 20
    max_chars: int = 8_000
    language: str = "en"
    """ISO 639-1 code from the dataset spec."""
    min_language_chars: int = 40
    """Below this, language identification is unreliable: the filter abstains (passes)."""
    min_language_confidence: float = 0.5
    """Reject only when another language wins with at least this (normalized) probability."""


REPETITION_MIN_WORDS = 12
MIN_DISTINCT_TRIGRAMS = 0.5
"""Share of distinct word trigrams below which a field is a loop (docs/notes/quality.md#repetition)."""


def check_repetition(data: JsonObject) -> Failure | None:
    """The first string field that repeats itself, if any."""
    for name, value in data.items():
        if not isinstance(value, str):
            continue
        words = re.findall(r"\w+", value.lower())
        if len(words) < REPETITION_MIN_WORDS:
            continue
        grams = list(zip(words, words[1:], words[2:], strict=False))
        ratio = len(set(grams)) / len(grams)
        if ratio < MIN_DISTINCT_TRIGRAMS:
            return Failure(Reason.REPETITIVE, f"field {name!r}: only {ratio:.0%} of its word trigrams are distinct")
    return None


def check_length(text: str, filters: TextFilters = TextFilters()) -> Failure | None:
    n = len(normalize_ws(text))
    if n < filters.min_chars:
        return Failure(Reason.TOO_SHORT, f"{n} chars, minimum {filters.min_chars}")
    if n > filters.max_chars:
        return Failure(Reason.TOO_LONG, f"{n} chars, maximum {filters.max_chars}")
    return None


@cache
def _identifier() -> Any:
    # Loading the model takes ~0.8 s, so once per process and only when first needed.
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def detect_language(text: str) -> tuple[str, float]:
    """(ISO 639-1 code, normalized probability) of the most likely language."""
    lang, prob = _identifier().classify(normalize_ws(text))
    return str(lang), float(prob)


def check_language(text: str, filters: TextFilters = TextFilters()) -> Failure | None:
    norm = normalize_ws(text)
    if len(norm) < filters.min_language_chars:
        return None
    lang, prob = detect_language(norm)
    if lang != filters.language and prob >= filters.min_language_confidence:
        return Failure(Reason.WRONG_LANGUAGE, f"looks like {lang!r} (p={prob:.2f}), expected {filters.language!r}")
    return None


# --- deduplication -----------------------------------------------------------------------


class DupKind(StrEnum):
    UNIQUE = "unique"
    EXACT = "exact"
    NEAR = "near"


@dataclass(frozen=True)
class DupResult:
    kind: DupKind
    of: str | None = None
    """Key of the earlier row this one duplicates."""
    jaccard: float = 0.0

    @property
    def failure(self) -> Failure | None:
        if self.kind is DupKind.EXACT:
            return Failure(Reason.DUPLICATE, f"same text as {self.of}")
        if self.kind is DupKind.NEAR:
            return Failure(Reason.NEAR_DUPLICATE, f"~{self.jaccard:.2f} Jaccard with {self.of}")
        return None


@dataclass(frozen=True)
class DedupConfig:
    threshold: float = 0.7
    """Estimated Jaccard of word 3-shingles at or above which two rows are near-duplicates.
    0.7 catches a reworded clause in a two-sentence row; distinct questions about the
    same chunk share far fewer shingles."""
    num_perm: int = 128
    """MinHash permutations: the estimate's standard error is about 1/sqrt(128) = 0.09."""
    shingle_words: int = 3
    seed: int = 1


def _dedup_norm(text: str) -> str:
    return " ".join(WORD.findall(normalize_ws(text).casefold()))


class Deduplicator:
    """Remembers accepted rows of one job and spots exact and near duplicates among them.

    Not persisted: the compiler rebuilds it from the store's rows (fast: ~0.1 ms per row).
    """

    def __init__(self, config: DedupConfig = DedupConfig()) -> None:
        self.config = config
        self._lsh = MinHashLSH(threshold=config.threshold, num_perm=config.num_perm)
        self._exact: dict[str, str] = {}
        self._hashes: dict[str, MinHash] = {}

    def __len__(self) -> int:
        return len(self._hashes)

    def _minhash(self, norm: str) -> MinHash:
        words = norm.split()
        k = self.config.shingle_words
        grams = [" ".join(words[i : i + k]) for i in range(max(1, len(words) - k + 1))]
        m = MinHash(num_perm=self.config.num_perm, seed=self.config.seed)
        m.update_batch([g.encode() for g in grams])
        return m

    def check(self, text: str) -> DupResult:
        """Whether `text` duplicates a row already added (does not add it)."""
        return self._check(_dedup_norm(text))[0]

    def add(self, key: str, text: str) -> DupResult:
        """Add `text` under `key` if it is unique; report what it duplicates otherwise."""
        norm = _dedup_norm(text)
        result, mh = self._check(norm)
        if result.kind is DupKind.UNIQUE:
            if key in self._hashes:
                raise KeyError(f"key {key!r} was already added")
            self._exact[hashlib.sha256(norm.encode()).hexdigest()] = key
            self._lsh.insert(key, mh)
            self._hashes[key] = mh
        return result

    def _check(self, norm: str) -> tuple[DupResult, MinHash]:
        exact = self._exact.get(hashlib.sha256(norm.encode()).hexdigest())
        mh = self._minhash(norm)
        if exact is not None:
            return DupResult(DupKind.EXACT, exact, 1.0), mh
        best: tuple[float, str] | None = None
        # LSH returns candidates (with false positives); the MinHash estimate confirms.
        for other in self._lsh.query(mh):
            j = float(mh.jaccard(self._hashes[other]))
            if j >= self.config.threshold and (best is None or j > best[0]):
                best = (j, other)
        if best is not None:
            return DupResult(DupKind.NEAR, best[1], best[0]), mh
        return DupResult(DupKind.UNIQUE), mh


# --- all gates, in order ------------------------------------------------------------------


def gate_row(
    key: str,
    row: GeneratedRow,
    *,
    chunk: SourceChunk | None,
    grounded: bool,
    dedup: Deduplicator,
    filters: TextFilters = TextFilters(),
    grounding: GroundingChecker = LexicalGrounding(),
) -> Failure | None:
    """The first gate `row` fails, or None (and the row is then remembered by `dedup`).

    Cheap gates run first; dedup runs last so that only rows that enter the
    dataset are remembered as "seen".
    """
    text = row_text(row.data)
    failure = check_length(text, filters) or check_repetition(row.data) or check_language(text, filters)
    if failure is not None:
        return failure
    if grounded:
        if chunk is None:
            return Failure(Reason.EVIDENCE_NOT_FOUND, "the spec requires grounding but the task had no source chunk")
        result = grounding.check(row, chunk)
        if result.failure is not None:
            return result.failure
    return dedup.add(key, text).failure
