"""Quorum over replicas of deterministic tasks (search, retrieve, curate).

Owns: how two outputs of the same deterministic task are compared, and how a
majority is found among several. Honest nodes fetching the same page a few
seconds apart can see small differences (a timestamp, a rotated banner), so the
comparison is fuzzy:
- retrieve: Jaccard similarity of word 5-shingles of the whitespace-normalized,
  case-folded text (identical content digests short-circuit to 1.0);
- search: Jaccard overlap of the normalized result URL sets;
- curate: Jaccard overlap of the produced (document, span, instruction) sets.
Must not: know about nodes, leases or the store; pure functions of outputs.

The majority cluster is the largest set of replicas that agree with one
centre replica; that centre is the canonical output. A quorum needs at least
`min_agree` replicas in the cluster *and* a strict majority of all replicas.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Hashable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, TypeVar
from urllib.parse import urlsplit, urlunsplit

from rapidfuzz import fuzz

from protocol.tasks import CurateOutput, RetrieveOutput, SearchOutput, TaskKind

K = TypeVar("K", bound=Hashable)
DeterministicOutput = RetrieveOutput | SearchOutput | CurateOutput

SHINGLE_WORDS = 5
"""Word n-gram size for page text: one edited word touches at most 5 shingles."""


@dataclass(frozen=True)
class QuorumPolicy:
    """When two outputs "agree": 0.8 shingle Jaccard tolerates about one edited word in 50
    (docs/notes/verification.md#quorum-similarity)."""

    retrieve_agree: float = 0.8
    search_agree: float = 0.5
    """Search indexes re-rank and churn; half the URL set in common is the same answer."""
    curate_agree: float = 0.9
    min_agree: int = 2
    """Replicas needed in the majority cluster; the scheduler passes 1 for an unreplicated trusted node."""

    def threshold(self, kind: TaskKind) -> float:
        return {
            TaskKind.RETRIEVE: self.retrieve_agree,
            TaskKind.SEARCH: self.search_agree,
            TaskKind.CURATE: self.curate_agree,
        }[kind]


class QuorumStatus(StrEnum):
    AGREED = "agreed"
    NO_QUORUM = "no_quorum"
    """Not enough agreement yet: add a replica (or give up if attempts are spent)."""


@dataclass(frozen=True)
class QuorumOutcome(Generic[K]):
    status: QuorumStatus
    canonical: K | None
    """The centre of the majority cluster (None without a quorum)."""
    majority: tuple[K, ...]
    minority: tuple[K, ...]
    """Replicas outside the majority: to be rejected when AGREED."""
    similarity: dict[tuple[K, K], float] = field(default_factory=dict)


# --- normalization ----------------------------------------------------------------

_WS = re.compile(r"\s+")
_WORD = re.compile(r"\w+")


def normalize_text(text: str) -> str:
    """NFKC, case-folded, whitespace collapsed: the form replicas are compared in."""
    return _WS.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def shingles(text: str, k: int = SHINGLE_WORDS) -> set[tuple[str, ...]]:
    words = _WORD.findall(normalize_text(text))
    if len(words) < k:
        return {tuple(words)} if words else set()
    return {tuple(words[i : i + k]) for i in range(len(words) - k + 1)}


def jaccard(a: AbstractSet[Hashable], b: AbstractSet[Hashable]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def text_similarity(a: str, b: str, k: int = SHINGLE_WORDS) -> float:
    """Shingle Jaccard of two texts; short texts (fewer than k words) use an edit ratio."""
    na, nb = normalize_text(a), normalize_text(b)
    if na == nb:
        return 1.0
    if len(_WORD.findall(na)) < k or len(_WORD.findall(nb)) < k:
        return fuzz.ratio(na, nb) / 100.0
    return jaccard(shingles(na, k), shingles(nb, k))


def normalize_url(url: str) -> str:
    """Lower-case scheme and host, no fragment, no default port, no trailing slash."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return url.strip()
    host = (parts.hostname or "").lower()
    port = parts.port if parts.port not in (None, 80, 443) else None
    netloc = host if port is None else f"{host}:{port}"
    path = parts.path.rstrip("/") or ""
    return urlunsplit((parts.scheme.lower(), netloc, path, parts.query, ""))


# --- similarity per kind ------------------------------------------------------------


def similarity(a: DeterministicOutput, b: DeterministicOutput) -> float:
    """How alike two outputs of the same deterministic kind are, in [0, 1]."""
    if isinstance(a, RetrieveOutput) and isinstance(b, RetrieveOutput):
        if a.status != b.status or normalize_url(a.final_url) != normalize_url(b.final_url):
            return 0.0
        if a.content_sha256 == b.content_sha256:
            return 1.0
        return text_similarity(a.text, b.text)
    if isinstance(a, SearchOutput) and isinstance(b, SearchOutput):
        return jaccard({normalize_url(h.url) for h in a.hits}, {normalize_url(h.url) for h in b.hits})
    if isinstance(a, CurateOutput) and isinstance(b, CurateOutput):

        def spans(o: CurateOutput) -> set[tuple[str, int, int, str]]:
            return {(t.chunk.content_sha256, t.chunk.start, t.chunk.end, t.instruction) for t in o.tasks}

        return jaccard(spans(a), spans(b))
    raise TypeError(f"cannot compare {type(a).__name__} with {type(b).__name__}")


def quorum(
    outputs: Sequence[tuple[K, DeterministicOutput]], *, policy: QuorumPolicy = QuorumPolicy()
) -> QuorumOutcome[K]:
    """Find the majority among replicas of one task (keys are e.g. result ids)."""
    if not outputs:
        return QuorumOutcome(QuorumStatus.NO_QUORUM, None, (), ())
    kinds = {TaskKind(o.kind) for _, o in outputs}
    if len(kinds) != 1:
        raise ValueError(f"replicas of one task must share a kind, got {sorted(k.value for k in kinds)}")
    threshold = policy.threshold(kinds.pop())
    keys = [k for k, _ in outputs]
    n = len(outputs)
    sim: dict[tuple[K, K], float] = {}
    for i in range(n):
        for j in range(i + 1, n):
            s = similarity(outputs[i][1], outputs[j][1])
            sim[(keys[i], keys[j])] = sim[(keys[j], keys[i])] = s

    def cluster(i: int) -> list[int]:
        return [j for j in range(n) if j == i or sim[(keys[i], keys[j])] >= threshold]

    def rank(i: int) -> tuple[int, float, int]:
        members = cluster(i)
        # Most agreeing replicas first, then the tightest centre, then input order (determinism).
        return (len(members), sum(sim[(keys[i], keys[j])] for j in members if j != i), -i)

    centre = max(range(n), key=rank)
    members = cluster(centre)
    majority = tuple(keys[j] for j in members)
    minority = tuple(keys[j] for j in range(n) if j not in members)
    if len(members) >= policy.min_agree and 2 * len(members) > n:
        return QuorumOutcome(QuorumStatus.AGREED, keys[centre], majority, minority, sim)
    return QuorumOutcome(QuorumStatus.NO_QUORUM, None, majority, minority, sim)
