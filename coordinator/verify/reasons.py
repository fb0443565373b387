"""Why a result or row was refused: one typed code per failure, plus a detail line.

Owns: the vocabulary of refusal reasons shared by every verification step and
recorded in the store's `verdicts.reason` column (the values are persisted, so
a value is never renamed; new reasons are appended).
Must not: decide anything. The checks that emit these codes live beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Reason(StrEnum):
    # Per-result checks (checks.py)
    SIGNER_NOT_LEASE_HOLDER = "signer_not_lease_holder"
    LEASE_MISMATCH = "lease_mismatch"
    """The result names another task, job, attempt or lease than the grant it answers."""
    LEASE_DEAD = "lease_dead"
    """Arrived after the lease deadline plus the late grace."""
    KIND_MISMATCH = "kind_mismatch"
    SCHEMA_INVALID = "schema_invalid"
    OVERSIZED = "oversized"
    TRUNCATED = "truncated"
    """Generation stopped on max_tokens: the structured output is cut off."""
    MODEL_NOT_ALLOWED = "model_not_allowed"
    DECODING_MISMATCH = "decoding_mismatch"
    CONTENT_DIGEST_MISMATCH = "content_digest_mismatch"
    MISSING_GENERATION = "missing_generation"
    """An LLM kind without the prompt/raw text a validator needs to re-score it."""
    # Cross-replica verification (quorum.py, rescoring.py)
    QUORUM_MINORITY = "quorum_minority"
    RESCORE_FAILED = "rescore_failed"
    UNVERIFIABLE = "unverifiable"
    """No eligible node could re-score the candidates (every node produced one): not the producer's fault."""
    # Quality gates (gates.py)
    EVIDENCE_NOT_FOUND = "evidence_not_found"
    UNSUPPORTED_ANSWER = "unsupported_answer"
    DUPLICATE = "duplicate"
    NEAR_DUPLICATE = "near_duplicate"
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    WRONG_LANGUAGE = "wrong_language"
    REPETITIVE = "repetitive"
    """A field loops on itself ("the answer is that the answer is that ..."): a small-model failure."""
    QUESTION_OFF_SOURCE = "question_off_source"
    """A field that asks shares no content word with its source ("What does it do?"): generic or off topic."""
    QUESTION_MALFORMED = "question_malformed"
    """Not one well-formed question: no wh-word or "?" at the end, debris (braces, quotes), several sentences."""
    QUESTION_OFF_ANSWER = "question_off_answer"
    """The question asks about something its answer sentence does not mention."""
    QUESTION_GIVES_ANSWER = "question_gives_answer"
    """The question already says most of what its answer says: nothing is left to answer."""
    ROUNDTRIP_FAILED = "roundtrip_failed"
    """A validator reading the question and the chunk, without the answer, did not land on the row's answer."""
    PAGE_QUOTA = "page_quota"
    """The row's source page already holds its share of the dataset: rows spread over the corpus."""
    ANSWER_MISMATCH = "answer_mismatch"
    """An answer-first row whose answer is not the sentence the task named."""
    PROMPT_INJECTION = "prompt_injection"
    """A field or the evidence reads as an instruction to a model (injected by a retrieved page)."""
    QUESTION_VAGUE = "question_vague"
    """The question asks about its subject in general ("What does X do?"): many sentences answer it, not one."""
    # The judge check (judge.py)
    JUDGE_REFUSED = "judge_refused"
    """A judge node scored the row below the job's minimum against its source."""
    UNJUDGED = "unjudged"
    """No judge node scored the row (its judge task failed or was abandoned): not delivered unchecked."""


@dataclass(frozen=True)
class Failure:
    """One refusal: the code is for machines (stats, reputation), the detail for people."""

    reason: Reason
    detail: str

    def __str__(self) -> str:
        return f"{self.reason.value}: {self.detail}"
