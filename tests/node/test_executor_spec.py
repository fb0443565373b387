"""The spec executor on the real SmolLM2 model: a request sentence -> a bounded, verifiable draft spec.

What the 135M model drafts is poor (it misreads counts and grounding, see the merge tests in
tests/coordinator/test_spec_llm.py); these tests hold what the protocol needs from any model:
a draft the schema admits, replicas that agree, a prompt a validator renders itself, and a
merge that keeps what the request said.
"""

from __future__ import annotations

import json

import jsonschema
import pytest

from coordinator.request import merge_llm_spec, parse_request
from coordinator.spec import DatasetSpec, FieldType
from node.executors import spec
from node.executors.base import ExecutionError
from node.executors.spec import SpecExecutor
from node.executors.validate import ValidateExecutor
from node.llm.engine import Engine
from node.llm.schema import compile_schema
from protocol import encoding
from protocol.tasks import (
    MAX_REQUEST_CHARS,
    SPEC_FIELD_TYPES,
    DecodingParams,
    QuestionGenPayload,
    SpecOutput,
    SpecPayload,
    ValidateOutput,
    ValidatePayload,
)

REQUEST = "2,000 grounded question-answer pairs about rare lung diseases, JSON with question, answer, source_url"
GREEDY = DecodingParams(seed=7, temperature=0.0, max_tokens=1536)


def _walk(schema: dict[str, object]) -> list[dict[str, object]]:
    out = [schema]
    for sub in schema.get("properties", {}).values():  # type: ignore[attr-defined]
        out += _walk(sub)
    if isinstance(schema.get("items"), dict):
        out += _walk(schema["items"])  # type: ignore[arg-type]
    return out


def test_schema_is_bounded_and_admits_the_worked_example() -> None:
    payload = SpecPayload(request=REQUEST)
    schema = spec.output_schema(payload)
    jsonschema.Draft202012Validator.check_schema(schema)
    for node in _walk(schema):
        if node.get("type") == "string" and "enum" not in node:
            assert "maxLength" in node, node
        if node.get("type") == "array":
            assert "maxItems" in node, node
    # Bounded enough for the grammar to end well inside the scheduler's token ceiling.
    assert compile_schema(schema).max_chars < 10_000
    example = json.loads(spec.messages(payload)[2]["content"])
    jsonschema.validate(example, schema)
    SpecOutput.model_validate(example)
    assert set(SPEC_FIELD_TYPES) == {t.value for t in FieldType}


def test_messages_carry_the_request_and_render_deterministically() -> None:
    a = spec.messages(SpecPayload(request=f"  {REQUEST}\n"))
    assert a == spec.messages(SpecPayload(request=REQUEST))
    assert [m["role"] for m in a] == ["system", "user", "assistant", "user"]
    assert a[-1]["content"] == REQUEST


def test_the_payload_refuses_empty_and_oversized_requests() -> None:
    with pytest.raises(ValueError):
        SpecPayload(request="")
    with pytest.raises(ValueError):
        SpecPayload(request="x" * (MAX_REQUEST_CHARS + 1))
    with pytest.raises(ValueError):
        SpecPayload(request="cats", max_fields=99)


async def test_draft_is_schema_valid_deterministic_and_merges_to_the_requested_spec(engine: Engine) -> None:
    executor = SpecExecutor(engine)
    first = await executor.execute(SpecPayload(request=REQUEST), GREEDY, None)
    again = await executor.execute(SpecPayload(request=REQUEST), GREEDY, None)
    assert isinstance(first.output, SpecOutput)
    assert first.raw_text == again.raw_text  # replicas on the same model and seed agree byte for byte
    assert first.stats.finish_reason == "stop"
    draft = json.loads(first.raw_text)
    jsonschema.validate(draft, spec.output_schema(SpecPayload(request=REQUEST)))
    assert first.output == SpecOutput.model_validate(draft)
    # The output survives the wire.
    wire = encoding.encode(first.output.model_dump(mode="json"))
    assert SpecOutput.model_validate(encoding.decode(wire, limit=1 << 20)) == first.output
    merged = merge_llm_spec(first.output.model_dump(mode="json", exclude={"kind"}), parse_request(REQUEST))
    assert DatasetSpec.model_validate(merged.spec.model_dump()) == merged.spec
    assert merged.spec.rows == 2000 and merged.spec.grounded  # the request said so, whatever the draft says
    assert merged.spec.field_names[:2] == ["question", "answer"] and "source_url" in merged.spec.field_names


async def test_a_validator_renders_the_spec_prompt_itself(engine: Engine) -> None:
    payload = SpecPayload(request="50 trivia questions about volcanoes, JSON with question and answer")
    result = await SpecExecutor(engine).execute(payload, GREEDY, None)
    sha = engine.model().sha256
    checked = await ValidateExecutor(engine).execute(
        ValidatePayload(model_sha256=sha, prompt=result.prompt, candidate=result.raw_text, task=payload), None, sha
    )
    assert isinstance(checked.output, ValidateOutput)
    assert checked.output.prompt_matches is True
    assert checked.output.topk_rate > 0.8  # greedy output under its own prompt: the model's own choices
    other = SpecPayload(request="500 recipes for vegan desserts with name, ingredients and steps")
    foreign = await ValidateExecutor(engine).execute(
        ValidatePayload(model_sha256=sha, prompt=result.prompt, candidate=result.raw_text, task=other), None, sha
    )
    assert isinstance(foreign.output, ValidateOutput)
    assert foreign.output.prompt_matches is False
    assert foreign.output.mean_logprob < checked.output.mean_logprob


async def test_the_executor_refuses_another_kind_of_payload(engine: Engine) -> None:
    with pytest.raises(ExecutionError, match="spec executor got a QuestionGenPayload"):
        await SpecExecutor(engine).execute(QuestionGenPayload(topic="x"), GREEDY, None)
