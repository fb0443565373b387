"""The LLM task executors on the real SmolLM2 model, curate's chunking, and the executor registry."""

from __future__ import annotations

import hashlib
import json
import random
import statistics
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from node.executors import (
    EXECUTOR_CLASSES,
    ExecutorDeps,
    RegistryError,
    build_executor,
    build_executors,
)
from node.executors.base import ExecutionError, ExecutionResult
from node.executors.curate import CurateExecutor, chunk_spans
from node.executors.judge import JudgeExecutor
from node.executors.question_gen import QuestionGenExecutor
from node.executors.synthesize import (
    SynthesizeExecutor,
    evidence_candidates,
    evidence_groups,
    field_lines,
    output_schema,
)
from node.executors.validate import ValidateExecutor
from node.llm.backend import LlamaBackend
from node.llm.engine import Engine, LoadedModel
from node.llm.hardware import ModelPlan
from node.prompts import PROMPTS_VERSION, load_prompts
from protocol import encoding
from protocol.tasks import (
    LLM_KINDS,
    CurateOutput,
    CuratePayload,
    DecodingParams,
    Document,
    JudgeOutput,
    JudgePayload,
    QuestionGenOutput,
    QuestionGenPayload,
    SynthesizeOutput,
    SynthesizePayload,
    TaskKind,
    ValidateOutput,
    ValidatePayload,
)
from tests.node.conftest import PYDOC_PARAGRAPHS, make_chunk

ROW_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "question": {"type": "string", "maxLength": 120, "description": "A question the source text answers."},
        "answer": {"type": "string", "maxLength": 160, "description": "The answer, taken from the source text."},
        "difficulty": {"type": "integer", "minimum": 1, "maximum": 3, "description": "1 easy, 3 hard."},
    },
    "required": ["question", "answer", "difficulty"],
}
INSTRUCTION = "Write a question a Python learner might ask, and its answer."


def synth_payload(i: int) -> SynthesizePayload:
    text = PYDOC_PARAGRAPHS[i]
    return SynthesizePayload(
        instruction=INSTRUCTION, chunk=make_chunk(text), row_schema=ROW_SCHEMA, n_rows=2 if i % 4 == 0 else 1
    )


@pytest.fixture(scope="module")
def synth_results(backend: LlamaBackend, test_plan: ModelPlan) -> list[tuple[SynthesizePayload, ExecutionResult]]:
    """Synthesize on the ten paragraphs once; several tests read the results."""

    async def run() -> list[tuple[SynthesizePayload, ExecutionResult]]:
        executor = SynthesizeExecutor(Engine([LoadedModel(plan=test_plan, backends=[backend])]))
        out = []
        for i in range(len(PYDOC_PARAGRAPHS)):
            payload = synth_payload(i)
            out.append((payload, await executor.execute(payload, DecodingParams(seed=i, temperature=0.0), None)))
        return out

    return trio.run(run)


# --- synthesize ---------------------------------------------------------------------------------


def test_synthesize_returns_schema_valid_grounded_rows_for_ten_chunks(
    synth_results: list[tuple[SynthesizePayload, ExecutionResult]], test_plan: ModelPlan
) -> None:
    assert len({p.chunk.text for p, _ in synth_results if p.chunk}) == 10
    for payload, result in synth_results:
        assert isinstance(result.output, SynthesizeOutput)
        assert payload.chunk is not None
        assert 1 <= len(result.output.rows) <= payload.n_rows, result.raw_text
        for row in result.output.rows:
            jsonschema.validate(row.data, ROW_SCHEMA)  # an independent check of every returned row
            assert row.evidence and row.evidence in payload.chunk.text
        assert result.model_sha256 == test_plan.model.sha256
        assert payload.chunk.text in result.prompt and result.prompt.endswith("<|im_start|>assistant\n")
        assert result.stats.finish_reason == "stop"
        assert result.stats.completion_tokens > 0 and result.stats.mean_logprob is not None


def test_rows_of_one_task_quote_different_parts_of_the_chunk(
    synth_results: list[tuple[SynthesizePayload, ExecutionResult]],
) -> None:
    multi = [(p, r) for p, r in synth_results if p.n_rows > 1]
    assert multi
    for payload, result in multi:
        assert payload.chunk is not None and isinstance(result.output, SynthesizeOutput)
        groups = evidence_groups(evidence_candidates(payload.chunk), payload.n_rows)
        assert len(groups) == payload.n_rows
        # Row i of the raw output may only quote from group i (rows may be dropped after parsing).
        raw_rows = json.loads(result.raw_text)["rows"]
        for raw_row, group in zip(raw_rows, groups, strict=True):
            assert raw_row["evidence"] in group


async def test_fields_are_written_in_the_order_of_required_after_the_wire_sorted_them(engine: Engine) -> None:
    # Canonical encoding sorts object keys: "answer" now comes before "question" in `properties`.
    wire = encoding.decode(encoding.encode(synth_payload(1).model_dump(mode="json")), limit=1 << 20)
    payload = SynthesizePayload.model_validate(wire)
    assert list(payload.row_schema["properties"]) == ["answer", "difficulty", "question"]
    schema, _ = output_schema(payload)
    assert list(schema["properties"]["rows"]["prefixItems"][0]["properties"]) == [
        "evidence", "question", "answer", "difficulty"
    ]  # fmt: skip
    lines = field_lines(payload.row_schema).splitlines()
    assert [line.split(" ")[1] for line in lines] == ["question", "answer", "difficulty"]
    result = await SynthesizeExecutor(engine).execute(payload, DecodingParams(seed=5, temperature=0.0), None)
    raw = result.raw_text
    assert raw.index('"question"') < raw.index('"answer"') < raw.index('"difficulty"'), raw


def test_evidence_candidates_are_verbatim_bounded_sentences() -> None:
    chunk = make_chunk(" ".join(PYDOC_PARAGRAPHS[:3]) + " " + "x" * 700)
    candidates = evidence_candidates(chunk)
    assert candidates and all(c in chunk.text and len(c) <= 300 for c in candidates)
    assert candidates[0].startswith("A match statement takes an expression")


async def test_synthesize_without_chunk_has_no_evidence(engine: Engine) -> None:
    payload = SynthesizePayload(
        instruction="Write a fruit and its colour.",
        row_schema={
            "type": "object",
            "properties": {"fruit": {"type": "string", "maxLength": 20}, "colour": {"type": "string", "maxLength": 20}},
        },
    )
    result = await SynthesizeExecutor(engine).execute(payload, DecodingParams(seed=1), None)
    assert isinstance(result.output, SynthesizeOutput) and result.output.rows
    assert all(r.evidence == "" and set(r.data) == {"fruit", "colour"} for r in result.output.rows)


async def test_synthesize_refuses_unusable_row_schemas(engine: Engine) -> None:
    executor = SynthesizeExecutor(engine)
    chunk = make_chunk(PYDOC_PARAGRAPHS[0])
    for schema, message in (
        ({"type": "string"}, "object schema with properties"),
        ({"type": "object", "properties": {"x": {"type": "object"}}}, "cannot be used"),
    ):
        payload = SynthesizePayload(instruction="x", chunk=chunk, row_schema=schema)
        with pytest.raises(ExecutionError, match=message):
            await executor.execute(payload, None, None)


async def test_rows_failing_post_validated_keywords_are_dropped(engine: Engine) -> None:
    # `pattern` is not enforced by the grammar: a row whose answer is not all capitals must be dropped.
    schema = {"type": "object", "properties": {"answer": {"type": "string", "maxLength": 30, "pattern": "^[A-Z ]+$"}}}
    payload = SynthesizePayload(
        instruction="Answer in lower case.", chunk=make_chunk(PYDOC_PARAGRAPHS[1]), row_schema=schema, n_rows=2
    )
    result = await SynthesizeExecutor(engine).execute(payload, DecodingParams(seed=3), None)
    assert isinstance(result.output, SynthesizeOutput)
    assert all(r.data["answer"].isupper() for r in result.output.rows)
    assert result.raw_text  # the model did write rows; those that failed are gone from the output


# --- validate ----------------------------------------------------------------------------------------


async def test_validate_scores_own_output_above_shuffled_and_foreign_text(
    engine: Engine, backend: LlamaBackend, synth_results: list[tuple[SynthesizePayload, ExecutionResult]]
) -> None:
    validator = ValidateExecutor(engine)
    sha = engine.model().sha256
    rng = random.Random(0)
    own, shuffled, foreign = [], [], []
    sample = synth_results[:4]
    payload = ValidatePayload(model_sha256=sha, prompt=sample[0][1].prompt, candidate=sample[0][1].raw_text)
    validated = await validator.execute(payload, None, sha)
    assert isinstance(validated.output, ValidateOutput)
    for i, (_, result) in enumerate(sample):
        tokens = backend.tokenize_text(result.raw_text)
        rng.shuffle(tokens)
        shuffled_text = backend.llm.detokenize(tokens).decode("utf-8", "replace")
        other_output = sample[(i + 1) % len(sample)][1].raw_text  # written by the model for another prompt
        # One prompt prefill for the three candidates; each equals a separate pass (the executor's, here).
        o, s, f = await engine.rescore_many(sha, result.prompt, [result.raw_text, shuffled_text, other_output], 10)
        if i == 0:
            assert o.token_logprobs == tuple(validated.output.token_logprobs)
            assert o.topk_rate == validated.output.topk_rate
        own.append(o)
        shuffled.append(s)
        foreign.append(f)

    for o, s, f in zip(own, shuffled, foreign, strict=True):
        assert o.n_tokens == len(o.token_logprobs) > 0
        assert o.mean_logprob > s.mean_logprob + 3.0 and o.topk_rate > s.topk_rate + 0.4
        assert o.mean_logprob > f.mean_logprob and o.topk_rate > f.topk_rate
    mean = statistics.mean
    assert mean(o.mean_logprob for o in own) > mean(f.mean_logprob for f in foreign) + 0.5
    assert min(o.topk_rate for o in own) > 0.8


async def test_validate_refuses_a_model_it_does_not_hold(engine: Engine) -> None:
    validator = ValidateExecutor(engine)
    payload = ValidatePayload(model_sha256="ab" * 32, prompt="p", candidate="c")
    with pytest.raises(ExecutionError, match="not loaded on this node"):
        await validator.execute(payload, None, None)
    mine = ValidatePayload(model_sha256=engine.model().sha256, prompt="p", candidate="c")
    with pytest.raises(ExecutionError, match="grant names model"):
        await validator.execute(mine, None, "cd" * 32)


# --- question_gen and judge ---------------------------------------------------------------------------


async def test_question_gen_returns_bounded_clean_lists(engine: Engine) -> None:
    payload = QuestionGenPayload(topic="Python virtual environments", n_queries=3, n_questions=2)
    result = await QuestionGenExecutor(engine).execute(payload, DecodingParams(seed=2, temperature=0.8), None)
    out = result.output
    assert isinstance(out, QuestionGenOutput)
    assert 1 <= len(out.queries) <= 3 and len(out.questions) <= 2
    for text in out.queries + out.questions:
        assert text == " ".join(text.split()) and len(text) >= 1
    assert len({q.casefold() for q in out.queries}) == len(out.queries)
    assert "Python virtual environments" in result.prompt
    QuestionGenOutput.model_validate(out.model_dump())


async def test_judge_scores_one_to_five_with_a_rationale(engine: Engine) -> None:
    payload = JudgePayload(
        row={"question": "What does a.pop() do without an index?", "answer": "It removes and returns the last item."},
        criteria="The answer is correct according to the source.",
        chunk=make_chunk(PYDOC_PARAGRAPHS[1]),
    )
    result = await JudgeExecutor(engine).execute(payload, DecodingParams(seed=0), None)
    assert isinstance(result.output, JudgeOutput)
    assert 1 <= result.output.score <= 5 and result.output.rationale
    assert PYDOC_PARAGRAPHS[1] in result.prompt and result.stats.finish_reason == "stop"


async def test_chat_tasks_are_refused_on_a_model_without_chat_template(
    engine: Engine, backend: LlamaBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backend, "chat_template", None)  # what a base model such as Gemma-3-270M looks like
    with pytest.raises(ExecutionError, match="no chat template"):
        await QuestionGenExecutor(engine).execute(QuestionGenPayload(topic="x"), None, None)
    # Validation needs no template: the prompt arrives rendered.
    result = await ValidateExecutor(engine).execute(
        ValidatePayload(model_sha256=engine.model().sha256, prompt="Hello", candidate=" world"), None, None
    )
    assert isinstance(result.output, ValidateOutput) and result.output.n_tokens == 1


def test_prompts_render_deterministically_from_the_payload() -> None:
    from node.executors import synthesize

    a = synthesize.messages(synth_payload(3))
    b = synthesize.messages(synth_payload(3))
    assert a == b and PYDOC_PARAGRAPHS[3] in a[1]["content"]
    assert load_prompts().version == PROMPTS_VERSION and PROMPTS_VERSION


# --- curate ---------------------------------------------------------------------------------------------


def document(text: str, url: str = "https://docs.python.org/3/x.html") -> Document:
    return Document(url=url, text=text, content_sha256=hashlib.sha256(text.encode()).hexdigest())


async def test_curate_chunks_carry_exact_offsets() -> None:
    text = "\n\n".join(PYDOC_PARAGRAPHS)
    payload = CuratePayload(documents=[document(text)], instruction=INSTRUCTION, chunk_chars=700)
    result = await CurateExecutor().execute(payload, None, None)
    assert isinstance(result.output, CurateOutput)
    tasks = result.output.tasks
    assert len(tasks) >= 8
    for task in tasks:
        c = task.chunk
        assert text[c.start : c.end] == c.text and len(c.text) <= 700
        assert task.instruction == INSTRUCTION and c.content_sha256 == payload.documents[0].content_sha256
        # Paragraph boundaries are preferred: no chunk starts or ends inside a word.
        assert (c.start == 0 or not text[c.start - 1].isalnum()) and (c.end == len(text) or not text[c.end].isalnum())
    assert [t.chunk.start for t in tasks] == sorted(t.chunk.start for t in tasks)
    assert result.model_sha256 is None and result.prompt == ""


async def test_curate_round_robins_documents_and_honours_max_tasks() -> None:
    a = document("\n\n".join(PYDOC_PARAGRAPHS[:5]), "https://a.example/")
    b = document("\n\n".join(PYDOC_PARAGRAPHS[5:]), "https://b.example/")
    payload = CuratePayload(documents=[a, b], instruction="x", chunk_chars=450, max_tasks=4)
    result = await CurateExecutor().execute(payload, None, None)
    assert isinstance(result.output, CurateOutput)
    assert [t.chunk.url for t in result.output.tasks] == ["https://a.example/", "https://b.example/"] * 2


async def test_curate_refuses_a_document_whose_digest_does_not_match() -> None:
    doc = Document(url="https://a.example/", text="some text " * 20, content_sha256="0" * 64)
    with pytest.raises(ExecutionError, match="does not match its content_sha256"):
        await CurateExecutor().execute(CuratePayload(documents=[doc], instruction="x"), None, None)


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(alphabet=st.sampled_from("ab .!?\n\t\"')xyz"), max_size=3000),
    max_chars=st.integers(min_value=20, max_value=800),
)
def test_chunk_spans_are_exact_bounded_ordered_and_disjoint(text: str, max_chars: int) -> None:
    spans = chunk_spans(text, max_chars, min_chars=1)
    previous_end = 0
    for start, end in spans:
        assert previous_end <= start < end <= len(text)
        assert end - start <= max_chars
        assert not text[start].isspace() and not text[end - 1].isspace()
        previous_end = end
    # Every non-space character lands in some chunk: nothing is silently lost.
    covered = set().union(*(range(s, e) for s, e in spans)) if spans else set()
    assert all(i in covered for i, ch in enumerate(text) if not ch.isspace())


# --- registry ------------------------------------------------------------------------------------------


def test_registry_covers_every_kind_and_builds_llm_executors(engine: Engine) -> None:
    assert set(EXECUTOR_CLASSES) == set(TaskKind)
    executors = build_executors(sorted(LLM_KINDS | {TaskKind.CURATE}), ExecutorDeps(engine=engine))
    for kind, executor in executors.items():
        assert executor.kind == kind
    with pytest.raises(RegistryError, match="needs an LLM engine"):
        build_executor(TaskKind.SYNTHESIZE, ExecutorDeps())


def test_registry_reports_an_unimportable_executor(monkeypatch: pytest.MonkeyPatch) -> None:
    import node.executors as registry

    monkeypatch.setitem(registry.EXECUTOR_CLASSES, TaskKind.SEARCH, "node.executors.no_such_module:X")
    with pytest.raises(RegistryError, match="search"):
        build_executor(TaskKind.SEARCH, ExecutorDeps())


def test_registry_names_the_search_and_retrieve_classes() -> None:
    assert EXECUTOR_CLASSES[TaskKind.SEARCH] == "node.executors.search:SearchExecutor"
    assert EXECUTOR_CLASSES[TaskKind.RETRIEVE] == "node.executors.retrieve:RetrieveExecutor"
    for kind in (TaskKind.SEARCH, TaskKind.RETRIEVE):
        module = EXECUTOR_CLASSES[kind].split(":")[0].replace(".", "/") + ".py"
        if (Path(__file__).parents[2] / module).exists():
            from node.executors import executor_class

            assert executor_class(kind).__name__ == EXECUTOR_CLASSES[kind].split(":")[1]


async def test_validator_rescored_under_the_tasks_own_prompt_catches_an_output_for_another_prompt(
    engine: Engine, synth_results: list[tuple[SynthesizePayload, ExecutionResult]]
) -> None:
    # A cheater answers task A with the output it generated for task B, and reports task B's prompt
    # (under which that output scores well). The validator renders task A's prompt itself.
    validator = ValidateExecutor(engine)
    sha = engine.model().sha256
    (task_a, result_a), (_, result_b) = synth_results[0], synth_results[1]
    honest = await validator.execute(
        ValidatePayload(model_sha256=sha, prompt=result_a.prompt, candidate=result_a.raw_text, task=task_a), None, sha
    )
    cheat = await validator.execute(
        ValidatePayload(model_sha256=sha, prompt=result_b.prompt, candidate=result_b.raw_text, task=task_a), None, sha
    )
    trusting = await validator.execute(
        ValidatePayload(model_sha256=sha, prompt=result_b.prompt, candidate=result_b.raw_text), None, sha
    )
    assert isinstance(honest.output, ValidateOutput) and isinstance(cheat.output, ValidateOutput)
    assert isinstance(trusting.output, ValidateOutput)
    assert honest.output.prompt_matches is True
    assert cheat.output.prompt_matches is False
    # Scored under the true prompt the foreign output looks foreign; under its own prompt it looked fine.
    assert cheat.output.mean_logprob < trusting.output.mean_logprob
