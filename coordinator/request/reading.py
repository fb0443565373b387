"""A reading of a request: what the rule-based parser and the LLM merge both yield, and how they end.

Owns: `ParsedRequest` (the spec, the notes for people, the keys the text said
itself), `RequestError` (the request cannot become a spec), and the two steps
both readers finish with: `spec_with_examples` builds the spec and keeps the
inline examples that fit it, `first_error` says in one line why a value was invalid.
Must not: read the request text (parse.py and merge.py do), do I/O, or import `node/`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from coordinator.spec import DatasetSpec, format_validation_error


class RequestError(ValueError):
    """The request cannot become a spec; the message says what to change."""


@dataclass(frozen=True)
class ParsedRequest:
    spec: DatasetSpec
    notes: tuple[str, ...] = ()
    """One line per guess, default, cap or fallback, for people (--dry-run)."""
    explicit: frozenset[str] = frozenset()
    """Spec keys read from the text itself rather than defaulted."""


def spec_with_examples(kwargs: dict[str, Any], examples: list[dict[str, Any]], notes: list[str]) -> DatasetSpec:
    spec = DatasetSpec(**kwargs)
    kept = []
    for example in examples:
        if not spec.validate_row(example, include_derived=False, allow_derived=True):
            kept.append(example)
        else:
            notes.append("seed_examples: an inline example does not fit the fields; left out")
    return spec.model_copy(update={"seed_examples": kept}) if kept else spec


def first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return format_validation_error(exc.errors()[0])
    return str(exc)
