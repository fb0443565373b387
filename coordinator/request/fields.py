"""Fields: the columns a request names, and what each one is.

Owns: the table of known column names (`KNOWN`: description, length bounds,
type, where the value comes from) and their aliases (`ALIASES`), reading a
field list ("columns: review (max 400 chars), rating (1-5)"), a pair
("instruction/response pairs") or an inline example's keys into `FieldSpec`s
(`build_field` applies annotations, types and bounds), and fitting a row's
fields to the spec's limits (`fit_lengths`, `with_sources`).
Must not: decide whether a request is grounded (facets.py reads that; these take
`grounded` as given), do I/O, or import `node/`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from coordinator.request.text import snake_name
from coordinator.spec import (
    DEFAULT_MAX_LENGTH,
    MAX_CHOICE_CHARS,
    MAX_ENUM_CHOICES,
    MAX_FIELD_CHARS,
    MAX_FIELDS,
    MAX_ROW_CHARS,
    FieldSource,
    FieldSpec,
    FieldType,
)


@dataclass(frozen=True)
class _Known:
    description: str
    max_length: int = DEFAULT_MAX_LENGTH
    min_length: int = 1
    type: FieldType = FieldType.STRING
    choices: tuple[str, ...] = ()
    source: FieldSource = FieldSource.GENERATED


_URL_DESC = "URL of the source document the row is grounded in (filled from provenance)"
_EVIDENCE_DESC = "A span quoted verbatim from the source that supports the row (filled from provenance)"
KNOWN: dict[str, _Known] = {
    "question": _Known("A clear, self-contained question about the topic", 300, 10),
    # 400: a QA answer needs a sentence or two; a longer bound lets small models run on
    # (docs/notes/quality.md#repetition).
    "answer": _Known("A correct, complete answer to the question, in one or two sentences", 400),
    "source_url": _Known(_URL_DESC, MAX_FIELD_CHARS, source=FieldSource.SOURCE_URL),
    "evidence": _Known(_EVIDENCE_DESC, MAX_FIELD_CHARS, source=FieldSource.EVIDENCE),
    "context": _Known("Background text the row relies on", 2000),
    "explanation": _Known("Why the answer is right, in a few sentences", 1000),
    "rationale": _Known("The reasoning behind the answer", 1000),
    "instruction": _Known("A task instruction a user might give an assistant", 1000, 10),
    "input": _Known("Optional input the instruction refers to", 1000, 0),
    "output": _Known("The ideal response to the instruction", 1500),
    "response": _Known("The ideal response", 1500),
    "prompt": _Known("A prompt a user might write", 1000, 10),
    "completion": _Known("The ideal completion of the prompt", 1500),
    "query": _Known("A search-style query", 300),
    "title": _Known("A short title", 200),
    "summary": _Known("A concise summary", 1000),
    "text": _Known("The text of the row", 2000),
    "label": _Known("A short class label", 64),
    "category": _Known("A short category name", 64),
    "difficulty": _Known("How hard the row is", type=FieldType.ENUM, choices=("easy", "medium", "hard")),
    "sentiment": _Known("The sentiment expressed", type=FieldType.ENUM, choices=("positive", "negative", "neutral")),
}
ALIASES = {
    "q": "question", "a": "answer", "url": "source_url", "source": "source_url", "link": "source_url",
    "source_link": "source_url", "citation_url": "source_url", "quote": "evidence", "citation": "evidence",
    "source_quote": "evidence", "supporting_quote": "evidence", "sources": "source_url",
}  # fmt: skip
# Items named in a field list that are not names: "JSON with the following fields: ..." etc.
_FILLER = re.compile(r"^(?:the|a|an|following|fields?|columns?|keys?|properties|named|called|each|one|its)\b\s*", re.I)

_FIELD_LIST = re.compile(
    r"(?:\b(?:fields?|columns?|keys|properties|attributes)\s*(?::|=|\bare\b|\bnamed\b|\bcalled\b|\bof\b)?"
    r"|\b(?:json|jsonl|csv|tsv|parquet|objects?|dicts?|records?|rows?|entries|table)\s+(?:objects?\s+|lines?\s+)?"
    r"(?:with|containing|having|of)(?:\s+(?:the\s+)?(?:fields?|columns?|keys)\s*:?)?"
    r"|\beach(?:\s+\w+)?\s+(?:with|has|having|containing)(?:\s+(?:the\s+)?(?:fields?|columns?|keys)\s*:?)?)"
    r"\s+(?P<list>[^.;!?\n]+)",
    re.IGNORECASE,
)
# Where a field list stops, when the sentence goes on about something else.
_LIST_END = re.compile(
    r"\s(?:about|on the topic|regarding|grounded|sourced|citing|from the|based on|in (?:english|french|german|"
    r"spanish)|written in|licen[cs]ed)\b.*$",
    re.IGNORECASE,
)
# "instruction/response pairs", "prompt-completion pairs": two known column names joined.
_PAIR = re.compile(r"\b(?P<a>[a-z]+)\s*[-/–—&]\s*(?P<b>[a-z]+)\s+(?:pairs?|examples?|rows?|data)\b", re.I)
_TYPE_WORDS: dict[str, FieldType] = {
    "string": FieldType.STRING, "str": FieldType.STRING, "text": FieldType.STRING,
    "integer": FieldType.INTEGER, "int": FieldType.INTEGER, "whole number": FieldType.INTEGER,
    "number": FieldType.NUMBER, "float": FieldType.NUMBER, "decimal": FieldType.NUMBER, "real": FieldType.NUMBER,
    "boolean": FieldType.BOOLEAN, "bool": FieldType.BOOLEAN, "true/false": FieldType.BOOLEAN,
    "yes/no": FieldType.BOOLEAN,
}  # fmt: skip


def listed_fields(text: str, grounded: bool, notes: list[str]) -> list[FieldSpec]:
    """The fields a list in the request names ("JSON with question, answer, source_url"); [] when there is none."""
    fields: list[FieldSpec] = []
    m = _FIELD_LIST.search(text)
    if m:
        listed = _LIST_END.sub("", m.group("list"))
        for item in _split_top_level(listed)[: MAX_FIELDS * 2]:
            f, item_note = _field_from_item(item, grounded)
            if item_note:
                notes.append(item_note)
            if f is not None and f.name not in {g.name for g in fields} and len(fields) < MAX_FIELDS:
                fields.append(f)
    return fields


def _split_top_level(text: str) -> list[str]:
    """Split a field list on commas, `and`, `&`, `+` and `/`, but not inside parentheses."""
    items, depth, start, i = [], 0, 0, 0
    while i < len(text):
        ch = text[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
        elif depth == 0:
            sep = re.match(r",\s*(?:and\s+|or\s+)?|\s+(?:and|&|\+)\s+|\s*/\s*", text[i:], re.IGNORECASE)
            if sep:
                items.append(text[start:i])
                i += sep.end()
                start = i
                continue
        i += 1
    items.append(text[start:])
    return [s.strip(" \t\"'`") for s in items if s.strip(" \t\"'`")]


def _field_from_item(item: str, grounded: bool) -> tuple[FieldSpec | None, str | None]:
    """One list item ("difficulty (1-5)", "label: positive|negative", "source URL") -> a field, or a note."""
    annotation = ""
    m = re.match(r"^(?P<name>[^(:=]+?)\s*(?:\((?P<paren>[^)]*)\)|[:=]\s*(?P<rest>.+))?\s*$", item)
    if not m:
        return None, f"fields: could not read {item[:40]!r} as a field name; left out"
    name_text = m.group("name").strip()
    while _FILLER.match(name_text):
        name_text = _FILLER.sub("", name_text, count=1)
    annotation = (m.group("paren") or m.group("rest") or "").strip()
    if len(name_text.split()) > 3:
        return None, f"fields: {item[:40]!r} reads as a phrase, not a field name; left out"
    name = snake_name(name_text)
    if name is None:
        return None, f"fields: {item[:40]!r} has no usable name; left out"
    name = ALIASES.get(name, name)
    return build_field(name, annotation=annotation, grounded=grounded), None


def build_field(
    name: str,
    *,
    annotation: str = "",
    grounded: bool,
    type_: FieldType | None = None,
    description: str = "",
    max_length: int | None = None,
    choices: Iterable[str] = (),
) -> FieldSpec:
    known = KNOWN.get(name)
    kw: dict[str, Any] = {"name": name}
    if known is not None:
        kw.update(
            description=known.description,
            max_length=known.max_length,
            min_length=min(known.min_length, known.max_length),
            type=known.type,
            choices=list(known.choices),
            source=known.source,
        )
    if kw.get("source", FieldSource.GENERATED) is not FieldSource.GENERATED and not grounded:
        kw["source"] = FieldSource.GENERATED
        kw["description"] = "" if name == "source_url" else kw["description"].replace(" (filled from provenance)", "")
        kw["max_length"] = min(kw["max_length"], 300 if name == "source_url" else 1000)
    if re.match(r"^(?:is|has|can|should)_", name):
        kw["type"] = FieldType.BOOLEAN
    ann = annotation.lower()
    choice_list = [c.strip(" '\"") for c in re.split(r"\s*[|/]\s*|\s+or\s+|,\s*", annotation) if c.strip(" '\"")]
    rng = re.fullmatch(r"\s*(-?\d+)\s*(?:-|–|to|\.\.)\s*(-?\d+)\s*", ann)
    length = re.search(r"(?:max|up to|at most|≤|<=)\s*(\d+)\s*(?:chars?|characters?)?", ann)
    if ann in _TYPE_WORDS:
        kw["type"] = _TYPE_WORDS[ann]
    elif rng:
        lo, hi = sorted((int(rng.group(1)), int(rng.group(2))))
        kw.update(type=FieldType.INTEGER, minimum=lo, maximum=hi)
    elif length:
        kw["max_length"] = max(1, min(int(length.group(1)), MAX_FIELD_CHARS))
    elif len(choice_list) >= 2 and all(len(c) <= MAX_CHOICE_CHARS for c in choice_list):
        kw.update(type=FieldType.ENUM, choices=list(dict.fromkeys(choice_list))[:MAX_ENUM_CHOICES])
    elif annotation and not kw.get("description"):
        kw["description"] = annotation[:500]
    if type_ is not None and kw.get("source", FieldSource.GENERATED) is FieldSource.GENERATED:
        kw["type"] = type_
    if description:
        kw["description"] = description[:500]
    if max_length is not None:
        kw["max_length"] = max_length
    choices = list(choices)
    if choices:
        kw["choices"] = choices
    if kw.get("type") is not FieldType.ENUM:
        kw.pop("choices", None)
    if kw.get("type") not in (None, FieldType.STRING):
        kw.pop("min_length", None)
        kw.pop("max_length", None)
    if kw.get("type") in (FieldType.STRING, None):
        kw["min_length"] = min(kw.get("min_length", 1), kw.get("max_length", DEFAULT_MAX_LENGTH))
    return FieldSpec(**kw)


def fit_lengths(fields: list[FieldSpec], notes: list[str]) -> list[FieldSpec]:
    """Scale generated string bounds down so they add up to at most MAX_ROW_CHARS."""
    strings = [f for f in fields if not f.derived and f.type is FieldType.STRING]
    total = sum(f.max_length for f in strings)
    if total <= MAX_ROW_CHARS:
        return fields
    scale = MAX_ROW_CHARS / total
    notes.append(f"fields: lengths add up to {total} characters; scaled by {scale:.2f} to fit {MAX_ROW_CHARS}")
    out = []
    for f in fields:
        if f in strings:
            new_max = max(1, math.floor(f.max_length * scale))
            f = f.model_copy(update={"max_length": new_max, "min_length": min(f.min_length, new_max)})
        out.append(f)
    return out


def with_sources(fields: list[FieldSpec], grounded: bool, notes: list[str]) -> list[FieldSpec]:
    if not grounded:
        return fields
    if not any(f.source is FieldSource.SOURCE_URL for f in fields):
        notes.append("fields: grounded rows get a source_url column, filled from provenance")
        fields = [*fields, build_field("source_url", grounded=True)]
    return fields


def pair_fields(text: str) -> tuple[str, str] | None:
    """Two known generated columns named as a pair ("instruction/response pairs"); None when there is none."""
    for m in _PAIR.finditer(text):
        a, b = (ALIASES.get(w.lower(), w.lower()) for w in (m.group("a"), m.group("b")))
        if a != b and a in KNOWN and b in KNOWN and KNOWN[a].source is KNOWN[b].source is FieldSource.GENERATED:
            return a, b
    return None


def example_fields(example: dict[str, Any], grounded: bool) -> list[FieldSpec]:
    """Fields named by the keys of an inline example, typed by its values."""
    fields: list[FieldSpec] = []
    for key, value in example.items():
        name = snake_name(key)
        type_ = _infer_type(value)
        if name and type_ and name not in {g.name for g in fields} and len(fields) < MAX_FIELDS:
            fields.append(build_field(name, grounded=grounded, type_=type_))
    return fields


def _infer_type(value: Any) -> FieldType | None:
    if isinstance(value, bool):
        return FieldType.BOOLEAN
    if isinstance(value, int):
        return FieldType.INTEGER
    if isinstance(value, float):
        return FieldType.NUMBER
    if isinstance(value, str):
        return FieldType.STRING
    return None


def is_derived(name: str, grounded: bool) -> bool:
    """Whether a field called `name` is filled from provenance (source_url, evidence) in a spec so grounded."""
    known = KNOWN.get(name)
    return grounded and known is not None and known.source is not FieldSource.GENERATED
