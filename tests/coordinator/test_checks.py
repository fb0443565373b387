"""Per-result checks: a faithful result passes, and each rule refuses with its own reason code."""

from __future__ import annotations

import json

import pytest

from coordinator.verify.checks import check_result
from coordinator.verify.reasons import Failure, Reason
from protocol.messages import GenerationStats, Grant, Result
from protocol.tasks import (
    CurateOutput,
    CuratePayload,
    Document,
    GeneratedRow,
    SynthesisSpec,
    SynthesizeOutput,
    ValidateOutput,
    ValidatePayload,
)
from tests.coordinator.factories import (
    GOOD_ROW,
    MODEL,
    NODE_A,
    NODE_B,
    OTHER_MODEL,
    ROW_SCHEMA,
    T0,
    chunk,
    decoding,
    grant,
    result_for,
    retrieve_output,
    retrieve_payload,
    rows_output,
    search_output,
    search_payload,
    sha,
    synth_payload,
)

ALLOWED = {MODEL}


def _check(result: Result, g: Grant, *, signer: str = NODE_A.peer_id, now_ms: int = T0) -> list[Failure]:
    return check_result(result, signer_peer_id=signer, grant=g, allowed_models=ALLOWED, now_ms=now_ms)


def _reasons(failures: list[Failure]) -> list[Reason]:
    return [f.reason for f in failures]


@pytest.fixture
def g() -> Grant:
    return grant(synth_payload(n_rows=2))


def test_a_faithful_synthesize_result_passes(g: Grant) -> None:
    assert _check(result_for(g, rows_output(GOOD_ROW, GOOD_ROW)), g) == []


def test_faithful_search_and_retrieve_results_pass() -> None:
    gs = grant(search_payload(max_results=3))
    assert _check(result_for(gs, search_output(["http://a", "http://b"])), gs) == []
    gr = grant(retrieve_payload())
    assert _check(result_for(gr, retrieve_output("some page text")), gr) == []


def test_signer_must_hold_the_lease(g: Grant) -> None:
    fails = _check(result_for(g, rows_output(GOOD_ROW)), g, signer=NODE_B.peer_id)
    assert _reasons(fails) == [Reason.SIGNER_NOT_LEASE_HOLDER]
    assert NODE_B.peer_id in fails[0].detail


@pytest.mark.parametrize("field,value", [("lease_id", "other"), ("task_id", "t9"), ("job_id", "j9"), ("attempt", 1)])
def test_result_must_answer_its_own_grant(g: Grant, field: str, value: object) -> None:
    fails = _check(result_for(g, rows_output(GOOD_ROW), **{field: value}), g)
    assert _reasons(fails) == [Reason.LEASE_MISMATCH]
    assert field in fails[0].detail


def test_late_results_pass_within_grace_and_dead_ones_do_not(g: Grant) -> None:
    result = result_for(g, rows_output(GOOD_ROW))
    assert _check(result, g, now_ms=g.lease_deadline_ms + 30_000) == []  # late, within LATE_GRACE_MS
    assert _reasons(_check(result, g, now_ms=g.lease_deadline_ms + 60_001)) == [Reason.LEASE_DEAD]


def test_output_kind_must_match_the_task(g: Grant) -> None:
    fails = _check(result_for(g, search_output(["http://a"])), g)
    assert _reasons(fails) == [Reason.KIND_MISMATCH]


def test_each_row_is_validated_against_the_row_schema(g: Grant) -> None:
    bad = SynthesizeOutput(
        rows=[
            GeneratedRow(data={"question": GOOD_ROW[0], "answer": GOOD_ROW[1]}, evidence=GOOD_ROW[2]),
            GeneratedRow(data={"question": "Why?", "answer": 42}, evidence=GOOD_ROW[2]),
        ]
    )
    fails = _check(result_for(g, bad), g)
    assert _reasons(fails) == [Reason.SCHEMA_INVALID]
    assert fails[0].detail.startswith("row 1:")


def test_rows_with_extra_keys_or_missing_fields_are_refused(g: Grant) -> None:
    extra = SynthesizeOutput(rows=[GeneratedRow(data={"question": GOOD_ROW[0], "answer": "a", "x": 1})])
    missing = SynthesizeOutput(rows=[GeneratedRow(data={"question": GOOD_ROW[0]})])
    empty = SynthesizeOutput(rows=[])
    for out in (extra, missing, empty):
        assert _reasons(_check(result_for(g, out), g)) == [Reason.SCHEMA_INVALID]


def test_sizes_are_bounded(g: Grant) -> None:
    three = rows_output(GOOD_ROW, GOOD_ROW, GOOD_ROW)  # the task asked for 2
    assert _reasons(_check(result_for(g, three), g)) == [Reason.OVERSIZED]
    huge_schema = dict(ROW_SCHEMA, properties={"question": {"type": "string"}, "answer": {"type": "string"}})
    gh = grant(synth_payload(schema=huge_schema))
    big = SynthesizeOutput(rows=[GeneratedRow(data={"question": "q" * 9000, "answer": "a" * 9000})])
    assert _reasons(_check(result_for(gh, big), gh)) == [Reason.OVERSIZED]
    gs = grant(search_payload(max_results=1))
    assert _reasons(_check(result_for(gs, search_output(["http://a", "http://b"])), gs)) == [Reason.OVERSIZED]
    too_many_tokens = GenerationStats(completion_tokens=10_000, finish_reason="stop")
    assert _reasons(_check(result_for(g, rows_output(GOOD_ROW), stats=too_many_tokens), g)) == [Reason.OVERSIZED]


def test_more_tokens_than_granted_pass_when_the_text_accounts_for_them(g: Grant) -> None:
    """A node raises a grant below its grammar's bound (a long row schema) to that bound: honest, not oversized."""
    assert g.decoding is not None
    text = json.dumps({"question": "q" * 600})
    assert len(text) + 1 > g.decoding.max_tokens

    def claiming(tokens: int) -> Result:
        stats = GenerationStats(prompt_tokens=40, completion_tokens=tokens, mean_logprob=-1.2, finish_reason="stop")
        return result_for(g, rows_output(GOOD_ROW), raw_text=text, stats=stats)

    assert _check(claiming(len(text) + 1), g) == []
    fails = _check(claiming(len(text) + 2), g)  # more tokens than the text has bytes: inflated
    assert _reasons(fails) == [Reason.OVERSIZED]
    assert f"the text accounts for {len(text) + 1}" in fails[0].detail


def test_model_must_be_the_granted_and_allowed_one(g: Grant) -> None:
    assert _reasons(_check(result_for(g, rows_output(GOOD_ROW), model_sha256=OTHER_MODEL), g)) == [
        Reason.MODEL_NOT_ALLOWED
    ]
    assert _reasons(_check(result_for(g, rows_output(GOOD_ROW), model_sha256=None), g)) == [Reason.MODEL_NOT_ALLOWED]
    # Granted a model the job does not allow (e.g. the allowed set changed): still refused.
    g_other = grant(synth_payload(), model=OTHER_MODEL)
    fails = _check(result_for(g_other, rows_output(GOOD_ROW)), g_other)
    assert _reasons(fails) == [Reason.MODEL_NOT_ALLOWED] and "not allowed" in fails[0].detail


def test_decoding_params_must_echo_the_grant(g: Grant) -> None:
    fails = _check(result_for(g, rows_output(GOOD_ROW), decoding=decoding(seed=8)), g)
    assert _reasons(fails) == [Reason.DECODING_MISMATCH]
    assert "seed" in fails[0].detail
    assert _reasons(_check(result_for(g, rows_output(GOOD_ROW), decoding=None), g)) == [Reason.DECODING_MISMATCH]


def test_generative_results_carry_what_a_validator_needs(g: Grant) -> None:
    assert _reasons(_check(result_for(g, rows_output(GOOD_ROW), raw_text=""), g)) == [Reason.MISSING_GENERATION]
    cut = GenerationStats(completion_tokens=256, finish_reason="length")
    assert _reasons(_check(result_for(g, rows_output(GOOD_ROW), stats=cut), g)) == [Reason.TRUNCATED]


def test_raw_text_must_satisfy_the_grammar_schema() -> None:
    schema = {"type": "object", "properties": {"rows": {"type": "array"}}, "required": ["rows"]}
    g = grant(synth_payload(), dec=decoding(json_schema=schema))
    ok = json.dumps({"rows": []})
    assert _check(result_for(g, rows_output(GOOD_ROW), raw_text=ok), g) == []
    assert _reasons(_check(result_for(g, rows_output(GOOD_ROW), raw_text='{"rows": ['), g)) == [Reason.SCHEMA_INVALID]
    assert _reasons(_check(result_for(g, rows_output(GOOD_ROW), raw_text='{"other": 1}'), g)) == [Reason.SCHEMA_INVALID]


def test_retrieve_content_digest_and_url_are_checked() -> None:
    g = grant(retrieve_payload())
    lying = retrieve_output("page text").model_copy(update={"content_sha256": sha("other text")})
    assert _reasons(_check(result_for(g, lying), g)) == [Reason.CONTENT_DIGEST_MISMATCH]
    elsewhere = retrieve_output("page text", url="http://127.0.0.1/elsewhere")
    assert _reasons(_check(result_for(g, elsewhere), g)) == [Reason.LEASE_MISMATCH]
    small = grant(retrieve_payload().model_copy(update={"max_bytes": 4}))
    assert _reasons(_check(result_for(small, retrieve_output("page text")), small)) == [Reason.OVERSIZED]


def test_curate_chunks_must_be_slices_of_the_given_documents() -> None:
    text = "Gutenberg built a press. It changed Europe."
    doc = Document(url="http://127.0.0.1/doc", text=text, content_sha256=sha(text))
    g = grant(CuratePayload(documents=[doc], instruction="Ask about it"))
    good = chunk(text).model_copy(update={"start": 0, "end": 24, "text": text[:24]})
    assert _check(result_for(g, CurateOutput(tasks=[SynthesisSpec(instruction="q", chunk=good)])), g) == []
    forged = good.model_copy(update={"text": "Gutenberg built a rocket"})
    fails = _check(result_for(g, CurateOutput(tasks=[SynthesisSpec(instruction="q", chunk=forged)])), g)
    assert _reasons(fails) == [Reason.SCHEMA_INVALID]
    foreign = good.model_copy(update={"content_sha256": sha("another doc")})
    fails = _check(result_for(g, CurateOutput(tasks=[SynthesisSpec(instruction="q", chunk=foreign)])), g)
    assert _reasons(fails) == [Reason.CONTENT_DIGEST_MISMATCH]


def test_validate_outputs_must_be_internally_consistent() -> None:
    payload = ValidatePayload(model_sha256=MODEL, prompt="p", candidate="c")
    g = grant(payload)
    good = ValidateOutput(n_tokens=2, mean_logprob=-1.5, topk_rate=1.0, token_logprobs=[-1.0, -2.0])
    assert _check(result_for(g, good), g) == []
    wrong_mean = good.model_copy(update={"mean_logprob": -0.1})
    assert _reasons(_check(result_for(g, wrong_mean), g)) == [Reason.SCHEMA_INVALID]
    wrong_count = good.model_copy(update={"n_tokens": 3})
    assert _reasons(_check(result_for(g, wrong_count), g)) == [Reason.SCHEMA_INVALID]
    # The validator must re-score under the model the payload names.
    assert _reasons(_check(result_for(g, good, model_sha256=OTHER_MODEL), g)) == [Reason.MODEL_NOT_ALLOWED]


def test_several_failures_are_all_reported_in_order(g: Grant) -> None:
    result = result_for(g, rows_output(GOOD_ROW), lease_id="other", decoding=decoding(seed=1))
    fails = _check(result, g, signer=NODE_B.peer_id, now_ms=g.lease_deadline_ms + 10**6)
    assert _reasons(fails) == [
        Reason.SIGNER_NOT_LEASE_HOLDER,
        Reason.LEASE_MISMATCH,
        Reason.LEASE_DEAD,
        Reason.DECODING_MISMATCH,
    ]
