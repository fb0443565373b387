"""The LLM path: the prompt and schema we send, and merging what comes back (good and garbage)."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from coordinator.planner import (
    LLM_SPEC_MAX_TOKENS,
    RequestError,
    build_spec_prompt,
    merge_llm_spec,
    parse_request,
    spec_llm_schema,
)
from coordinator.spec import DatasetSpec, FieldSource, FieldType

REQUEST = "300 question-answer pairs about Python's standard library, grounded in the docs"


def _walk(schema: dict[str, Any]) -> list[dict[str, Any]]:
    out = [schema]
    for sub in schema.get("properties", {}).values():
        out += _walk(sub)
    if "items" in schema:
        out += _walk(schema["items"])
    return out


def test_prompt_carries_the_request_and_a_bounded_schema() -> None:
    prompt = build_spec_prompt(REQUEST)
    assert prompt.messages[0]["role"] == "system"
    assert prompt.messages[-1] == {"role": "user", "content": REQUEST}
    # The worked example in the prompt is itself valid against the schema.
    jsonschema.validate(json.loads(prompt.messages[2]["content"]), prompt.json_schema)
    jsonschema.Draft202012Validator.check_schema(prompt.json_schema)
    for node in _walk(prompt.json_schema):
        if node.get("type") == "string" and "enum" not in node:
            assert "maxLength" in node, node
        if node.get("type") == "array":
            assert "maxItems" in node, node
        if node.get("type") == "object":
            assert node["additionalProperties"] is False
    assert prompt.max_tokens == LLM_SPEC_MAX_TOKENS <= 8192
    assert prompt.json_schema == spec_llm_schema()


def test_prompt_refuses_empty_and_oversized_requests() -> None:
    with pytest.raises(RequestError):
        build_spec_prompt("  ")
    with pytest.raises(RequestError, match="over the 4000 limit"):
        build_spec_prompt("x" * 5000)


GOOD = {
    "topic": "the Python standard library",
    "rows": 300,
    "grounded": True,
    "language": "en",
    "fields": [
        {"name": "question", "type": "string", "description": "A question about one stdlib module",
         "max_length": 250, "choices": []},
        {"name": "answer", "type": "string", "description": "A precise answer", "max_length": 800, "choices": []},
        {"name": "module", "type": "string", "description": "The module it is about", "max_length": 40,
         "choices": []},
        {"name": "difficulty", "type": "enum", "description": "How hard", "max_length": 10,
         "choices": ["easy", "medium", "hard"]},
    ],
}  # fmt: skip


def test_good_llm_output_fills_what_the_rules_defaulted() -> None:
    rule = parse_request("300 flashcards about Python's standard library, grounded in the docs")
    merged = merge_llm_spec(json.dumps(GOOD), rule)
    spec = merged.spec
    # The request named no columns, so the LLM's fields are used, and grounding adds source_url.
    assert spec.field_names == ["question", "answer", "module", "difficulty", "source_url"]
    assert spec.field("question").max_length == 250
    assert spec.field("question").description == "A question about one stdlib module"
    assert spec.field("difficulty").type is FieldType.ENUM
    assert spec.field("source_url").source is FieldSource.SOURCE_URL
    # The rules read the topic explicitly ("about ..."), so it stays; rows agree anyway.
    assert spec.topic == "Python's standard library" and spec.rows == 300 and spec.grounded


def test_explicit_request_values_beat_the_llm() -> None:
    rule = parse_request("300 rows about cats, JSON with question, answer")
    llm = {**GOOD, "rows": 3000, "topic": "dogs", "language": "fr", "grounded": False}
    merged = merge_llm_spec(llm, rule)
    assert merged.spec.rows == 300
    assert merged.spec.topic == "cats"
    assert merged.spec.field_names == ["question", "answer"]  # names and order from the request...
    assert merged.spec.field("answer").description == "A precise answer"  # ...detail from the LLM
    assert merged.spec.language == "fr"  # the rules only defaulted the language
    assert any("`rows` = 3000 differs from the request's 300" in n for n in merged.notes)


def test_question_answer_pairs_name_the_columns() -> None:
    merged = merge_llm_spec(json.dumps(GOOD), parse_request(REQUEST))
    assert merged.spec.field_names == ["question", "answer", "source_url"]
    assert merged.spec.field("answer").max_length == 800  # detail from the LLM for a named column


def test_llm_grounding_applies_when_the_request_is_silent() -> None:
    merged = merge_llm_spec(GOOD, parse_request("300 rows about cats, JSON with question, answer"))
    assert merged.spec.grounded and merged.spec.field_names == ["question", "answer", "source_url"]


def test_llm_fills_rows_and_topic_when_the_request_has_neither() -> None:
    rule = parse_request("Generate some stuff for my chatbot")
    merged = merge_llm_spec({**GOOD, "rows": 120, "topic": "chatbot small talk", "grounded": False}, rule)
    assert merged.spec.rows == 120
    assert merged.spec.topic == "chatbot small talk"
    assert "source_url" not in merged.spec.field_names


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "I think the spec should be about cats!",
        "[1, 2, 3]",
        '{"topic": ',
        "\x00\xff" * 100,
        "{" * 5000,
        "x" * 100_000,
        json.dumps({"unexpected": True}),
    ],
)
def test_garbage_falls_back_to_the_rule_based_spec(garbage: str) -> None:
    rule = parse_request(REQUEST)
    merged = merge_llm_spec(garbage, rule)
    assert merged.spec == rule.spec
    assert any(n.startswith("llm:") for n in merged.notes)


def test_invalid_values_fall_back_one_by_one() -> None:
    rule = parse_request("cats and dogs")  # nothing explicit: every key is open to the LLM
    llm = {
        "topic": "   ",
        "rows": -3,
        "grounded": "yes",
        "language": "English",
        "fields": [
            {"name": "question", "type": "string", "description": "Q", "max_length": 50000, "choices": []},
            {"name": "Answer Text", "type": "string", "description": "A", "max_length": 400, "choices": []},
            {"name": "mood", "type": "enum", "description": "no choices given", "max_length": 5, "choices": []},
            {"name": "score", "type": "decimal", "description": "bad type", "max_length": 5, "choices": []},
            "not an object",
            {"name": "stars", "type": "integer", "description": "1 to 5", "max_length": 1, "choices": []},
        ],
    }
    merged = merge_llm_spec(llm, rule)
    spec = merged.spec
    assert spec.topic == rule.spec.topic and spec.rows == rule.spec.rows and spec.grounded is False
    assert spec.language == "en"  # "English" is mapped to its code
    assert spec.field_names == ["answer_text", "stars"]
    assert spec.field("stars").type is FieldType.INTEGER
    notes = "\n".join(merged.notes)
    assert "`topic`" in notes and "`rows` = '-3' is invalid" in notes and "`grounded`" in notes
    assert "fields[0] (question) is invalid (max_length must be in [1, 2000] (got 50000))" in notes
    assert "fields[2] (mood) is invalid" in notes and "fields[3] (score) is invalid" in notes
    assert "fields[4] has no name" in notes


def test_llm_fields_all_invalid_keep_the_rule_fields() -> None:
    rule = parse_request("cats")
    merged = merge_llm_spec({**GOOD, "grounded": False, "fields": [{"name": "1bad"}, {"name": ""}]}, rule)
    assert merged.spec.field_names == rule.spec.field_names
    assert any("no usable generated field" in n for n in merged.notes)


def test_code_fences_and_chatter_around_json_are_tolerated() -> None:
    rule = parse_request("cats")
    wrapped = "Sure! Here is the spec:\n```json\n" + json.dumps({**GOOD, "grounded": False}) + "\n```"
    merged = merge_llm_spec(wrapped, rule)
    assert merged.spec.field_names == ["question", "answer", "module", "difficulty"]


def test_merged_specs_that_overflow_are_scaled_to_fit() -> None:
    rule = parse_request("cats")
    wide = {**GOOD, "grounded": False, "fields": [
        {"name": f"f{i}", "type": "string", "description": "", "max_length": 2000, "choices": []} for i in range(8)
    ]}  # fmt: skip
    spec = merge_llm_spec(wide, rule).spec
    assert sum(f.max_length for f in spec.fields) <= 8000
    assert DatasetSpec.model_validate(spec.model_dump()) == spec
