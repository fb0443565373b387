"""Generative verification: replica comparison and the re-scoring accept/reject decision."""

from __future__ import annotations

import pytest

from coordinator.verify.reasons import Reason
from coordinator.verify.rescoring import (
    Agreement,
    Candidate,
    RescoreThresholds,
    compare_replicas,
    decide,
    decide_all,
    validate_payload_for,
)
from protocol.messages import Result
from protocol.tasks import ValidateOutput
from tests.coordinator.factories import GOOD_ROW, MODEL, OTHER_MODEL, decoding, grant, result_for, rows_output
from tests.coordinator.factories import synth_payload as _synth

G = grant(_synth())
ANSWER = (
    '{"question": "Who developed the printing press?", "answer": "Johannes Gutenberg developed the printing '
    'press around 1440 in Mainz, and his movable type made books cheaper across Europe."}'
)


def _replica(raw_text: str, **kw: object) -> Result:
    return result_for(G, rows_output(GOOD_ROW), raw_text=raw_text, **kw)


def _v(topk: float, mean: float, n: int = 40) -> ValidateOutput:
    return ValidateOutput(n_tokens=n, mean_logprob=mean, topk_rate=topk, token_logprobs=[mean] * n)


def test_identical_replicas_on_the_same_model_agree_exactly() -> None:
    assert compare_replicas(_replica(ANSWER), _replica(ANSWER)) is Agreement.EXACT


def test_a_word_of_drift_is_close_and_a_different_answer_diverges() -> None:
    drift = ANSWER.replace("made books cheaper", "made the books cheaper")
    assert compare_replicas(_replica(ANSWER), _replica(drift)) is Agreement.CLOSE
    other = '{"question": "When was paper invented?", "answer": "Paper was invented in China around 105 AD."}'
    assert compare_replicas(_replica(ANSWER), _replica(other)) is Agreement.DIVERGENT


def test_replicas_on_different_models_or_seeds_are_incomparable() -> None:
    assert compare_replicas(_replica(ANSWER), _replica(ANSWER, model_sha256=OTHER_MODEL)) is Agreement.INCOMPARABLE
    assert compare_replicas(_replica(ANSWER), _replica(ANSWER, decoding=decoding(seed=99))) is Agreement.INCOMPARABLE


def test_the_validate_task_re_scores_exactly_what_the_producer_sent() -> None:
    r = _replica(ANSWER)
    payload = validate_payload_for(r, top_k=5)
    assert (payload.model_sha256, payload.prompt, payload.candidate) == (MODEL, r.prompt, ANSWER)
    assert payload.claimed_mean_logprob == r.stats.mean_logprob and payload.top_k == 5
    with pytest.raises(ValueError):
        validate_payload_for(_replica(ANSWER, model_sha256=None))


def test_own_output_is_accepted() -> None:
    d = decide(Candidate("own", [_v(0.96, -1.3)], claimed_mean_logprob=-1.25))
    assert d.accept and d.failure is None and d.topk_rate == 0.96


def test_shuffled_tokens_are_rejected_on_topk_rate() -> None:
    d = decide(Candidate("shuffled", [_v(0.22, -7.5)], claimed_mean_logprob=-1.2))
    assert not d.accept and d.failure is not None
    assert d.failure.reason is Reason.RESCORE_FAILED and "top-k" in d.failure.detail


def test_measured_separation_on_the_bundled_model() -> None:
    # Medians measured with SmolLM2-135M (see RescoreThresholds' docstring).
    assert decide(Candidate("own", [_v(0.89, -1.21)], claimed_mean_logprob=-1.6)).accept
    assert decide(Candidate("own-worst", [_v(0.87, -1.65)], claimed_mean_logprob=-1.9)).accept
    assert decide(Candidate("own-unlikely-sample", [_v(0.897, -2.562)], claimed_mean_logprob=-3.29)).accept
    assert not decide(Candidate("shuffled", [_v(0.15, -7.65)], claimed_mean_logprob=-1.0)).accept
    assert not decide(Candidate("other-prompt", [_v(0.76, -2.68)], claimed_mean_logprob=-1.2)).accept


def test_another_prompts_output_is_rejected_on_its_inflated_claim() -> None:
    # Even with a top-k rate that passes, the claim made under the other prompt gives it away.
    d = decide(Candidate("other-prompt", [_v(0.85, -2.68)], claimed_mean_logprob=-1.2))
    assert not d.accept and d.failure is not None and "claimed" in d.failure.detail


def test_gross_garbage_is_rejected_on_mean_logprob() -> None:
    d = decide(Candidate("garbage", [_v(0.9, -6.0)], claimed_mean_logprob=-6.2))
    assert not d.accept and d.failure is not None and "mean logprob" in d.failure.detail


def test_a_false_claim_about_the_logprob_is_rejected() -> None:
    d = decide(Candidate("liar", [_v(0.9, -1.5)], claimed_mean_logprob=-0.8))
    assert not d.accept and d.failure is not None and "claimed" in d.failure.detail
    assert not decide(Candidate("no-claim", [_v(0.9, -1.5)])).accept  # nothing to check it against
    # Honest producers claim *less* than the re-score (grammar-forced token splits): never a reason to reject.
    assert decide(Candidate("modest", [_v(0.9, -1.2)], claimed_mean_logprob=-2.2)).accept


def test_an_empty_candidate_is_rejected_and_no_validation_is_an_error() -> None:
    assert not decide(Candidate("empty", [_v(1.0, -0.5, n=0)])).accept
    with pytest.raises(ValueError):
        decide(Candidate("none", []))


def test_the_median_outvotes_one_lying_validator() -> None:
    honest = [_v(0.95, -1.2), _v(0.94, -1.3)]
    liar = _v(0.05, -9.0)
    assert decide(Candidate("c", [*honest, liar], claimed_mean_logprob=-1.25)).accept
    framed = [_v(0.05, -9.0), _v(0.04, -9.5), _v(0.95, -1.2)]
    assert not decide(Candidate("c", framed)).accept


def test_decide_all_judges_each_candidate_on_its_own() -> None:
    decisions = decide_all([Candidate(1, [_v(0.95, -1.2)], -1.3), Candidate(2, [_v(0.3, -6.0)], -1.0)])
    assert [(d.key, d.accept) for d in decisions] == [(1, True), (2, False)]


def test_thresholds_come_from_config() -> None:
    strict = RescoreThresholds.from_mapping({"min_topk_rate": 0.97, "max_claim_excess": 0.1})
    assert strict.min_topk_rate == 0.97 and strict.min_mean_logprob == RescoreThresholds().min_mean_logprob
    assert not decide(Candidate("c", [_v(0.96, -1.3)]), strict).accept
    with pytest.raises(ValueError, match="unknown"):
        RescoreThresholds.from_mapping({"min_topk": 0.5})


def test_a_candidate_whose_prompt_is_not_the_tasks_is_rejected() -> None:
    ok = ValidateOutput(n_tokens=40, mean_logprob=-1.2, topk_rate=0.9, token_logprobs=[-1.2] * 40)
    mismatch = ok.model_copy(update={"prompt_matches": False})
    assert decide(Candidate("honest", [ok.model_copy(update={"prompt_matches": True})], -1.4)).accept
    d = decide(Candidate("other-input", [mismatch, mismatch], -1.2))
    assert not d.accept and d.failure is not None and "prompt" in d.failure.detail
