"""The rule-based parser: a request sentence becomes a DatasetSpec, by rules alone.

Owns: `parse_request`. It always yields a valid spec or a `RequestError` that
says what to change; every guess and every default is listed in
`ParsedRequest.notes` (what `--dry-run` shows), and every key the text stated
itself in `ParsedRequest.explicit` (what the LLM merge may not override). The
readers it runs live beside it: counts.py, fields.py, facets.py.
Must not: call an LLM or merge a draft (merge.py does), size tasks
(coordinator.pipeline.sizing does), do I/O, read a clock, or import `node/`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import ValidationError

from coordinator.request.counts import find_row_count
from coordinator.request.facets import read_grounding, read_language, read_license, read_seed_examples, read_topic
from coordinator.request.fields import (
    KNOWN,
    build_field,
    example_fields,
    fit_lengths,
    listed_fields,
    pair_fields,
    with_sources,
)
from coordinator.request.reading import ParsedRequest, RequestError, first_error, spec_with_examples
from coordinator.request.text import clean_text
from coordinator.spec import DEFAULT_LICENSE, DEFAULT_ROWS, MAX_DESCRIPTION_CHARS, MAX_ROWS, FieldSource
from protocol.tasks import MAX_REQUEST_CHARS as MAX_REQUEST_CHARS


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
    clean = clean_text(text)
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
        found, note = find_row_count(clean)
        if found is None:
            row_count = DEFAULT_ROWS
            notes.append(f"rows: the request names no count; using the default of {DEFAULT_ROWS}")
        else:
            row_count = found
            explicit.add("rows")
    if note:
        notes.append(note)

    # Grounding.
    said_grounded = read_grounding(clean)
    grounded = bool(said_grounded)
    if said_grounded is not None:
        explicit.add("grounded")

    # Fields: an explicit list, else the keys of an inline example, else question/answer.
    examples = read_seed_examples(clean)
    fields = listed_fields(_strip_json(clean), grounded, notes)
    if fields:
        explicit.add("fields")
        wants_url = any(f.source is FieldSource.SOURCE_URL or f.name == "source_url" for f in fields)
        if wants_url and not grounded and said_grounded is None:
            grounded = True
            explicit.add("grounded")
            fields = [build_field(f.name, grounded=True) if f.name in KNOWN else f for f in fields]
            notes.append("grounded: the fields ask for a source_url, so rows will be grounded")
    elif (pair := pair_fields(clean)) is not None:
        fields = [build_field(name, grounded=grounded) for name in pair]
        explicit.add("fields")
    elif examples:
        fields = example_fields(examples[0], grounded)
        if fields:
            explicit.add("fields")
            notes.append("fields: taken from the example in the request")
    if not any(not f.derived for f in fields):
        fields = [
            *fields,
            *(build_field(n, grounded=grounded) for n in ("question", "answer") if n not in {f.name for f in fields}),
        ]
        notes.append("fields: none named; using question and answer")
    fields = fit_lengths(with_sources(fields, grounded, notes), notes)

    topic, topic_explicit = read_topic(_strip_json(clean))
    if topic_explicit:
        explicit.add("topic")
    if topic is None:
        topic = "general knowledge"
        notes.append("topic: none found; say 'about <topic>'")
    elif not topic_explicit:
        notes.append(f"topic: no 'about …' in the request; read it as {topic!r}")

    language, lang_explicit = read_language(clean)
    if lang_explicit:
        explicit.add("language")
    license_id, lic_note = read_license(clean)
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
        spec = spec_with_examples(spec_kwargs, examples, notes)
    except ValidationError as exc:  # the rules above should make this unreachable; say why if not
        raise RequestError(f"could not build a valid spec from the request: {first_error(exc)}") from None
    return ParsedRequest(spec=spec, notes=tuple(notes), explicit=frozenset(explicit))


def _strip_json(text: str) -> str:
    """The request without inline JSON examples (their keys are not a field list, their words no topic)."""
    for example in read_seed_examples(text):
        text = text.replace(json.dumps(example, ensure_ascii=False), " ")
    return re.sub(r"\{[^{}]*\}", " ", text)
