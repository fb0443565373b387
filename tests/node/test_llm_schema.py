"""JSON schema -> GBNF: what is enforced, what is refused, and that llama.cpp obeys the grammar."""

from __future__ import annotations

import json
from typing import Any

import pytest

from node.llm.backend import LlamaBackend, SamplingParams
from node.llm.schema import (
    DEFAULT_MAX_ITEMS,
    DEFAULT_MAX_STRING,
    OutputInvalid,
    UnsupportedSchema,
    compile_schema,
    gbnf_literal,
)

ROW: dict[str, Any] = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 40},
        "score": {"type": "integer", "minimum": 1, "maximum": 5},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 3},
        "kind": {"enum": ['a "quoted" one', "back\\slash", "new\nline"]},
        "ok": {"type": "boolean"},
        "ratio": {"type": "number"},
    },
    "required": ["title", "score"],
}


def test_bounds_are_emitted_and_defaults_added() -> None:
    gbnf = compile_schema(ROW).gbnf
    assert "char{0,39}" in gbnf  # maxLength 40: a non-space lead character + up to 39 more
    assert '"1" | "2" | "3" | "4" | "5"' in gbnf
    assert "{0,2}" in gbnf  # maxItems 3: first item + up to 2 more
    unbounded = compile_schema(
        {
            "type": "object",
            "properties": {"s": {"type": "string"}, "a": {"type": "array", "items": {"type": "integer"}}},
        }
    ).gbnf
    assert f"char{{0,{DEFAULT_MAX_STRING - 1}}}" in unbounded
    assert f"{{0,{DEFAULT_MAX_ITEMS - 1}}}" in unbounded


def test_control_characters_are_excluded_from_strings() -> None:
    gbnf = compile_schema(ROW).gbnf
    assert r'char ::= [^"\\\x7F\x00-\x1F]' in gbnf


def test_literals_are_escaped_twice_json_then_gbnf() -> None:
    gbnf = compile_schema(ROW).gbnf
    # JSON text "a \"quoted\" one" as a GBNF literal.
    assert gbnf_literal(json.dumps('a "quoted" one')) in gbnf
    assert gbnf_literal(json.dumps("new\nline")) == r'"\"new\\nline\""'


def test_max_chars_bounds_the_longest_output() -> None:
    small = compile_schema({"type": "object", "properties": {"s": {"type": "string", "maxLength": 10}}})
    longest = json.dumps({"s": "\\" * 10})  # every character escaped: the worst case
    assert len(longest) <= small.max_chars


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"type": "object", "properties": {"s": {"type": "string"}}, "allOf": [{"type": "object"}]}, "'allOf'"),
        ({"type": "object", "properties": {"r": {"$ref": "#/x"}}}, r"'\$ref'"),
        ({"type": "object"}, "declared properties"),
        ({"type": "object", "properties": {"x": {}}}, "cannot be bounded"),
        ({"type": "object", "properties": {"a": {"type": "array"}}}, "items schema"),
        ({"type": "object", "properties": {"s": {"type": "string", "minLength": 5, "maxLength": 2}}}, "maxLength"),
        ({"type": "object", "properties": {"x": {"type": "strin"}}}, "not a valid JSON schema"),
        ({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["b"]}, "undeclared"),
        ({"type": "object", "properties": {"o": {"type": "object", "additionalProperties": {}}}}, "additional"),
    ],
)
def test_unconvertible_schemas_raise_instead_of_falling_back(schema: dict[str, Any], message: str) -> None:
    with pytest.raises(UnsupportedSchema, match=message):
        compile_schema(schema)


def test_post_validation_uses_the_schema_as_given() -> None:
    compiled = compile_schema(
        {"type": "object", "properties": {"code": {"type": "string", "pattern": "^[A-Z]{3}$", "maxLength": 3}}}
    )
    assert compiled.parse('{"code":"ABC"}') == {"code": "ABC"}
    with pytest.raises(OutputInvalid, match="does not match"):
        compiled.parse('{"code":"abc"}')
    with pytest.raises(OutputInvalid, match="not valid JSON"):
        compiled.parse('{"code":"A\nB"}')  # a raw newline inside a string: strict JSON refuses it


def test_prefix_items_make_fixed_length_tuples() -> None:
    compiled = compile_schema(
        {
            "type": "object",
            "properties": {
                "pair": {"type": "array", "prefixItems": [{"const": 1}, {"const": "b"}], "items": False, "minItems": 2}
            },
        }
    )
    assert '"[" ws r1 ws "," ws r2 ws "]"' in compiled.gbnf
    assert compiled.parse('{"pair":[1,"b"]}') == {"pair": [1, "b"]}
    # Extra items after the prefix would need a second, open-ended grammar: refused.
    extra = {"type": "array", "prefixItems": [{"const": 1}], "items": {"type": "integer"}}
    with pytest.raises(UnsupportedSchema, match="fixed-length"):
        compile_schema({"type": "object", "properties": {"p": extra}})


def test_llama_cpp_accepts_the_grammar_and_output_is_strict_json(backend: LlamaBackend) -> None:
    """Generated under the grammar at temperature 1.2 (to make mischief likely), output still validates."""
    compiled = compile_schema(ROW)
    prompt = backend.render_chat([{"role": "user", "content": "Describe a fruit as JSON, with tabs and newlines."}])
    for seed in range(3):
        result = backend.generate(
            prompt,
            SamplingParams(seed=seed, temperature=1.2, top_k=100, max_tokens=compiled.max_chars + 16),
            grammar=compiled.gbnf,
        )
        assert result.finish_reason == "stop", result.text
        value = compiled.parse(result.text)
        assert list(value) == list(ROW["properties"])  # all properties, in schema order
        assert not any(c < " " for c in value["title"])
