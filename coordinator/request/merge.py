"""The LLM path's merge: a model's draft spec, validated and merged over the rule-based reading.

Owns: `merge_llm_spec`, which validates the `spec` task's output (the node owns
its prompt and grammar) and merges it into `parse_request`'s reading;
`draft_contradictions`; and `LLM_SPEC_NOTE`, the line previews show for a job
that starts with a spec task.
Must not: run or prompt a model, read the request text itself (parse.py does),
do I/O, read a clock, or import `node/`.

Merge policy (`merge_llm_spec`): what the rules read *explicitly* from the text
wins (row counts, listed field names, language, license, grounding words):
regexes read digits reliably and a 135M model does not (shared/notes/llama.md).
The LLM fills what the rules had to default (topic, fields when none were
listed, field types/descriptions/lengths), except the row count: a count the
rules did not find is not in the request. A draft that contradicts what the
text states plainly is a misreading and is dropped whole. Any other LLM value
that is invalid falls back to the rule-based value for that key alone, with a note.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from coordinator.request.facets import language_code, tidy_topic
from coordinator.request.fields import ALIASES, build_field, fit_lengths, is_derived, with_sources
from coordinator.request.reading import ParsedRequest, first_error, spec_with_examples
from coordinator.request.text import snake_name
from coordinator.spec import MAX_FIELD_CHARS, MAX_ROWS, FieldSpec, FieldType
from protocol.tasks import SPEC_MAX_FIELDS

MAX_LLM_OUTPUT_CHARS = 64_000
"""Refuse to parse more than this from the LLM (its grammar bounds it far lower)."""

LLM_SPEC_NOTE = (
    "at run time, a `spec` task (an LLM node) reads the request too; its draft fills what these rules "
    "defaulted, and what the request says explicitly is kept"
)
"""For previews of a job that will start with the spec stage."""
LLM_MAX_FIELDS = SPEC_MAX_FIELDS
"""The LLM may propose at most this many fields (the spec task's grammar enforces it too)."""


def _parse_llm_json(output: str | Mapping[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    if isinstance(output, Mapping):
        return dict(output), None
    if not isinstance(output, str):
        return None, f"LLM output is {type(output).__name__}, not text"
    if len(output) > MAX_LLM_OUTPUT_CHARS:
        return None, f"LLM output is {len(output)} characters, over {MAX_LLM_OUTPUT_CHARS}"
    text = re.sub(r"^\s*```(?:json)?\s*|\s*```\s*$", "", output.strip())
    try:
        value = json.loads(text)
    except ValueError:
        start = text.find("{")
        try:
            value, _ = json.JSONDecoder().raw_decode(text, start) if start != -1 else (None, 0)
        except ValueError as exc:
            return None, f"LLM output is not JSON ({exc})"
    if not isinstance(value, dict):
        return None, f"LLM output is not a JSON object (got {type(value).__name__})"
    return value, None


def _llm_fields(raw: Any, grounded: bool, notes: list[str]) -> list[FieldSpec]:
    if not isinstance(raw, list):
        notes.append("llm: `fields` is not a list; kept the rule-based fields")
        return []
    out: list[FieldSpec] = []
    for i, item in enumerate(raw[:LLM_MAX_FIELDS]):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            notes.append(f"llm: fields[{i}] has no name; left out")
            continue
        name = snake_name(item["name"])
        if name is not None and name != item["name"]:
            # The prompt asks for lower_snake_case; a draft that ignores that (SmolLM2-135M wrote
            # "difficultyLevels", "levelOfEruptionType1") is not trusted to design that column.
            notes.append(f"llm: fields[{i}] name {str(item['name'])[:40]!r} is not lower_snake_case; left out")
            continue
        if name is None or name in {f.name for f in out}:
            notes.append(f"llm: fields[{i}] name {str(item['name'])[:40]!r} is unusable or repeated; left out")
            continue
        name = ALIASES.get(name, name)
        try:
            f = _llm_field(name, item, grounded)
        except (ValidationError, ValueError, TypeError) as exc:
            notes.append(f"llm: fields[{i}] ({name}) is invalid ({first_error(exc)}); left out")
            continue
        out.append(f)
    return out


def _llm_field(name: str, item: dict[str, Any], grounded: bool) -> FieldSpec:
    type_ = FieldType(item["type"]) if "type" in item else None
    description = item.get("description", "")
    if not isinstance(description, str):
        raise ValueError("description must be text")
    max_length = item.get("max_length")
    if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int)):
        raise ValueError("max_length must be an integer")
    if max_length is not None and not 1 <= max_length <= MAX_FIELD_CHARS:
        raise ValueError(f"max_length must be in [1, {MAX_FIELD_CHARS}] (got {max_length})")
    choices = item.get("choices") or []
    if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
        raise ValueError("choices must be a list of strings")
    return build_field(
        name,
        grounded=grounded,
        type_=type_,
        description=description,
        max_length=max_length if type_ in (None, FieldType.STRING) else None,
        choices=choices if type_ is FieldType.ENUM else (),
    )


def draft_contradictions(data: Mapping[str, Any], said: ParsedRequest) -> list[str]:
    """What a draft gets wrong among the things the request states plainly (`said.explicit`)."""
    spec, out = said.spec, []
    if "rows" in said.explicit and data.get("rows") != spec.rows:
        out.append(f"rows {data.get('rows')!r} (the request says {spec.rows})")
    if "grounded" in said.explicit and data.get("grounded") is not spec.grounded:
        out.append(f"grounded {data.get('grounded')!r} (the request says {spec.grounded})")
    if "language" in said.explicit and language_code(data.get("language")) != spec.language:
        out.append(f"language {data.get('language')!r} (the request says {spec.language!r})")
    if "fields" in said.explicit:
        raw = data.get("fields")
        items = raw if isinstance(raw, list) else []
        names = {snake_name(i["name"]) for i in items if isinstance(i, dict) and isinstance(i.get("name"), str)}
        drafted = {ALIASES.get(n, n) for n in names if n}
        missing = [f.name for f in spec.fields if not f.derived and f.name not in drafted]
        if missing:
            out.append(f"no field {', '.join(missing)} (the request names it)")
    return out


def merge_llm_spec(
    llm_output: str | Mapping[str, Any], rule: ParsedRequest, *, said: ParsedRequest | None = None
) -> ParsedRequest:
    """Validate an LLM's spec JSON and merge it over the rule-based reading (see module docstring).

    Pure: `rule` is `parse_request(request, rows=...)` for the same request; `said` is the reading of
    the text alone (default `rule`), what the draft could have read. A draft that contradicts it is a
    misreading, and is not trusted for what the request left open either: the rule-based spec stands.
    Never raises for bad LLM output; every value it could not use is noted and replaced.
    """
    notes = list(rule.notes)
    base = rule.spec
    data, problem = _parse_llm_json(llm_output)
    if data is None:
        notes.append(f"llm: {problem}; using the rule-based spec")
        return ParsedRequest(spec=base, notes=tuple(notes), explicit=rule.explicit)
    wrong = draft_contradictions(data, said or rule)
    if wrong:
        # SmolLM2-135M, on the demo request: rows 10 for 20, grounded false, and "answer" a boolean.
        notes.append(f"llm: the draft misreads the request ({'; '.join(wrong)}); using the rule-based spec")
        return ParsedRequest(spec=base, notes=tuple(notes), explicit=rule.explicit)

    def pick(key: str, valid: bool, value: Any) -> Any:
        current = getattr(base, key)
        if key not in data:
            notes.append(f"llm: no `{key}`; kept {current!r}")
            return current
        if not valid:
            notes.append(f"llm: `{key}` = {str(data[key])[:60]!r} is invalid; kept {current!r}")
            return current
        if key in rule.explicit:
            if value != current:
                notes.append(f"llm: `{key}` = {value!r} differs from the request's {current!r}; kept the request's")
            return current
        return value

    topic_raw = data.get("topic")
    topic_ok = isinstance(topic_raw, str) and tidy_topic(topic_raw) is not None
    topic = pick("topic", topic_ok, tidy_topic(topic_raw) if topic_ok and isinstance(topic_raw, str) else None)
    rows_raw = data.get("rows")
    rows_ok = isinstance(rows_raw, int) and not isinstance(rows_raw, bool) and 1 <= rows_raw <= MAX_ROWS
    if "rows" in rule.explicit or not rows_ok:
        rows = pick("rows", rows_ok, rows_raw)
    else:
        # The rules read every way of writing a count; a count they did not find was invented
        # (SmolLM2-135M gave 10 for a request that named none), and rows are what volunteers pay for.
        rows = base.rows
        if rows_raw != base.rows:
            notes.append(f"llm: `rows` = {rows_raw!r} ignored: the request names no count; kept {base.rows!r}")
    grounded = pick("grounded", isinstance(data.get("grounded"), bool), data.get("grounded"))
    lang_raw = language_code(data.get("language"))
    lang_ok = isinstance(lang_raw, str) and re.fullmatch(r"[a-z]{2,3}", lang_raw) is not None
    language = pick("language", lang_ok, lang_raw if lang_ok else None)

    llm_fields = _llm_fields(data["fields"], grounded, notes) if "fields" in data else []
    if "fields" not in data:
        notes.append("llm: no `fields`; kept the rule-based fields")
    rule_fields = [
        build_field(f.name, grounded=grounded) if f.derived != is_derived(f.name, grounded) else f for f in base.fields
    ]
    fields: list[FieldSpec]
    if "fields" in rule.explicit:
        # The request named the columns: keep its names and order, take the LLM's detail for them.
        by_name = {f.name: f for f in llm_fields}
        fields = [by_name.get(f.name, f) if not f.derived else f for f in rule_fields]
    elif any(not f.derived for f in llm_fields):
        fields = llm_fields
    else:
        if llm_fields or "fields" in data:
            notes.append("llm: no usable generated field; kept the rule-based fields")
        fields = [f for f in rule_fields if not (f.derived and not grounded)]
    if not grounded:
        fields = [f for f in fields if not f.derived]
    fields = fit_lengths(with_sources(fields, grounded, notes), notes)

    kwargs: dict[str, Any] = {
        "topic": topic,
        "description": base.description,
        "fields": fields,
        "rows": rows,
        "grounded": grounded,
        "language": language,
        "license": base.license,
        "seed_examples": [],
    }
    try:
        spec = spec_with_examples(kwargs, list(base.seed_examples), notes)
    except ValidationError as exc:
        notes.append(f"llm: the merged spec is invalid ({first_error(exc)}); using the rule-based spec")
        spec = base
    return ParsedRequest(spec=spec, notes=tuple(notes), explicit=rule.explicit)
