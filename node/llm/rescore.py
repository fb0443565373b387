"""Re-scoring arithmetic: how well a candidate text fits a model's own predictions.

Owns: the per-token scores a teacher-forced pass produces (log p of each
candidate token under the raw model distribution, and whether it ranks inside
the top-k) and their summary (`RescoreResult`). Pure numpy; the pass itself
(feeding prompt + candidate through llama.cpp) lives in `backend.py`, and
the decision to accept or reject a producer lives with the coordinator.

Both the producer's claimed `mean_logprob` (from its generation loop) and the
validator's re-score use the raw distribution (before grammar, top-k and
temperature), so for an honest producer on the same model they agree up to
float rounding and tokenization. A validator tokenizes the candidate text
canonically; a grammar-constrained producer sometimes samples a non-canonical
split of the same text (when the grammar overrides the model's choice it may
force "A" "l" "l" where the text tokenizes as "All"), and those forced pieces
have very low logprobs. So an honest claim sits *below* the re-score: a verifier
tests one-sidedly and relies on the absolute figures
(docs/notes/verification.md#claim-versus-re-score).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RescoreResult:
    n_tokens: int
    token_logprobs: tuple[float, ...]
    topk_hits: int
    prompt_tokens: int
    seconds: float

    @property
    def mean_logprob(self) -> float:
        return float(np.mean(self.token_logprobs)) if self.token_logprobs else 0.0

    @property
    def topk_rate(self) -> float:
        return self.topk_hits / self.n_tokens if self.n_tokens else 0.0


def token_logprob(logits: np.ndarray, token: int) -> float:
    """log softmax(logits)[token] for one row of logits."""
    m = float(logits.max())
    return float(logits[token]) - (m + float(np.log(np.exp(logits - m).sum())))


def score_rows(rows: np.ndarray, targets: np.ndarray, top_k: int) -> tuple[list[float], int]:
    """For each row of logits: log p(target), and how many targets rank inside the row's top-k.

    Rank = how many tokens score strictly higher than the target, so ties count
    in the target's favour (a target tied for first is a top-1 hit).
    """
    m = rows.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(rows - m).sum(axis=1))
    target_logits = rows[np.arange(len(targets)), targets]
    ranks = (rows > target_logits[:, None]).sum(axis=1)
    return [float(x) for x in target_logits - lse], int((ranks < top_k).sum())
