"""DatasetSpec: validation, the row schema nodes get, row checks, and spec files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import ValidationError

from coordinator.spec import (
    MAX_FIELD_CHARS,
    MAX_ROW_CHARS,
    MAX_SPEC_FILE_BYTES,
    DatasetSpec,
    FieldSource,
    FieldSpec,
    FieldType,
    SpecError,
    dump_spec,
    load_spec_file,
    parse_spec_text,
)

GOOD_YAML = """\
topic: Python's standard library
rows: 300
grounded: true
language: en
license: cc-by-4.0
fields:
  - name: question
    description: A question a Python user might ask
    max_length: 300
  - name: answer
    max_length: 1000
  - name: difficulty
    type: enum
    choices: [easy, medium, hard]
  - name: stars
    type: integer
    minimum: 1
    maximum: 5
  - name: confidence
    type: number
    minimum: 0
    maximum: 1
  - name: runnable
    type: boolean
  - name: source_url
    source: source_url
seed_examples:
  - question: What does functools.lru_cache do?
    answer: It memoizes a function's results.
    difficulty: easy
    stars: 4
    confidence: 0.9
    runnable: true
"""


def qa_spec(**kw: Any) -> DatasetSpec:
    return DatasetSpec(topic="cats", fields=[FieldSpec(name="question"), FieldSpec(name="answer")], **kw)


def test_yaml_and_json_files_load_the_same_spec(tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text(GOOD_YAML)
    spec = load_spec_file(tmp_path / "spec.yaml")
    assert spec.rows == 300 and spec.grounded and spec.field_names[-1] == "source_url"
    assert spec.field("difficulty").choices == ["easy", "medium", "hard"]
    assert spec.field("source_url").derived
    (tmp_path / "spec.json").write_text(json.dumps(spec.model_dump(mode="json")))
    assert load_spec_file(tmp_path / "spec.json") == spec
    # dump_spec writes what load_spec_file reads.
    (tmp_path / "again.yml").write_text(dump_spec(spec))
    assert load_spec_file(tmp_path / "again.yml") == spec


def _error(text: str, fmt: str = "yaml") -> str:
    with pytest.raises(SpecError) as info:
        parse_spec_text(text, fmt=fmt, origin="spec.yaml")  # type: ignore[arg-type]
    return str(info.value)


def test_error_names_field_bound_and_fix() -> None:
    text = GOOD_YAML.replace("    max_length: 1000", "    max_length: 50000")
    assert "spec.yaml: fields[1].max_length: must be ≤ 2000 (got 50000): lower it" in _error(text)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("rows: 300", "rows: 0"), "rows: must be ≥ 1 (got 0): raise it"),
        (("rows: 300", "rows: 1000000"), "rows: must be ≤ 100000 (got 1000000): lower it"),
        (("topic: Python's standard library\n", ""), "topic: is required: add it"),
        (("language: en", "language: English"), "language: 'English' must match"),
        (("language: en", "language: English"), "use an ISO 639-1 code"),
        (("license: cc-by-4.0", "license: CC BY 4.0"), "use a Hugging Face license id"),
        (("  - name: answer", "  - name: The Answer"), "fields[1].name: 'The Answer' must match"),
        (("    type: enum\n    choices: [easy, medium, hard]", "    type: enum"),
         "fields[2]: an enum needs at least 2 choices: list them under `choices`"),
        (("    type: boolean", "    type: bool"), "fields[5].type: 'bool' is not allowed: use one of"),
        (("grounded: true", "grounded: false"),
         "fields ['source_url'] are filled from sources, but grounded is false: set grounded: true"),
        (("rows: 300", "rows: 300\ncolour: blue"), "colour: is not a spec key: remove it"),
        (("    minimum: 1\n    maximum: 5", "    minimum: 5\n    maximum: 1"),
         "fields[3]: minimum (5) is above maximum (1): swap them"),
        (("    stars: 4", "    stars: 9"), "seed_examples[0]: stars: 9 is above the maximum 5"),
        (("  - name: runnable", "  - name: answer"), "field names repeat: ['answer']"),
    ],
)  # fmt: skip
def test_each_mistake_gets_a_message_naming_it(change: tuple[str, str], expected: str) -> None:
    old, new = change
    assert old in GOOD_YAML
    assert expected in _error(GOOD_YAML.replace(old, new, 1))


def test_all_problems_are_listed_not_just_the_first() -> None:
    message = _error(GOOD_YAML.replace("rows: 300", "rows: -1").replace("language: en", "language: x1"))
    assert "rows:" in message and "language:" in message


def test_syntax_errors_give_a_position() -> None:
    assert "not valid YAML at line 3, column 3" in _error("topic: x\nfields: [\n  - oops: : :")
    assert "not valid JSON at line 1, column" in _error('{"topic": ', fmt="json")
    assert "must be a mapping" in _error("- just\n- a list\n")


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read the spec file"):
        load_spec_file(tmp_path / "missing.yaml")
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (MAX_SPEC_FILE_BYTES + 1))
    with pytest.raises(SpecError, match="over the 1000000 byte limit"):
        load_spec_file(big)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("topic: caf\xe9".encode("latin-1"))
    with pytest.raises(SpecError, match="not UTF-8"):
        load_spec_file(latin)


def test_row_schema_is_bounded_and_leaves_out_derived_fields(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(GOOD_YAML)
    spec = load_spec_file(tmp_path / "s.yaml")
    schema = spec.row_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    props = schema["properties"]
    assert "source_url" not in props and schema["required"] == list(props)
    assert schema["additionalProperties"] is False
    for name, prop in props.items():
        if prop["type"] == "string":
            assert "maxLength" in prop or "enum" in prop, name
    assert props["stars"] == {"type": "integer", "minimum": 1, "maximum": 5}
    assert props["difficulty"]["enum"] == ["easy", "medium", "hard"]
    full = spec.row_json_schema(include_derived=True)
    assert full["properties"]["source_url"]["maxLength"] == MAX_FIELD_CHARS
    example = {**spec.seed_examples[0], "source_url": "http://127.0.0.1/x"}
    jsonschema.validate(example, full)
    assert spec.validate_row(example) == []


def test_validate_row_names_each_field() -> None:
    spec = DatasetSpec(
        topic="t",
        grounded=True,
        fields=[
            FieldSpec(name="question", min_length=5, max_length=20),
            FieldSpec(name="n", type=FieldType.INTEGER, minimum=0),
            FieldSpec(name="x", type=FieldType.NUMBER),
            FieldSpec(name="ok", type=FieldType.BOOLEAN),
            FieldSpec(name="level", type=FieldType.ENUM, choices=["a", "b"]),
            FieldSpec(name="source_url", source=FieldSource.SOURCE_URL),
        ],
    )
    issues = {i.field: i.message for i in spec.validate_row(
        {"question": "hi", "n": True, "x": float("inf"), "ok": 1, "level": "c", "bonus": 1}
    )}  # fmt: skip
    assert issues == {
        "question": "length 2 is outside [5, 20]",
        "n": "must be an integer, got bool",
        "x": "must be finite, got inf",
        "ok": "must be a boolean, got int",
        "level": "'c' is not one of ['a', 'b']",
        "source_url": "missing",
        "bonus": "not a field of the spec",
    }
    assert [str(i) for i in spec.validate_row([1])] == ["a row must be an object, got list"]
    assert spec.validate_row({"question": "hello", "n": -1, "x": 1, "ok": True, "level": "a"},
                             include_derived=False)[0].message == "-1 is below the minimum 0"  # fmt: skip


def test_spec_invariants() -> None:
    with pytest.raises(ValidationError, match="no field is generated"):
        DatasetSpec(topic="t", grounded=True, fields=[FieldSpec(name="source_url", source=FieldSource.SOURCE_URL)])
    n = MAX_ROW_CHARS // MAX_FIELD_CHARS + 1
    too_long = [FieldSpec(name=f"f{i}", max_length=MAX_FIELD_CHARS) for i in range(n)]
    with pytest.raises(ValidationError, match="add up to 10000, over 8000: lower some"):
        DatasetSpec(topic="t", fields=too_long)
    with pytest.raises(ValidationError, match="topic is blank"):
        qa_spec().model_validate({**qa_spec().model_dump(), "topic": "   "})
    with pytest.raises(ValidationError, match="must have type string"):
        FieldSpec(name="source_url", type=FieldType.INTEGER, source=FieldSource.SOURCE_URL)
    with pytest.raises(ValidationError, match="choices are for type enum"):
        FieldSpec(name="x", choices=["a", "b"])
    with pytest.raises(ValidationError, match="whole number"):
        FieldSpec(name="x", type=FieldType.INTEGER, maximum=2.5)
    assert DatasetSpec(topic="  many   spaces ", fields=[FieldSpec(name="text")]).topic == "many spaces"


def test_grounded_rows_are_written_stating_fields_first() -> None:
    from coordinator.pipeline.synthesize import grounded_row_schema
    from coordinator.request import parse_request
    from coordinator.spec import asks

    spec = parse_request("20 grounded rows about heapq, JSON with question, answer, module_name, source_url").spec
    schema = grounded_row_schema(spec)
    assert schema["required"] == ["answer", "module_name", "question"]  # the question comes last
    assert schema["properties"] == spec.row_json_schema()["properties"]
    assert spec.row_json_schema()["required"] == ["question", "answer", "module_name"]  # the spec's order
    assert asks("follow_up_question") and asks("Prompt") and not asks("answer")
