"""Verification of generative outputs: replica comparison and prefill re-scoring.

Owns two pure decisions:
1. `compare_replicas`: do two replicas of a generative task agree? With the same
   model digest and decoding settings (seed included), llama.cpp output is
   byte-identical across processes on the same build and CPU features, but a
   different build or instruction set changes the text (docs/notes/llama.md,
   "Determinism"). So: exact match first, then a normalized edit similarity.
   At temperature > 0 a single differing token makes the rest of the sample
   diverge, so CLOSE is mostly seen at temperature 0; DIVERGENT replicas go to
   re-scoring rather than straight to rejection.
2. `decide`: given `ValidateOutput`s from validator nodes (teacher-forced prefill
   of prompt + candidate under the declared model) and the producer's claimed
   mean logprob, accept or reject each candidate against `RescoreThresholds`.
Must not: pick validators, talk to the store, or read the clock.
"""

from __future__ import annotations

import statistics
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Generic, TypeVar

from rapidfuzz import fuzz

from coordinator.verify.quorum import normalize_text
from coordinator.verify.reasons import Failure, Reason
from protocol.messages import Result
from protocol.tasks import RescorablePayload, ValidateOutput, ValidatePayload

K = TypeVar("K", bound=Hashable)


# --- replica comparison ------------------------------------------------------------

REPLICA_SIMILARITY = 0.9
"""Normalized edit similarity above which two replicas' raw_text count as agreeing.
Provisional: set so that a differing word or two in a ~100-word answer agrees and a
different answer does not; to be revisited with cross-hardware replica data."""


class Agreement(StrEnum):
    EXACT = "exact"
    CLOSE = "close"
    DIVERGENT = "divergent"
    INCOMPARABLE = "incomparable"
    """Different model or decoding settings: only re-scoring can tell."""


def compare_replicas(a: Result, b: Result, *, threshold: float = REPLICA_SIMILARITY) -> Agreement:
    if a.model_sha256 != b.model_sha256 or a.decoding != b.decoding:
        return Agreement.INCOMPARABLE
    if a.raw_text == b.raw_text:
        return Agreement.EXACT
    if fuzz.ratio(normalize_text(a.raw_text), normalize_text(b.raw_text)) / 100.0 >= threshold:
        return Agreement.CLOSE
    return Agreement.DIVERGENT


# --- prefill re-scoring -----------------------------------------------------------------


def validate_payload_for(result: Result, *, top_k: int = 10, task: RescorablePayload | None = None) -> ValidatePayload:
    """The `validate` task that re-scores `result` (the scheduler grants it to a third node).

    Raises ValueError for a result that carries no model digest: it cannot be
    re-scored (checks.py rejects such results before they get here).
    """
    if result.model_sha256 is None:
        raise ValueError(f"result for task {result.task_id} names no model; nothing to re-score under")
    return ValidatePayload(
        model_sha256=result.model_sha256,
        prompt=result.prompt,
        candidate=result.raw_text,
        claimed_mean_logprob=result.stats.mean_logprob,
        top_k=top_k,
        task=task,
    )


@dataclass(frozen=True)
class RescoreThresholds:
    """When a validator's prefill says "the declared model would produce this".

    Layers an impostor cannot pass together: the prompt must match, the top-k rate be high, the mean
    logprob clear a floor for gross garbage, and the producer's claim be there and not exceed the
    re-score, a one-sided check since an honest claim sits below it
    (docs/notes/verification.md#prefill-re-scoring, docs/notes/verification.md#claim-versus-re-score).
    The coordinator builds this from config (`from_mapping`), so other models' measurements slot in
    without code changes.
    """

    min_topk_rate: float = 0.82
    """Share of candidate tokens inside the validator's top-k."""
    max_topk_misses_allowed: int = 2
    """A candidate may miss the top-k this often whatever its rate: a rate over a few tokens is coarse
    (docs/notes/verification.md#top-k-misses-on-short-questions)."""
    min_mean_logprob: float = -4.0
    """Mean per-token logprob (nats) of the candidate under the declared model."""
    max_claim_excess: float = 0.5
    """How far (nats/token) the producer's claim may sit *above* the validator's measurement."""
    min_tokens: int = 1
    """An empty candidate proves nothing and is rejected."""

    @classmethod
    def from_mapping(cls, values: Mapping[str, float | int]) -> RescoreThresholds:
        """Thresholds from config (e.g. a TOML table); unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown rescoring thresholds: {sorted(unknown)} (known: {sorted(known)})")
        return cls(**values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Candidate(Generic[K]):
    key: K
    """Caller's handle, e.g. the result id."""
    validations: Sequence[ValidateOutput]
    """One per validator that re-scored this candidate (validators never include its producer)."""
    claimed_mean_logprob: float | None = None
    """What the producer reported in `Result.stats.mean_logprob`."""


@dataclass(frozen=True)
class RescoreDecision(Generic[K]):
    key: K
    accept: bool
    failure: Failure | None
    topk_rate: float
    mean_logprob: float


def decide(candidate: Candidate[K], thresholds: RescoreThresholds = RescoreThresholds()) -> RescoreDecision[K]:
    """Accept or reject one candidate from its validators' measurements (median across them)."""
    if not candidate.validations:
        raise ValueError(f"candidate {candidate.key!r} has no validation to decide on")
    # The median keeps one lying or broken validator out of a three-validator decision.
    topk = statistics.median(v.topk_rate for v in candidate.validations)
    mean_lp = statistics.median(v.mean_logprob for v in candidate.validations)
    n_tokens = statistics.median(v.n_tokens for v in candidate.validations)

    def reject(detail: str) -> RescoreDecision[K]:
        return RescoreDecision(candidate.key, False, Failure(Reason.RESCORE_FAILED, detail), topk, mean_lp)

    if any(v.prompt_matches is False for v in candidate.validations):
        return reject("the prompt it reports is not the task's prompt: generated for another input")
    if n_tokens < thresholds.min_tokens:
        return reject(f"{n_tokens} tokens re-scored, need {thresholds.min_tokens}")
    misses = round(n_tokens * (1.0 - topk))
    if topk < thresholds.min_topk_rate and misses > thresholds.max_topk_misses_allowed:
        return reject(f"top-k rate {topk:.3f} < {thresholds.min_topk_rate}")
    if mean_lp < thresholds.min_mean_logprob:
        return reject(f"mean logprob {mean_lp:.3f} < {thresholds.min_mean_logprob}")
    claimed = candidate.claimed_mean_logprob
    if claimed is None:
        return reject("the producer reported no mean log-probability to check against")
    if claimed - mean_lp > thresholds.max_claim_excess:
        return reject(
            f"claimed mean logprob {claimed:.3f}, measured {mean_lp:.3f} (claim exceeds it by > "
            f"{thresholds.max_claim_excess})"
        )
    return RescoreDecision(candidate.key, True, None, topk, mean_lp)


@dataclass(frozen=True)
class RoundTripThresholds:
    """When a validator's round trip says "the question leads back to its answer".

    Precision first: the answer sentence must rank first (docs/notes/verification.md#round-trip-rank).
    """

    max_rank: int = 0
    min_margin: float = 0.0
    """Nats per token by which the answer's gain must beat the best other sentence's."""
    min_gain: float = 0.0
    """The answer sentence must make the question more likely than no sentence does."""


def roundtrip_failure(
    validations: Sequence[ValidateOutput], thresholds: RoundTripThresholds = RoundTripThresholds()
) -> Failure | None:
    """Why an answer-first row fails its round trip, or None. Every validator must recover the answer:
    one validator waving a row through cannot outvote another that did not land on it."""
    trips = [v.roundtrip for v in validations]
    if not trips or any(t is None for t in trips):
        return Failure(Reason.ROUNDTRIP_FAILED, "no validator ran the round trip")
    worst = max((t for t in trips if t is not None), key=lambda t: (t.answer_rank, -t.margin))
    if (
        worst.answer_rank > thresholds.max_rank
        or worst.margin <= thresholds.min_margin
        or worst.gain <= thresholds.min_gain
    ):
        if worst.reading == "label":
            return Failure(
                Reason.ROUNDTRIP_FAILED,
                f"a reader of the text picked another label: the row's ranked {worst.answer_rank + 1} of "
                f"{worst.n_sentences} (margin {worst.margin:+.3f}, gain {worst.gain:+.3f} nats)",
            )
        return Failure(
            Reason.ROUNDTRIP_FAILED,
            f"a reader of the question picked another sentence: the answer ranked {worst.answer_rank + 1} of "
            f"{worst.n_sentences} (margin {worst.margin:+.3f}, gain {worst.gain:+.3f})",
        )
    return None


def decide_all(
    candidates: Sequence[Candidate[K]], thresholds: RescoreThresholds = RescoreThresholds()
) -> list[RescoreDecision[K]]:
    """`decide` for each candidate. Candidates are judged on their own: two
    replicas can both pass (legitimately different samples) or both fail."""
    return [decide(c, thresholds) for c in candidates]
