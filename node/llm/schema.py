"""JSON schema -> llama.cpp grammar (GBNF), for the subset of JSON schema tasks use.

Owns: compiling a task's output schema into a grammar that can only produce
JSON valid for that schema (up to the few keywords listed as post-validated),
a bound on how long that JSON can be, and the post-generation check.

Why our own emitter instead of `LlamaGrammar.from_json_schema`
(docs/notes/llama.md, "Grammar pitfalls"):
- its string rule `[^"\\\\]` lets raw control characters into strings, which
  strict `json.loads` rejects (Gemma: 4/10 outputs); ours excludes
  U+0000-U+001F and U+007F;
- it silently falls back to generic JSON for a schema it cannot convert; ours
  raises `UnsupportedSchema` naming the keyword and where it is;
- every string and array gets a bound even when the schema has none
  (`DEFAULT_MAX_STRING`, `DEFAULT_MAX_ITEMS`): unbounded strings ran to
  max_tokens in 2/20 SmolLM2 tries, bounded ones 0/20.

Output is compact JSON with at most one optional space between tokens, and
properties in schema order (all of them, required or not), which is what the
bound and the prompts assume. Strings hold at least one character and do not
start with whitespace (the 135M model otherwise filled required fields with
" " or ",  "); schemas that need empty strings are not what tasks ask for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import jsonschema

JsonObject = dict[str, Any]

DEFAULT_MAX_STRING = 256
DEFAULT_MAX_ITEMS = 8
MAX_INT_ENUMERATION = 256
"""An integer range this small becomes an alternation of literals, so the grammar enforces the bounds."""

# Keywords the grammar enforces, or that do not restrict values at all.
_ENFORCED = {
    "type",
    "properties",
    "required",
    "items",
    "prefixItems",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "enum",
    "const",
    "anyOf",
    "oneOf",
}
_ANNOTATIONS = {"title", "description", "examples", "default", "$schema", "$id", "$comment", "additionalProperties"}
# Keywords the grammar does not enforce; the post-generation check does, and a value that fails is dropped.
POST_VALIDATED = {"pattern", "format", "uniqueItems", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"}

# One JSON string character: anything but a quote, a backslash or a control character, or a short escape.
_CHAR_RULE = r'[^"\\\x7F\x00-\x1F] | "\\" ["\\/bfnrt]'
_LEAD_RULE = r'[^"\\\x7F\x00-\x20] | "\\" ["\\/]'


class UnsupportedSchema(ValueError):
    """The schema uses something this compiler cannot turn into a grammar; the message says what and where."""


class OutputInvalid(ValueError):
    """Generated text is not JSON valid against the schema; the message says why."""


@dataclass(frozen=True)
class CompiledSchema:
    schema: JsonObject
    """The schema as given; post-validation uses it."""
    gbnf: str
    max_chars: int
    """Longest text the grammar can produce, in characters. Every token the grammar
    admits emits at least one byte, so for ASCII output this bounds the token count."""
    _validator: Any = field(repr=False, compare=False, default=None)

    def parse(self, text: str) -> Any:
        """Strict JSON parse + schema check; raises OutputInvalid."""
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise OutputInvalid(f"not valid JSON: {exc}") from None
        errors = self.errors(value)
        if errors:
            raise OutputInvalid("; ".join(errors[:3]))
        return value

    def errors(self, value: Any) -> list[str]:
        validator = self._validator or jsonschema.Draft202012Validator(self.schema)
        return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in validator.iter_errors(value)]


def compile_schema(schema: JsonObject) -> CompiledSchema:
    """Compile `schema` (a JSON object schema) to a grammar; raises UnsupportedSchema."""
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise UnsupportedSchema(f"not a valid JSON schema: {exc.message}") from None
    builder = _Builder()
    root_body, max_chars = builder.visit(schema, "$")
    rules = [
        f"root ::= {root_body}",
        *builder.rule_lines(),
        f"char ::= {_CHAR_RULE}",
        f"lead ::= {_LEAD_RULE}",
        'ws ::= " "?',
    ]
    return CompiledSchema(
        schema=schema,
        gbnf="\n".join(rules) + "\n",
        max_chars=max_chars,
        _validator=jsonschema.Draft202012Validator(schema),
    )


def gbnf_literal(text: str) -> str:
    """`text` as a GBNF string literal."""
    out = ['"']
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def json_literal(value: Any) -> str:
    """The compact JSON text of `value`, as a GBNF literal."""
    return gbnf_literal(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


class _Builder:
    def __init__(self) -> None:
        self._rules: dict[str, str] = {}  # body -> name, so identical sub-grammars share one rule

    def rule(self, body: str) -> str:
        name = self._rules.get(body)
        if name is None:
            name = f"r{len(self._rules) + 1}"
            self._rules[body] = name
        return name

    def rule_lines(self) -> list[str]:
        return [f"{name} ::= {body}" for body, name in self._rules.items()]

    def visit(self, schema: Any, where: str) -> tuple[str, int]:
        """Return (GBNF expression, max characters) for `schema` at JSON path `where`."""
        if schema is True or schema == {}:
            raise UnsupportedSchema(f"{where}: an unconstrained value cannot be bounded; give it a type")
        if not isinstance(schema, dict):
            raise UnsupportedSchema(f"{where}: schema must be an object")
        for key in schema:
            if key not in _ENFORCED and key not in _ANNOTATIONS and key not in POST_VALIDATED:
                raise UnsupportedSchema(f"{where}: keyword {key!r} is not supported in task schemas")
        if isinstance(schema.get("additionalProperties"), dict):
            raise UnsupportedSchema(f"{where}: additionalProperties as a schema is not supported")

        if "const" in schema:
            return self._literals([schema["const"]], where)
        if "enum" in schema:
            return self._literals(list(schema["enum"]), where)
        for combinator in ("anyOf", "oneOf"):
            if combinator in schema:
                parts = [self.visit(s, f"{where}/{combinator}/{i}") for i, s in enumerate(schema[combinator])]
                return self._alternation(parts)

        kind = schema.get("type")
        if isinstance(kind, list):
            parts = [self.visit({**schema, "type": k}, where) for k in kind]
            return self._alternation(parts)
        if kind == "object":
            return self._object(schema, where)
        if kind == "array":
            return self._array(schema, where)
        if kind == "string":
            return self._string(schema, where)
        if kind == "integer":
            return self._integer(schema)
        if kind == "number":
            return '("-"? ("0" | [1-9] [0-9]{0,15}) ("." [0-9]{1,8})?)', 27
        if kind == "boolean":
            return '("true" | "false")', 5
        if kind == "null":
            return '"null"', 4
        raise UnsupportedSchema(f"{where}: missing or unknown type {kind!r}")

    def _alternation(self, parts: list[tuple[str, int]]) -> tuple[str, int]:
        if not parts:
            raise UnsupportedSchema("empty alternation")
        return "(" + " | ".join(p for p, _ in parts) + ")", max(n for _, n in parts)

    def _literals(self, values: list[Any], where: str) -> tuple[str, int]:
        if not values:
            raise UnsupportedSchema(f"{where}: empty enum")
        texts = [json.dumps(v, ensure_ascii=False, separators=(",", ":")) for v in values]
        body = " | ".join(gbnf_literal(t) for t in dict.fromkeys(texts))
        return self.rule(body), max(len(t) for t in texts)

    def _object(self, schema: JsonObject, where: str) -> tuple[str, int]:
        props = schema.get("properties")
        if not isinstance(props, dict) or not props:
            raise UnsupportedSchema(
                f"{where}: an object needs declared properties (free-form objects cannot be bounded)"
            )
        missing = set(schema.get("required", [])) - set(props)
        if missing:
            raise UnsupportedSchema(f"{where}: required names undeclared properties {sorted(missing)}")
        parts: list[str] = []
        total = 2
        for i, (name, sub) in enumerate(props.items()):
            expr, n = self.visit(sub, f"{where}/{name}")
            key = json.dumps(name, ensure_ascii=False)
            parts.append(('ws "," ws ' if i else "ws ") + f'{gbnf_literal(key)} ws ":" ws {expr}')
            total += len(key) + n + 4 + (1 if i else 0)
        return self.rule('"{" ' + " ".join(parts) + ' ws "}"'), total

    def _array(self, schema: JsonObject, where: str) -> tuple[str, int]:
        if "prefixItems" in schema:
            return self._tuple(schema, where)
        if "items" not in schema:
            raise UnsupportedSchema(f"{where}: an array needs an items schema")
        lo = int(schema.get("minItems", 0))
        hi = int(schema.get("maxItems", max(lo, DEFAULT_MAX_ITEMS)))
        if hi < lo:
            raise UnsupportedSchema(f"{where}: maxItems {hi} < minItems {lo}")
        item, n = self.visit(schema["items"], f"{where}/items")
        item_rule = item if item.isidentifier() else self.rule(item)
        total = 2 + hi * (n + 3)
        if hi == 0:
            return '"[" ws "]"', 3
        rest = f'(ws "," ws {item_rule}){_rep(max(lo - 1, 0), hi - 1)}' if hi > 1 else ""
        if lo == 0:
            return self.rule(f'"[" ws ({item_rule} {rest})? ws "]"'), total
        return self.rule(f'"[" ws {item_rule} {rest} ws "]"'), total

    def _tuple(self, schema: JsonObject, where: str) -> tuple[str, int]:
        """A fixed-length array: one schema per position (`items: false`, minItems = length)."""
        prefix = schema["prefixItems"]
        if schema.get("items", False) is not False or schema.get("minItems", len(prefix)) != len(prefix):
            raise UnsupportedSchema(f"{where}: prefixItems is supported only for fixed-length arrays (items: false)")
        if not prefix:
            return '"[" ws "]"', 2
        parts = [self.visit(s, f"{where}/prefixItems/{i}") for i, s in enumerate(prefix)]
        body = ' ws "," ws '.join(p for p, _ in parts)
        return self.rule(f'"[" ws {body} ws "]"'), 2 + sum(n + 3 for _, n in parts)

    def _string(self, schema: JsonObject, where: str) -> tuple[str, int]:
        hi = int(schema.get("maxLength", DEFAULT_MAX_STRING))
        # Empty strings satisfy most schemas but are never useful output; ask for one character at least.
        lo = max(int(schema.get("minLength", 0)), 1 if hi > 0 else 0)
        if hi < lo:
            raise UnsupportedSchema(f"{where}: maxLength {hi} < minLength {lo}")
        # A maxLength counts characters; an escape is two characters of JSON for one of value.
        if lo == 0:
            return self.rule(f'"\\"" char{_rep(lo, hi)} "\\""'), 2 + 2 * hi
        # The first character is not whitespace: no blank or space-padded values.
        return self.rule(f'"\\"" lead char{_rep(lo - 1, hi - 1)} "\\""'), 2 + 2 * hi

    def _integer(self, schema: JsonObject) -> tuple[str, int]:
        lo, hi = schema.get("minimum"), schema.get("maximum")
        if isinstance(lo, int) and isinstance(hi, int) and 0 <= hi - lo < MAX_INT_ENUMERATION:
            return self._literals(list(range(lo, hi + 1)), "")
        sign = "" if isinstance(lo, int | float) and lo >= 0 else '"-"? '
        return f'({sign}("0" | [1-9] [0-9]{{0,17}}))', 19


def _rep(lo: int, hi: int) -> str:
    return f"{{{lo}}}" if lo == hi else f"{{{lo},{hi}}}"
