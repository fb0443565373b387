"""Planner: a request sentence becomes a DatasetSpec, and a spec becomes task counts.

Owns:
- `parse_request`: the rule-based reading of a request. It always yields a
  valid spec or a `RequestError` that says what to change; every guess and
  every default is listed in `ParsedRequest.notes` (what `--dry-run` shows).
- The LLM path's merge: `merge_llm_spec` validates a model's draft spec (the
  `spec` task's output; the node owns its prompt and grammar) and merges it
  into the rule-based reading.
- `plan`: expected tasks per stage, from named over-generation constants.
Must not: do I/O, read a clock, or import `node/`.

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
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from coordinator.spec import (
    DEFAULT_LANGUAGE,
    DEFAULT_LICENSE,
    DEFAULT_MAX_LENGTH,
    DEFAULT_ROWS,
    MAX_CHOICE_CHARS,
    MAX_DESCRIPTION_CHARS,
    MAX_ENUM_CHOICES,
    MAX_FIELD_CHARS,
    MAX_FIELDS,
    MAX_ROW_CHARS,
    MAX_ROWS,
    MAX_SEED_EXAMPLES,
    MAX_TOPIC_CHARS,
    DatasetSpec,
    FieldSource,
    FieldSpec,
    FieldType,
    format_validation_error,
)
from protocol.tasks import MAX_REQUEST_CHARS as MAX_REQUEST_CHARS
from protocol.tasks import SPEC_MAX_FIELDS, TaskKind

MAX_LLM_OUTPUT_CHARS = 64_000
"""Refuse to parse more than this from the LLM (its grammar bounds it far lower)."""


class RequestError(ValueError):
    """The request cannot become a spec; the message says what to change."""


@dataclass(frozen=True)
class ParsedRequest:
    spec: DatasetSpec
    notes: tuple[str, ...] = ()
    """One line per guess, default, cap or fallback, for people (--dry-run)."""
    explicit: frozenset[str] = frozenset()
    """Spec keys read from the text itself rather than defaulted."""


# --- text helpers ------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _clean(text: str) -> str:
    # NFKC folds full-width digits and letters ("３００" -> "300") so one set of rules reads them.
    return _CONTROL.sub(" ", unicodedata.normalize("NFKC", text)).strip()


def snake_name(text: str) -> str | None:
    """`Source URL` -> `source_url`; None when nothing usable is left."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    name = re.sub(r"[^a-z0-9]+", "_", ascii_text.lower()).strip("_")
    if not name or not name[0].isalpha():
        return None
    return name[:64].rstrip("_")


# --- row counts --------------------------------------------------------------------------

_ROW_NOUNS = (
    r"rows?|examples?|samples?|pairs?|items?|records?|entries|entry|instances?|questions?|prompts?|q&as?|qas?|"
    r"dialog(?:ue)?s?|conversations?|sentences?|paragraphs?|documents?|data ?points?|triples?|tuples?|problems?|"
    r"exercises?|tasks?|instructions?|responses?|answers?|reviews?|summar(?:y|ies)|texts?|lines?|facts?|"
    r"definitions?|descriptions?|messages?|tweets?|posts?|stories|story|poems?|jokes?|recipes?|flashcards?|cards?|"
    r"quizzes|quiz|puzzles?|riddles?|emails?|queries|query|labels?|translations?|snippets?"
)
# A count is a number followed, within four words, by a noun that names rows.
_GAP = r"(?:\s+[^\s\d.,;:!?]+){0,4}?\s*"
_MULT = {"k": 1_000, "thousand": 1_000, "m": 1_000_000, "mn": 1_000_000, "million": 1_000_000}
_MULT |= {"b": 10**9, "billion": 10**9}
_DIGITS = (
    r"(?P<sign>[-−–]\s*)?(?P<num>\d{1,3}(?:[,_'\u00a0\u202f]\d{3})+|\d{1,3}(?:\.\d{3})+|\d+(?:\.\d+)?)"
    r"(?:\s*(?P<exp>(?:\^|\*\*)\s*\d{1,4}|[eE]\d{1,4}|[x×]\s*10\s*\^\s*\d{1,4}))?"
    r"(?:\s*(?P<mult>k|thousand|mn|m|million|b|billion)\b)?"
)
_DIGIT_COUNT = re.compile(r"(?<![\w.,^])" + _DIGITS + rf"(?={_GAP}(?:{_ROW_NOUNS})\b)", re.IGNORECASE)
# East Asian counters follow the number directly: "50件", "100個", "30개".
_COUNTER_COUNT = re.compile(r"(?P<sign>)(?P<num>\d+)(?P<exp>)(?P<mult>)\s*(?:件|個|条|行|組|개|건|条目)")
_LABELLED_COUNT = re.compile(
    r"\b(?:rows|count|n|size|number of (?:rows|examples|items|samples))\s*[:=]\s*" + _DIGITS, re.IGNORECASE
)

_ONES = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19, "a": 1, "an": 1,
}  # fmt: skip
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
_SCALES = {"hundred": 100, "thousand": 1_000, "million": 1_000_000}
_NUMBER_WORD = "|".join(sorted([*_ONES, *_TENS, *_SCALES, "dozen"], key=len, reverse=True))
_WORD_NUMBER = re.compile(
    rf"\b(?P<words>(?:{_NUMBER_WORD})\b(?:(?:[\s-]+(?:and\s+)?)(?:{_NUMBER_WORD})\b)*)"
    rf"(?={_GAP}(?:{_ROW_NOUNS})\b)",
    re.IGNORECASE,
)


def _words_to_int(words: str) -> int | None:
    tokens = [t for t in re.split(r"[\s-]+", words.lower()) if t and t != "and"]
    if not tokens or all(t in {"a", "an"} for t in tokens):
        return None
    total, current, seen = 0, 0, False
    for tok in tokens:
        if tok in _ONES:
            current += _ONES[tok]
        elif tok in _TENS:
            current += _TENS[tok]
        elif tok == "dozen":
            current = max(current, 1) * 12
        elif tok == "hundred":
            current = max(current, 1) * 100
        elif tok in _SCALES:
            total += max(current, 1) * _SCALES[tok]
            current = 0
        else:
            return None
        seen = True
    return total + current if seen else None


def _digits_value(m: re.Match[str]) -> float:
    raw = m.group("num")
    if re.fullmatch(r"\d{1,3}(?:\.\d{3})+", raw) and not m.group("mult"):
        value = float(raw.replace(".", ""))  # "2.000 rows": a fractional row count means nothing; read thousands
    else:
        value = float(re.sub(r"[,_'\u00a0\u202f]", "", raw))
    exp = m.group("exp")
    if exp:
        power = int(re.findall(r"\d+", exp)[-1])
        try:
            value = value * 10.0**power if exp.lstrip()[0] in "xX×eE" else value**power
        except OverflowError:
            return math.inf  # "10^9999 rows": too many, whatever the exact number
    mult = (m.group("mult") or "").lower()
    if mult:
        value *= _MULT[mult]
    return value


def _find_row_count(text: str) -> tuple[int | None, str | None]:
    """(count, note) from the request; count None when the text names none. Raises for non-positive counts."""
    digit: list[tuple[int, float, str]] = []
    for m in (*_LABELLED_COUNT.finditer(text), *_DIGIT_COUNT.finditer(text), *_COUNTER_COUNT.finditer(text)):
        value = _digits_value(m)
        if not (value.is_integer() or math.isinf(value)):
            continue  # "Python 3.11 examples": a version number, not a count
        digit.append((m.start(), -value if m.group("sign") else value, m.group(0).strip()))
    worded: list[tuple[int, float, str]] = []
    for m in _WORD_NUMBER.finditer(text):
        word_value = _words_to_int(m.group("words"))
        # "one" and "a" are everywhere ("with one answer"); a one-row dataset is asked for with a digit.
        if word_value is not None and word_value >= 2:
            worded.append((m.start(), float(word_value), m.group("words").strip()))
    candidates = digit or worded
    if not candidates:
        return None, None
    _, value, said = min(candidates)
    if value < 1:
        raise RequestError(f"row count must be at least 1 (the request says {said!r}): ask for a positive number")
    if value > MAX_ROWS:
        said = said if len(said) <= 40 else said[:37] + "..."
        return MAX_ROWS, f"rows: the request asks for {said!r}; capped at the maximum of {MAX_ROWS} per job"
    return int(value), None


# --- fields ------------------------------------------------------------------------------


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
_KNOWN: dict[str, _Known] = {
    "question": _Known("A clear, self-contained question about the topic", 300, 10),
    # 400: a QA answer needs a sentence or two; a longer bound lets small models run on (measured: the
    # 135M model filled 1000-char bounds with repetition, which the grounding gate then dropped).
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
_ALIASES = {
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
    name = _ALIASES.get(name, name)
    return _build_field(name, annotation=annotation, grounded=grounded), None


def _build_field(
    name: str,
    *,
    annotation: str = "",
    grounded: bool,
    type_: FieldType | None = None,
    description: str = "",
    max_length: int | None = None,
    choices: Iterable[str] = (),
) -> FieldSpec:
    known = _KNOWN.get(name)
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


def _fit_lengths(fields: list[FieldSpec], notes: list[str]) -> list[FieldSpec]:
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


def _with_sources(fields: list[FieldSpec], grounded: bool, notes: list[str]) -> list[FieldSpec]:
    if not grounded:
        return fields
    if not any(f.source is FieldSource.SOURCE_URL for f in fields):
        notes.append("fields: grounded rows get a source_url column, filled from provenance")
        fields = [*fields, _build_field("source_url", grounded=True)]
    return fields


# --- grounding, topic, language, license -----------------------------------------------------

_UNGROUNDED = re.compile(
    r"\b(?:ungrounded|not grounded|no sources?|no citations?|without (?:any )?(?:sources?|citations?|grounding|"
    r"references?)|from (?:your|the model'?s|its) own knowledge|no retrieval)\b",
    re.IGNORECASE,
)
_GROUNDED = re.compile(
    r"\b(?:grounded|sourced|sources?|cit(?:e|es|ed|ing|ations?)|evidence|references?|"
    r"from (?:the )?(?:official )?(?:docs|documentation|web|internet|literature|papers?|articles?|wikipedia)|"
    r"based on (?:the )?(?:docs|documentation|sources?|articles?|pages?)|according to|source[_ ]urls?|"
    r"retrieved|fact[- ]checked)\b",
    re.IGNORECASE,
)
_TOPIC_MARKERS = (
    re.compile(r"\btopic\s*(?:[:=]|is)?\s+", re.IGNORECASE),
    re.compile(r"\babout\s+", re.IGNORECASE),
    re.compile(
        r"\b(?:regarding|concerning|covering|related to|on the (?:topic|subject) of|focus(?:ed|ing)? on)\s+", re.I
    ),
    re.compile(r"(?<!based )(?<!grounded )(?<!depending )(?<!built )(?<!trained )\bon\s+", re.IGNORECASE),
    re.compile(r"\b(?:sur|über|sobre|sul|sulla)\s+", re.IGNORECASE),
)
_TOPIC_END = re.compile(
    r"\s*(?:[,;:!?\n(\[]|\.(?:\s|$)|\s(?:grounded|sourced|citing|with (?:sources?|citations?|fields?|columns?|"
    r"keys|evidence|answers?)|in json|as json|json|jsonl|csv|fields?:|columns?:|from the|based on|using|written in|"
    r"for (?:training|fine-?tuning|evaluation)|licen[cs]ed|in (?:english|french|german|spanish|italian|"
    r"portuguese|dutch|japanese|chinese|korean|russian|arabic))\b)",
    re.IGNORECASE,
)
_LEADING_VERBS = re.compile(
    r"^(?:please\s+)?(?:(?:generate|create|make|produce|write|build|give me|i need|i want|we need|compile|collect)"
    r"\s+)?(?:me\s+)?",
    re.IGNORECASE,
)

_LANGUAGES = {
    "english": "en", "french": "fr", "german": "de", "spanish": "es", "italian": "it", "portuguese": "pt",
    "dutch": "nl", "russian": "ru", "chinese": "zh", "mandarin": "zh", "japanese": "ja", "korean": "ko",
    "arabic": "ar", "hindi": "hi", "polish": "pl", "swedish": "sv", "turkish": "tr", "greek": "el",
    "hebrew": "he", "ukrainian": "uk", "czech": "cs", "danish": "da", "finnish": "fi", "norwegian": "no",
    "vietnamese": "vi", "thai": "th", "indonesian": "id", "romanian": "ro", "hungarian": "hu",
    "français": "fr", "deutsch": "de", "español": "es", "italiano": "it", "português": "pt",
}  # fmt: skip
_LANGUAGE_SAID = re.compile(
    r"\b(?:in|written in|language\s*[:=]?|en|auf|em)\s+(?P<lang>" + "|".join(_LANGUAGES) + r")\b", re.IGNORECASE
)
_SCRIPTS = {
    "HIRAGANA": "ja", "KATAKANA": "ja", "HANGUL": "ko", "CJK": "zh", "CYRILLIC": "ru", "ARABIC": "ar",
    "GREEK": "el", "HEBREW": "he", "DEVANAGARI": "hi", "THAI": "th",
}  # fmt: skip
# A handful of function words per Latin-script language: enough to notice a request written in it.
_STOPWORDS = {
    "en": ["the", "of", "and", "about", "with", "for", "from", "in", "to", "a", "an"],
    "fr": ["les", "des", "sur", "avec", "pour", "une", "un", "et", "du", "la", "le", "en", "de"],
    "de": ["der", "die", "das", "und", "über", "mit", "für", "ein", "eine", "von", "zu", "den"],
    "es": ["los", "las", "sobre", "con", "para", "una", "un", "y", "del", "el", "en", "de"],
    "it": ["gli", "sulla", "sul", "con", "per", "una", "un", "e", "del", "il", "di", "della"],
    "pt": ["os", "as", "sobre", "com", "para", "uma", "um", "e", "do", "da", "em", "de"],
    "nl": ["de", "het", "een", "en", "over", "met", "voor", "van", "in", "op"],
}

_LICENSES = {
    "cc-by-4.0": "cc-by-4.0", "cc-by": "cc-by-4.0", "cc-by-sa-4.0": "cc-by-sa-4.0", "cc-by-sa": "cc-by-sa-4.0",
    "cc-by-nc-4.0": "cc-by-nc-4.0", "cc-by-nc": "cc-by-nc-4.0", "cc0": "cc0-1.0", "cc0-1.0": "cc0-1.0",
    "public-domain": "cc0-1.0", "mit": "mit", "apache-2.0": "apache-2.0", "apache": "apache-2.0",
    "odc-by": "odc-by", "odbl": "odbl", "cdla-permissive-2.0": "cdla-permissive-2.0", "other": "other",
}  # fmt: skip
_LICENSE_SAID = re.compile(
    r"\blicen[cs]e[sd]?\s*(?:under|as|is|:|=)?\s*(?:the\s+)?(?P<lic>[a-z0-9][a-z0-9 .\-]{1,30})", re.IGNORECASE
)


def _grounded(text: str) -> bool | None:
    if _UNGROUNDED.search(text):
        return False
    if _GROUNDED.search(text):
        return True
    return None


def _topic(text: str) -> tuple[str | None, bool]:
    """(topic, explicit). Explicit when a marker word ("about", "on", ...) introduced it."""
    for marker in _TOPIC_MARKERS:
        for m in marker.finditer(text):
            rest = text[m.end() :]
            end = _TOPIC_END.search(rest)
            topic = _tidy_topic(rest[: end.start()] if end else rest)
            if topic:
                return topic, True
    first = re.split(r"[,;:!?\n]|\.(?:\s|$)", text, maxsplit=1)[0]
    first = _LEADING_VERBS.sub("", first.strip())
    first = re.sub(r"^[\d,._'\s]+(?:k|thousand|million)?\s+", "", first, flags=re.IGNORECASE)
    first = re.sub(r"^(?:a|an|the)\s+(?:dataset|set|list|collection|corpus|table)\s+of\s+", "", first, flags=re.I)
    end = _TOPIC_END.search(first)
    return _tidy_topic(first[: end.start()] if end else first), False


def _tidy_topic(text: str) -> str | None:
    text = " ".join(text.split()).strip(" \"'`«»“”‘’-")
    if not any(ch.isalpha() for ch in text):
        return None
    if len(text) > MAX_TOPIC_CHARS:
        cut = text[:MAX_TOPIC_CHARS].rsplit(" ", 1)[0]
        text = cut if cut else text[:MAX_TOPIC_CHARS]
    return text


def _language(text: str) -> tuple[str, bool]:
    """(ISO code, explicit). A named language wins; then the script; then function words."""
    m = _LANGUAGE_SAID.search(text)
    if m:
        return _LANGUAGES[m.group("lang").lower()], True
    counts: dict[str, int] = {}
    letters = 0
    kana = False
    for ch in text:
        if not ch.isalpha():
            continue
        letters += 1
        name = unicodedata.name(ch, "")
        for prefix, code in _SCRIPTS.items():
            if name.startswith(prefix):
                counts[code] = counts.get(code, 0) + 1
                kana = kana or code == "ja"
                break
    if letters:
        code, n = max(counts.items(), key=lambda kv: kv[1], default=("", 0))
        if n * 2 > letters:
            return ("ja" if kana else code), False
    words = re.findall(r"[^\W\d_]+", text.lower())
    votes = {code: sum(w in set(stops) for w in words) for code, stops in _STOPWORDS.items()}
    best = max(votes, key=lambda c: votes[c])
    if best != "en" and votes[best] >= 2 and votes[best] > votes["en"]:
        return best, False
    return DEFAULT_LANGUAGE, False


def _license(text: str) -> tuple[str | None, str | None]:
    m = _LICENSE_SAID.search(text)
    if not m:
        return None, None
    said = m.group("lic").strip().lower()
    words = re.sub(r"[\s_]+", "-", said).strip("-.")
    for length in range(len(words), 1, -1):
        key = words[:length].rstrip("-.")
        if key in _LICENSES:
            return _LICENSES[key], None
    return None, f"license: {said!r} is not a license id I know; using {DEFAULT_LICENSE}"


def _seed_examples(text: str) -> list[dict[str, Any]]:
    """Inline JSON objects in the request ({"question": ..., "answer": ...}) become seed examples."""
    decoder = json.JSONDecoder()
    out: list[dict[str, Any]] = []
    i = text.find("{")
    while i != -1 and len(out) < MAX_SEED_EXAMPLES:
        try:
            value, end = decoder.raw_decode(text, i)
        except ValueError:
            i = text.find("{", i + 1)
            continue
        if isinstance(value, dict) and value and all(isinstance(k, str) for k in value):
            out.append(value)
        i = text.find("{", end)
    return out


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


# --- the rule-based parser -------------------------------------------------------------------


def parse_request(text: str, *, rows: int | None = None) -> ParsedRequest:
    """Read a request sentence into a spec by rules; RequestError if it is truly unusable.

    rows: an explicit row count (the CLI's --rows), which overrides the text.
    """
    if not isinstance(text, str):
        raise RequestError(f"the request must be text, got {type(text).__name__}")
    if len(text) > MAX_REQUEST_CHARS:
        raise RequestError(
            f"the request is {len(text)} characters, over the {MAX_REQUEST_CHARS} limit: "
            "shorten it, or hand in a spec file (--spec FILE)"
        )
    clean = _clean(text)
    if not clean:
        raise RequestError(
            "the request is empty: describe the dataset in a sentence, e.g. "
            "'300 question-answer pairs about Python's standard library'"
        )
    if not any(ch.isalpha() for ch in clean):
        raise RequestError("the request has no words in it: say what the dataset is about")

    notes: list[str] = []
    explicit: set[str] = set()

    # Rows.
    if rows is not None:
        if not 1 <= rows <= MAX_ROWS:
            raise RequestError(f"rows must be between 1 and {MAX_ROWS} (got {rows})")
        row_count, note = rows, None
        explicit.add("rows")
    else:
        found, note = _find_row_count(clean)
        if found is None:
            row_count = DEFAULT_ROWS
            notes.append(f"rows: the request names no count; using the default of {DEFAULT_ROWS}")
        else:
            row_count = found
            explicit.add("rows")
    if note:
        notes.append(note)

    # Grounding.
    said_grounded = _grounded(clean)
    grounded = bool(said_grounded)
    if said_grounded is not None:
        explicit.add("grounded")

    # Fields: an explicit list, else the keys of an inline example, else question/answer.
    fields: list[FieldSpec] = []
    examples = _seed_examples(clean)
    m = _FIELD_LIST.search(_strip_json(clean))
    if m:
        listed = _LIST_END.sub("", m.group("list"))
        for item in _split_top_level(listed)[: MAX_FIELDS * 2]:
            f, item_note = _field_from_item(item, grounded)
            if item_note:
                notes.append(item_note)
            if f is not None and f.name not in {g.name for g in fields} and len(fields) < MAX_FIELDS:
                fields.append(f)
    if fields:
        explicit.add("fields")
        wants_url = any(f.source is FieldSource.SOURCE_URL or f.name == "source_url" for f in fields)
        if wants_url and not grounded and said_grounded is None:
            grounded = True
            explicit.add("grounded")
            fields = [_build_field(f.name, grounded=True) if f.name in _KNOWN else f for f in fields]
            notes.append("grounded: the fields ask for a source_url, so rows will be grounded")
    elif (pair := _pair_fields(clean)) is not None:
        fields = [_build_field(name, grounded=grounded) for name in pair]
        explicit.add("fields")
    elif examples:
        for key, value in examples[0].items():
            name = snake_name(key)
            type_ = _infer_type(value)
            if name and type_ and name not in {g.name for g in fields} and len(fields) < MAX_FIELDS:
                fields.append(_build_field(name, grounded=grounded, type_=type_))
        if fields:
            explicit.add("fields")
            notes.append("fields: taken from the example in the request")
    if not any(not f.derived for f in fields):
        fields = [
            *fields,
            *(_build_field(n, grounded=grounded) for n in ("question", "answer") if n not in {f.name for f in fields}),
        ]
        notes.append("fields: none named; using question and answer")
    fields = _fit_lengths(_with_sources(fields, grounded, notes), notes)

    topic, topic_explicit = _topic(_strip_json(clean))
    if topic_explicit:
        explicit.add("topic")
    if topic is None:
        topic = "general knowledge"
        notes.append("topic: none found; say 'about <topic>'")
    elif not topic_explicit:
        notes.append(f"topic: no 'about …' in the request; read it as {topic!r}")

    language, lang_explicit = _language(clean)
    if lang_explicit:
        explicit.add("language")
    license_id, lic_note = _license(clean)
    if license_id:
        explicit.add("license")
    if lic_note:
        notes.append(lic_note)

    spec_kwargs: dict[str, Any] = {
        "topic": topic,
        "description": clean[:MAX_DESCRIPTION_CHARS],
        "fields": fields,
        "rows": row_count,
        "grounded": grounded,
        "language": language,
        "license": license_id or DEFAULT_LICENSE,
    }
    try:
        spec = _spec_with_examples(spec_kwargs, examples, notes)
    except ValidationError as exc:  # the rules above should make this unreachable; say why if not
        raise RequestError(f"could not build a valid spec from the request: {_first_error(exc)}") from None
    return ParsedRequest(spec=spec, notes=tuple(notes), explicit=frozenset(explicit))


def _pair_fields(text: str) -> tuple[str, str] | None:
    for m in _PAIR.finditer(text):
        a, b = (_ALIASES.get(w.lower(), w.lower()) for w in (m.group("a"), m.group("b")))
        if a != b and a in _KNOWN and b in _KNOWN and _KNOWN[a].source is _KNOWN[b].source is FieldSource.GENERATED:
            return a, b
    return None


def _strip_json(text: str) -> str:
    """The request without inline JSON examples (their keys are not a field list, their words no topic)."""
    for example in _seed_examples(text):
        text = text.replace(json.dumps(example, ensure_ascii=False), " ")
    return re.sub(r"\{[^{}]*\}", " ", text)


def _spec_with_examples(kwargs: dict[str, Any], examples: list[dict[str, Any]], notes: list[str]) -> DatasetSpec:
    spec = DatasetSpec(**kwargs)
    kept = []
    for example in examples:
        if not spec.validate_row(example, include_derived=False, allow_derived=True):
            kept.append(example)
        else:
            notes.append("seed_examples: an inline example does not fit the fields; left out")
    return spec.model_copy(update={"seed_examples": kept}) if kept else spec


# --- the LLM path ----------------------------------------------------------------------------

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
        name = _ALIASES.get(name, name)
        try:
            f = _llm_field(name, item, grounded)
        except (ValidationError, ValueError, TypeError) as exc:
            notes.append(f"llm: fields[{i}] ({name}) is invalid ({_first_error(exc)}); left out")
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
    return _build_field(
        name,
        grounded=grounded,
        type_=type_,
        description=description,
        max_length=max_length if type_ in (None, FieldType.STRING) else None,
        choices=choices if type_ is FieldType.ENUM else (),
    )


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return format_validation_error(exc.errors()[0])
    return str(exc)


def _language_code(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lower() in _LANGUAGES:
        return _LANGUAGES[value.strip().lower()]
    return value.strip().lower() if isinstance(value, str) else value


def draft_contradictions(data: Mapping[str, Any], said: ParsedRequest) -> list[str]:
    """What a draft gets wrong among the things the request states plainly (`said.explicit`)."""
    spec, out = said.spec, []
    if "rows" in said.explicit and data.get("rows") != spec.rows:
        out.append(f"rows {data.get('rows')!r} (the request says {spec.rows})")
    if "grounded" in said.explicit and data.get("grounded") is not spec.grounded:
        out.append(f"grounded {data.get('grounded')!r} (the request says {spec.grounded})")
    if "language" in said.explicit and _language_code(data.get("language")) != spec.language:
        out.append(f"language {data.get('language')!r} (the request says {spec.language!r})")
    if "fields" in said.explicit:
        raw = data.get("fields")
        items = raw if isinstance(raw, list) else []
        names = {snake_name(i["name"]) for i in items if isinstance(i, dict) and isinstance(i.get("name"), str)}
        drafted = {_ALIASES.get(n, n) for n in names if n}
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
    topic_ok = isinstance(topic_raw, str) and _tidy_topic(topic_raw) is not None
    topic = pick("topic", topic_ok, _tidy_topic(topic_raw) if topic_ok and isinstance(topic_raw, str) else None)
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
    lang_raw = _language_code(data.get("language"))
    lang_ok = isinstance(lang_raw, str) and re.fullmatch(r"[a-z]{2,3}", lang_raw) is not None
    language = pick("language", lang_ok, lang_raw if lang_ok else None)

    llm_fields = _llm_fields(data["fields"], grounded, notes) if "fields" in data else []
    if "fields" not in data:
        notes.append("llm: no `fields`; kept the rule-based fields")
    rule_fields = [
        _build_field(f.name, grounded=grounded) if f.derived != _derived_name(f.name, grounded) else f
        for f in base.fields
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
    fields = _fit_lengths(_with_sources(fields, grounded, notes), notes)

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
        spec = _spec_with_examples(kwargs, list(base.seed_examples), notes)
    except ValidationError as exc:
        notes.append(f"llm: the merged spec is invalid ({_first_error(exc)}); using the rule-based spec")
        spec = base
    return ParsedRequest(spec=spec, notes=tuple(notes), explicit=rule.explicit)


def _derived_name(name: str, grounded: bool) -> bool:
    known = _KNOWN.get(name)
    return grounded and known is not None and known.source is not FieldSource.GENERATED


# --- planning --------------------------------------------------------------------------------
# Provisional factors, to be replaced by rates measured in bench/ once the pipeline runs end to end.

OVERGENERATION = 1.5
"""Rows generated per row delivered: covers rows lost to verification, grounding and dedup gates."""
ROWS_PER_SYNTHESIZE_TASK = 1
"""`SynthesizePayload.n_rows`: small models write one good row per call more reliably than several."""
SYNTHESIZE_TASKS_PER_CHUNK = 1
"""Chunks planned per synthesize task: one, so that rows spread over pages. A chunk offers up to 4 answer
sentences, but with 2 tasks per chunk a 20-row demo retrieved 5 pages and one page held 10 of the 20 rows;
no page may now hold more than a quarter of a job's rows (verify.gates.page_cap)."""
CHUNKS_PER_DOCUMENT = 2
"""Chunks per retrieved page that yield a row. Pages hold more chunks, but answer-first rows need
sentences that stand on their own: a 20-row demo run with 4 found about 25 such sentences in its 10 pages
and ended short of rows; with 2 the job fetches twice the pages (retrieval costs ~0.1 s a page)."""
RETRIEVE_OVERFETCH = 1.25
"""Pages fetched per page used: fetch failures, refusals and duplicate content."""
NEW_URLS_PER_SEARCH = 3
"""New URLs one search query adds once the queries overlap."""
QUERIES_PER_QUESTION_GEN = 5
"""`QuestionGenPayload.n_queries` default."""
QUESTIONS_PER_QUESTION_GEN = 5
"""`QuestionGenPayload.n_questions` default: seed questions that spread ungrounded rows."""
DOCUMENTS_PER_CURATE = 8
"""`CuratePayload.documents` maximum."""
GENERATIVE_REPLICATION = 2.0
"""Executions per generative task on a fresh network: every node starts untrusted at r = 2 (DESIGN.md)."""
QUORUM_REPLICATION = 2.0
"""Executions per deterministic task (search, retrieve, curate): a quorum of two."""
VALIDATION_RATE = 0.5
"""Validate (prefill re-scoring) tasks per synthesize task: disagreements plus spot checks."""


@dataclass(frozen=True)
class StagePlan:
    kind: TaskKind
    tasks: int
    executions: int
    """Tasks times the expected replication: what the network actually runs."""
    why: str


@dataclass(frozen=True)
class Plan:
    rows: int
    rows_to_generate: int
    stages: tuple[StagePlan, ...] = field(default_factory=tuple)

    @property
    def total_tasks(self) -> int:
        return sum(s.tasks for s in self.stages)

    @property
    def total_executions(self) -> int:
        return sum(s.executions for s in self.stages)

    def tasks(self, kind: TaskKind) -> int:
        return sum(s.tasks for s in self.stages if s.kind is kind)

    def render(self) -> str:
        """A small table for --dry-run."""
        lines = [f"{self.rows} rows delivered, {self.rows_to_generate} generated (x{OVERGENERATION} over-generation)"]
        lines += [f"  {s.kind.value:<13} {s.tasks:>8} tasks {s.executions:>9} runs  {s.why}" for s in self.stages]
        lines.append(f"  {'total':<13} {self.total_tasks:>8} tasks {self.total_executions:>9} runs")
        return "\n".join(lines)


def plan(spec: DatasetSpec, *, llm_spec: bool = False) -> Plan:
    """Expected tasks per stage for `spec` (estimates from the constants above, for --dry-run).

    llm_spec: the job starts with a `spec` task (the spec came from a request sentence).
    """
    target = math.ceil(spec.rows * OVERGENERATION)
    synth = math.ceil(target / ROWS_PER_SYNTHESIZE_TASK)
    stages: list[StagePlan] = []

    def stage(kind: TaskKind, tasks: int, replication: float, why: str) -> None:
        stages.append(StagePlan(kind, tasks, math.ceil(tasks * replication), why))

    if llm_spec:
        stage(TaskKind.SPEC, 1, GENERATIVE_REPLICATION, "an LLM reads the request; the rules keep what it said")
    if spec.grounded:
        chunks = math.ceil(synth / SYNTHESIZE_TASKS_PER_CHUNK)
        documents = math.ceil(chunks / CHUNKS_PER_DOCUMENT)
        retrieves = math.ceil(documents * RETRIEVE_OVERFETCH)
        searches = math.ceil(retrieves / NEW_URLS_PER_SEARCH)
        question_gens = math.ceil(searches / QUERIES_PER_QUESTION_GEN)
        stage(TaskKind.QUESTION_GEN, question_gens, GENERATIVE_REPLICATION, f"{searches} search queries")
        stage(TaskKind.SEARCH, searches, QUORUM_REPLICATION, f"{NEW_URLS_PER_SEARCH} new URLs per query")
        stage(TaskKind.RETRIEVE, retrieves, QUORUM_REPLICATION, f"{documents} pages used")
        stage(TaskKind.CURATE, math.ceil(documents / DOCUMENTS_PER_CURATE), QUORUM_REPLICATION, f"{chunks} chunks")
    else:
        question_gens = math.ceil(synth / QUESTIONS_PER_QUESTION_GEN)
        stage(TaskKind.QUESTION_GEN, question_gens, GENERATIVE_REPLICATION, "seed questions for variety")
    stage(TaskKind.SYNTHESIZE, synth, GENERATIVE_REPLICATION, f"{ROWS_PER_SYNTHESIZE_TASK} row(s) per task")
    stage(TaskKind.VALIDATE, math.ceil(synth * VALIDATION_RATE), 1.0, "re-scoring of disagreements and spot checks")
    return Plan(rows=spec.rows, rows_to_generate=target, stages=tuple(stages))


def planned_tasks(spec: DatasetSpec, *, llm_spec: bool = False) -> int:
    """The tasks `spec` plans at most. A `spec` task may still change `grounded`, so then both readings count."""
    readings = [spec] if not llm_spec else [spec.model_copy(update={"grounded": g}) for g in (True, False)]
    return max(plan(s, llm_spec=llm_spec).total_tasks for s in readings)


def rows_within(max_tasks: int, spec: DatasetSpec, *, llm_spec: bool = False) -> int:
    """The most rows `spec` may ask for and still plan at most `max_tasks` tasks (0 if even one row plans more)."""
    low, high = 0, MAX_ROWS
    while low < high:  # tasks grow with rows: the largest count that fits
        mid = (low + high + 1) // 2
        if planned_tasks(spec.model_copy(update={"rows": mid}), llm_spec=llm_spec) <= max_tasks:
            low = mid
        else:
            high = mid - 1
    return low
