"""The rule-based request parser and the task plan."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coordinator.pipeline.sizing import OVERGENERATION, plan
from coordinator.request import MAX_REQUEST_CHARS, ParsedRequest, RequestError, parse_request
from coordinator.spec import DEFAULT_ROWS, MAX_ROWS, DatasetSpec, FieldSource, FieldType
from protocol.tasks import TaskKind


def fields(p: ParsedRequest) -> list[str]:
    return p.spec.field_names


@pytest.mark.parametrize(
    ("request_text", "rows", "names", "grounded", "topic", "language"),
    [
        ("300 question-answer pairs about Python's standard library, grounded in the docs, "
         "JSON with question, answer, source_url",
         300, ["question", "answer", "source_url"], True, "Python's standard library", "en"),
        ("2,000 grounded question–answer pairs about rare lung diseases, JSON with question, answer, source_url",
         2000, ["question", "answer", "source_url"], True, "rare lung diseases", "en"),
        ("twenty trivia questions on ancient Rome", 20, ["question", "answer"], False, "ancient Rome", "en"),
        ("Generate 1.5k instruction/response pairs for fine-tuning a coding assistant",
         1500, ["instruction", "response"], False, "instruction/response pairs", "en"),
        ("I need a dataset of movie reviews with columns: review (max 400 chars), "
         "sentiment (positive|negative|neutral), rating (1-5)",
         DEFAULT_ROWS, ["review", "sentiment", "rating"], False, "movie reviews", "en"),
        ("200 paires question-réponse sur la cuisine française, avec des sources",
         200, ["question", "answer", "source_url"], True, "la cuisine française", "fr"),
        ("日本の歴史についての質問と回答を50件", 50, ["question", "answer"], False, None, "ja"),
        ("a dozen riddles about the sea, without sources", 12, ["question", "answer"], False, "the sea", "en"),
        ("Make 2.000 examples about German grammar in German, fields: sentence, is_correct (boolean), explanation",
         2000, ["sentence", "is_correct", "explanation"], False, "German grammar", "de"),
        ("questions about Python 3.11 features", DEFAULT_ROWS, ["question", "answer"], False,
         "Python 3.11 features", "en"),
        ("rows: 42, topic astronomy", 42, ["question", "answer"], False, "astronomy", "en"),
        ('30 examples like {"question": "What is 2+2?", "answer": "4"} about arithmetic',
         30, ["question", "answer"], False, "arithmetic", "en"),
        ("100 samples each with a title, a summary and a category about climate news, licensed under CC BY-SA 4.0",
         100, ["title", "summary", "category"], False, "climate news", "en"),
        ("5000 rows on EU tax law citing sources, CSV with question, answer, evidence, source URL",
         5000, ["question", "answer", "evidence", "source_url"], True, "EU tax law", "en"),
        ("one hundred and fifty haiku-style poems about autumn", 150, ["question", "answer"], False, "autumn", "en"),
    ],
)  # fmt: skip
def test_varied_requests(
    request_text: str, rows: int, names: list[str], grounded: bool, topic: str | None, language: str
) -> None:
    parsed = parse_request(request_text)
    spec = parsed.spec
    assert spec.rows == rows
    assert fields(parsed) == names
    assert spec.grounded is grounded
    if topic is not None:
        assert spec.topic == topic
    assert spec.language == language
    assert DatasetSpec.model_validate(spec.model_dump()) == spec  # a valid spec, end to end


def test_inferred_field_details() -> None:
    movie = parse_request(
        "reviews with columns: review (max 400 chars), sentiment (positive|negative|neutral), rating (1-5)"
    ).spec
    assert movie.field("review").max_length == 400
    assert movie.field("sentiment").type is FieldType.ENUM
    assert movie.field("sentiment").choices == ["positive", "negative", "neutral"]
    rating = movie.field("rating")
    assert (rating.type, rating.minimum, rating.maximum) == (FieldType.INTEGER, 1, 5)
    grammar = parse_request("German sentences with fields: sentence, is_correct (boolean)").spec
    assert grammar.field("is_correct").type is FieldType.BOOLEAN
    grounded = parse_request("50 rows about tax law citing sources, JSON with question, answer, evidence, url").spec
    assert grounded.field("evidence").source is FieldSource.EVIDENCE
    assert grounded.field("source_url").source is FieldSource.SOURCE_URL  # "url" is read as source_url
    lic = parse_request("100 samples about climate news, licensed under CC BY-SA 4.0")
    assert lic.spec.license == "cc-by-sa-4.0" and "license" in lic.explicit
    example = parse_request('30 examples like {"question": "What is 2+2?", "answer": "4"} about arithmetic').spec
    assert example.seed_examples == [{"question": "What is 2+2?", "answer": "4"}]


def test_defaults_are_noted() -> None:
    parsed = parse_request("some questions")
    assert parsed.spec.rows == DEFAULT_ROWS
    assert parsed.spec.license == "cc-by-4.0"
    assert any(n.startswith("rows: the request names no count") for n in parsed.notes)
    assert any(n.startswith("fields: none named") for n in parsed.notes)
    assert parsed.explicit == frozenset()


def test_source_url_field_implies_grounding() -> None:
    parsed = parse_request("100 rows about volcanoes, JSON with question, answer, source_url")
    assert parsed.spec.grounded and parsed.spec.field("source_url").derived
    ungrounded = parse_request("100 rows about volcanoes, no sources, JSON with question, answer, source_url")
    assert not ungrounded.spec.grounded
    assert ungrounded.spec.field("source_url").source is FieldSource.GENERATED


def test_grounded_without_listed_url_gets_one() -> None:
    parsed = parse_request("100 grounded questions about volcanoes")
    assert parsed.spec.field_names == ["question", "answer", "source_url"]
    assert any("source_url column" in n for n in parsed.notes)


def test_cli_rows_override_the_text() -> None:
    assert parse_request("300 rows about cats", rows=7).spec.rows == 7
    with pytest.raises(RequestError, match="between 1 and"):
        parse_request("cats", rows=0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the request is empty"),
        ("   \n\t ", "the request is empty"),
        ("%%%% ### !!! 123", "no words in it"),
        ("-5 rows about cats", r"row count must be at least 1 \(the request says '-5'\)"),
        ("0 examples about dogs", "row count must be at least 1"),
        ("x" * 10_240, "10240 characters, over the 4000 limit"),
    ],
)
def test_truly_invalid_requests_get_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(RequestError, match=message):
        parse_request(text)


def test_huge_counts_are_capped_with_a_note() -> None:
    for text in (
        "10^12 rows about everything",
        "1e9 examples about everything",
        "5 billion rows about stars",
        "99999^9999 rows about overflow",
        "1" + "0" * 400 + " rows about long numbers",
    ):
        parsed = parse_request(text)
        assert parsed.spec.rows == MAX_ROWS, text
        assert any("capped" in n for n in parsed.notes), text


def test_odd_unicode_and_control_characters() -> None:
    for text in (
        "３００ questions about 猫 🐈",  # full-width digits, CJK, emoji
        "questions\x00about\x1b[31m terminals\x7f",  # NUL and an ANSI escape
        "שאלות על היסטוריה",  # right-to-left
        "\u202e200 rows about tricks",  # bidi override
        "Ω" * 3999,
    ):
        spec = parse_request(text).spec
        assert 1 <= spec.rows <= MAX_ROWS
        assert "\x00" not in spec.topic and "\x1b" not in spec.description
    assert parse_request("３００ questions about 猫 🐈").spec.rows == 300
    assert parse_request("שאלות על היסטוריה").spec.language == "he"


def test_random_garbage_of_many_shapes() -> None:
    rng = random.Random(7)
    alphabet = "abcxyz ,.;:()[]{}|/-–—&+'\"0123456789^eEkm\n\tÉß日本🐍\u200b"
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 400)))
        try:
            spec = parse_request(text).spec
        except RequestError as exc:
            assert str(exc)
            continue
        assert DatasetSpec.model_validate(spec.model_dump()) == spec


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=600))
def test_any_text_yields_a_valid_spec_or_a_request_error(text: str) -> None:
    try:
        parsed = parse_request(text)
    except RequestError as exc:
        assert str(exc)
        return
    spec = parsed.spec
    assert DatasetSpec.model_validate(spec.model_dump(mode="json")) == spec
    schema = spec.row_json_schema()
    assert all("maxLength" in p or p.get("type") != "string" or "enum" in p for p in schema["properties"].values())


def test_max_request_length_is_accepted() -> None:
    assert parse_request("cats " * (MAX_REQUEST_CHARS // 5)).spec.rows == DEFAULT_ROWS


# --- plan ----------------------------------------------------------------------------------------


def test_plan_for_a_grounded_spec_has_every_stage() -> None:
    spec = parse_request("300 grounded question-answer pairs about Python's standard library").spec
    p = plan(spec)
    kinds = [s.kind for s in p.stages]
    assert kinds == [TaskKind.QUESTION_GEN, TaskKind.SEARCH, TaskKind.RETRIEVE, TaskKind.CURATE,
                     TaskKind.SYNTHESIZE, TaskKind.VALIDATE]  # fmt: skip
    assert p.rows_to_generate == math.ceil(300 * OVERGENERATION)
    assert p.tasks(TaskKind.SYNTHESIZE) == 450
    assert all(s.executions >= s.tasks for s in p.stages)
    assert p.total_tasks == sum(s.tasks for s in p.stages)
    text = p.render()
    assert "synthesize" in text and "total" in text


def test_plan_for_an_ungrounded_spec_skips_retrieval_and_grows_with_rows() -> None:
    small = plan(parse_request("100 jokes about cats").spec)
    big = plan(parse_request("10,000 jokes about cats").spec)
    assert TaskKind.SEARCH not in [s.kind for s in small.stages]
    assert big.tasks(TaskKind.SYNTHESIZE) == 100 * small.tasks(TaskKind.SYNTHESIZE)
    assert big.total_executions > small.total_executions
