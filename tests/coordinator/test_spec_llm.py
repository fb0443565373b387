"""The LLM path's merge: a spec task's draft over the rule-based reading (good drafts and garbage).

The prompt and grammar are the node's (tests/node/test_executor_spec.py runs them on the real model)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from coordinator.request import merge_llm_spec, parse_request
from coordinator.spec import DatasetSpec, FieldSource, FieldType

REQUEST = "300 question-answer pairs about Python's standard library, grounded in the docs"


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
    llm = {**GOOD, "rows": 300, "topic": "dogs", "language": "fr", "grounded": False}
    merged = merge_llm_spec(llm, rule)
    assert merged.spec.rows == 300
    assert merged.spec.topic == "cats"
    assert merged.spec.field_names == ["question", "answer"]  # names and order from the request...
    assert merged.spec.field("answer").description == "A precise answer"  # ...detail from the LLM
    assert merged.spec.language == "fr"  # the rules only defaulted the language
    assert any("`topic` = 'dogs' differs from the request's 'cats'" in n for n in merged.notes)


@pytest.mark.parametrize(
    ("request_text", "draft", "misread"),
    [
        ("300 rows about cats, JSON with question, answer", {"rows": 3000}, "rows 3000 (the request says 300)"),
        ("300 grounded rows about cats with question, answer", {"rows": 300, "grounded": False}, "grounded False"),
        ("300 rows about cats in German, JSON with question, answer", {"rows": 300, "language": "en"}, "language 'en'"),
        ("300 rows about cats, JSON with question, answer", {"rows": 300, "fields": GOOD["fields"][2:]},
         "no field question, answer (the request names it)"),
        ("300 rows about cats, JSON with question, answer", {"rows": "300"}, "rows '300'"),
    ],
)  # fmt: skip
def test_a_draft_that_misreads_the_request_is_dropped_whole(
    request_text: str, draft: dict[str, Any], misread: str
) -> None:
    rule = parse_request(request_text)
    merged = merge_llm_spec({**GOOD, "grounded": rule.spec.grounded, **draft}, rule)
    assert merged.spec == rule.spec
    assert "llm: the draft misreads the request" in merged.notes[-1] and misread in merged.notes[-1]


def test_a_row_count_given_apart_from_the_text_is_not_held_against_the_draft() -> None:
    text = "rows about cats, JSON with question, answer"
    merged = merge_llm_spec({**GOOD, "grounded": False}, parse_request(text, rows=40), said=parse_request(text))
    assert merged.spec.rows == 40 and merged.spec.field("answer").description == "A precise answer"


def test_question_answer_pairs_name_the_columns() -> None:
    merged = merge_llm_spec(json.dumps(GOOD), parse_request(REQUEST))
    assert merged.spec.field_names == ["question", "answer", "source_url"]
    assert merged.spec.field("answer").max_length == 800  # detail from the LLM for a named column


def test_llm_grounding_applies_when_the_request_is_silent() -> None:
    merged = merge_llm_spec(GOOD, parse_request("300 rows about cats, JSON with question, answer"))
    assert merged.spec.grounded and merged.spec.field_names == ["question", "answer", "source_url"]


def test_llm_fills_the_topic_but_never_invents_a_row_count() -> None:
    rule = parse_request("Generate some stuff for my chatbot")
    merged = merge_llm_spec({**GOOD, "rows": 120, "topic": "chatbot small talk", "grounded": False}, rule)
    assert merged.spec.rows == rule.spec.rows == 100  # the request names no count: the default stands
    assert any("`rows` = 120 ignored: the request names no count" in n for n in merged.notes)
    assert merged.spec.topic == "chatbot small talk"
    assert "source_url" not in merged.spec.field_names


def test_field_names_that_ignore_the_naming_rule_are_left_out() -> None:
    # What SmolLM2-135M drafted for "trivia questions about volcanoes with difficulty levels".
    draft = {**GOOD, "grounded": False, "fields": [
        {"name": "difficultyLevels", "type": "enum", "description": "d", "max_length": 25, "choices": ["medium"]},
        {"name": "levelOfEruptionType1", "type": "string", "description": "t", "max_length": 30, "choices": []},
    ]}  # fmt: skip
    rule = parse_request("Write some trivia questions about volcanoes")
    merged = merge_llm_spec(draft, rule)
    assert merged.spec.field_names == rule.spec.field_names
    assert sum("is not lower_snake_case" in n for n in merged.notes) == 2


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
    assert spec.field_names == ["stars"]  # "Answer Text" is not lower_snake_case
    assert spec.field("stars").type is FieldType.INTEGER
    notes = "\n".join(merged.notes)
    assert "`topic`" in notes and "`rows` = '-3' is invalid" in notes and "`grounded`" in notes
    assert "fields[0] (question) is invalid (max_length must be in [1, 2000] (got 50000))" in notes
    assert "fields[2] (mood) is invalid" in notes and "fields[3] (score) is invalid" in notes
    assert "fields[4] has no name" in notes and "fields[1] name 'Answer Text' is not lower_snake_case" in notes


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
