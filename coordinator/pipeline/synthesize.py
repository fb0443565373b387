"""Stage 5, synthesize: many nodes write rows in parallel, in waves until enough rows pass.

Rows are over-generated (the quality gates drop some, re-scoring rejects
others): the first wave asks for `OVERGENERATION` x the missing rows; each
later wave asks for what is still missing, again with the factor. Sources are
used round-robin; a source used again gets a variant instruction, and its
task id (hence its seed) differs, so the model writes something new.

Question/answer specs (grounded, one field that asks and one that states, both
strings) are written answer first (PAQ): each task names one answer sentence
that curate picked from a chunk, the node writes the question, and a third
node's round trip decides whether the question leads back to that sentence.
Tasks go through (chunk, sentence) pairs so that every document, then every
chunk, gets its first sentence before any gets a second; a sentence is tried
again, with another seed, only after every pair had its turn.

Text/label specs (grounded, one string field that states and one enum field)
are written label first the same way: the text is an answer sentence, verbatim,
the node writes only its label, and a third node must read the same label back
from the text alone (node/executors/validate.py, `label_trip`).
"""

from __future__ import annotations

import math
from typing import Any

from coordinator.pipeline import curate, question_gen
from coordinator.pipeline.context import JobContext
from coordinator.pipeline.sizing import OVERGENERATION, ROWS_PER_SYNTHESIZE_TASK
from coordinator.pipeline.stage import TaskPlan
from coordinator.scheduler import coverage_of
from coordinator.spec import DatasetSpec, FieldSpec, FieldType, asks
from coordinator.verify.text import normalize_ws
from protocol.tasks import (
    LABEL_CHOICE_CHARS,
    MAX_LABEL_CHOICES,
    AnswerTarget,
    LabelTarget,
    SynthesisSpec,
    SynthesizePayload,
    TaskKind,
)

MAX_TASKS_FACTOR = 8
"""Give up once this many times the requested rows were attempted: the sources cannot yield more
(docs/notes/quality.md#synthesize-yield)."""

_VARIANTS = (
    "",
    " Ask about a different detail than the first sentence.",
    " Focus on a definition or a default value.",
    " Focus on how to use it, with the exact name from the text.",
)


def wave_size(ctx: JobContext, accepted: int) -> int:
    missing = max(0, ctx.spec.rows - accepted)
    return math.ceil(missing * OVERGENERATION / ROWS_PER_SYNTHESIZE_TASK)


SEEDS_PER_ANSWER = 2
"""Answer-first: tries per answer sentence (each with its own seed) before the job stops short
(docs/notes/quality.md#synthesize-yield)."""


def max_tasks(ctx: JobContext) -> int:
    budget = max(4, ctx.spec.rows * MAX_TASKS_FACTOR)
    stated = sentence_field(ctx.spec)
    if stated is not None and (pairs := answer_pairs(ctx, stated)):
        return min(budget, max(4, SEEDS_PER_ANSWER * len(pairs)))
    return budget


def sentence_field(spec: DatasetSpec) -> FieldSpec | None:
    """The field whose value is a source sentence, verbatim (answer first or label first), else None."""
    if (qa := qa_fields(spec)) is not None:
        return qa[1]
    if (tl := label_fields(spec)) is not None:
        return tl[0]
    return None


def est_tokens(ctx: JobContext) -> int:
    chars = sum((f.max_length or 200) for f in ctx.spec.generated_fields) + 300
    return min(1024, chars // 3)


def grounded_row_schema(spec: DatasetSpec) -> dict[str, Any]:
    """The row schema with the fields that state listed first in `required`, the ones that ask last.

    The node writes fields in `required` order; answer first grounds more rows (docs/notes/quality.md#field-order).
    """
    schema = spec.row_json_schema()
    names: list[str] = schema["required"]
    return {**schema, "required": [n for n in names if not asks(n)] + [n for n in names if asks(n)]}


MAX_QUESTION_CHARS = 150
"""One sentence of a question; longer ones were run-ons in every demo run."""


def qa_fields(spec: DatasetSpec) -> tuple[FieldSpec, FieldSpec] | None:
    """(question field, answer field) when the spec's rows are written answer first, else None."""
    fields = spec.generated_fields
    if not spec.grounded or len(fields) != 2 or any(f.type is not FieldType.STRING for f in fields):
        return None
    asking = [f for f in fields if asks(f.name)]
    stating = [f for f in fields if not asks(f.name)]
    if len(asking) != 1 or len(stating) != 1:
        return None
    return asking[0], stating[0]


def label_fields(spec: DatasetSpec) -> tuple[FieldSpec, FieldSpec] | None:
    """(text field, label field) when the spec's rows are written label first, else None."""
    fields = spec.generated_fields
    if not spec.grounded or len(fields) != 2:
        return None
    texts = [f for f in fields if f.type is FieldType.STRING and not asks(f.name)]
    labels = [f for f in fields if f.type is FieldType.ENUM]
    if len(texts) != 1 or len(labels) != 1:
        return None
    choices = labels[0].choices
    if len(choices) > MAX_LABEL_CHOICES or any(len(c) > LABEL_CHOICE_CHARS for c in choices):
        return None  # more than a validator reads back in one task: the generic path
    return texts[0], labels[0]


def answer_pairs(ctx: JobContext, answer_field: FieldSpec) -> list[tuple[SynthesisSpec, str]]:
    """(source, answer sentence) in the order tasks take them: documents, then chunks, then sentences."""
    per_doc: dict[str, list[list[tuple[SynthesisSpec, str]]]] = {}
    for _, src in curate.synthesis_specs(ctx):
        fits = [a for a in src.answers if answer_field.min_length <= len(a) <= answer_field.max_length]
        if fits:
            per_doc.setdefault(src.chunk.content_sha256, []).append([(src, a) for a in fits])
    return _interleave([_interleave(chunks) for chunks in per_doc.values()])


def _interleave(lists: list[list[tuple[SynthesisSpec, str]]]) -> list[tuple[SynthesisSpec, str]]:
    out: list[tuple[SynthesisSpec, str]] = []
    for i in range(max((len(x) for x in lists), default=0)):
        out += [x[i] for x in lists if i < len(x)]
    return out


def _answer_first_tasks(ctx: JobContext, start: int, count: int, fields: tuple[FieldSpec, FieldSpec]) -> list[TaskPlan]:
    question, answer = fields
    pairs = answer_pairs(ctx, answer)
    if not pairs:
        return []
    pairs = _open_pairs(ctx, pairs)
    schema = grounded_row_schema(ctx.spec)
    max_chars = max(16, min(question.max_length, MAX_QUESTION_CHARS))
    out: list[TaskPlan] = []
    for i in range(start, start + count):
        src, sentence = pairs[i % len(pairs)]
        target = AnswerTarget(
            sentence=sentence, question_field=question.name, answer_field=answer.name, max_question_chars=max_chars
        )
        payload = SynthesizePayload(
            instruction=src.instruction, chunk=src.chunk, row_schema=schema, n_rows=1, target=target
        )
        out.append(TaskPlan(ctx.task_id(TaskKind.SYNTHESIZE, i), payload, est_tokens=max_chars // 3 + 8))
    return out


def _open_pairs(ctx: JobContext, pairs: list[tuple[SynthesisSpec, str]]) -> list[tuple[SynthesisSpec, str]]:
    """Pairs whose sentence has no row yet and whose page is not full (others would only be dropped)."""
    cov = coverage_of(ctx.store, ctx.job_id, ctx.spec.rows)
    open_pairs = [(s, a) for s, a in pairs if normalize_ws(a) not in cov.answers and cov.pages[s.chunk.url] < cov.cap]
    return open_pairs or pairs


def _label_first_tasks(ctx: JobContext, start: int, count: int, fields: tuple[FieldSpec, FieldSpec]) -> list[TaskPlan]:
    text, label = fields
    pairs = answer_pairs(ctx, text)
    if not pairs:
        return []
    pairs = _open_pairs(ctx, pairs)
    schema = ctx.spec.row_json_schema()
    out: list[TaskPlan] = []
    for i in range(start, start + count):
        src, sentence = pairs[i % len(pairs)]
        target = LabelTarget(
            sentence=sentence,
            text_field=text.name,
            label_field=label.name,
            choices=tuple(label.choices),
            description=" ".join(label.description.split())[:200],
        )
        payload = SynthesizePayload(
            instruction=src.instruction, chunk=src.chunk, row_schema=schema, n_rows=1, label=target
        )
        out.append(TaskPlan(ctx.task_id(TaskKind.SYNTHESIZE, i), payload, est_tokens=8))
    return out


def no_tasks_reason(ctx: JobContext) -> str:
    """Why `tasks` offers nothing, for the requester."""
    if sentence_field(ctx.spec) is not None:
        return (
            "no sentence of the retrieved sources can answer a question on its own (or carry a label); "
            "no rows rather than unchecked ones"
        )
    return "no source chunks to synthesize from"


def tasks(ctx: JobContext, start: int, count: int) -> list[TaskPlan]:
    """Synthesize tasks number `start` .. `start + count - 1` (deterministic, so a restart re-creates the same)."""
    spec = ctx.spec
    schema = grounded_row_schema(spec) if spec.grounded else spec.row_json_schema()
    out: list[TaskPlan] = []
    # A spec written answer or label first never falls back to the free JSON path when its sources hold no
    # sentence that stands alone: on a held-out manual that path delivered 0 acceptable rows of 8.
    qa = qa_fields(spec)
    if qa is not None:
        return _answer_first_tasks(ctx, start, count, qa)
    labelled = label_fields(spec)
    if labelled is not None:
        return _label_first_tasks(ctx, start, count, labelled)
    if spec.grounded:
        sources: list[SynthesisSpec] = [s for _, s in curate.synthesis_specs(ctx)]
        if not sources:
            return []
        for i in range(start, start + count):
            src = sources[i % len(sources)]
            variant = _VARIANTS[(i // len(sources)) % len(_VARIANTS)]
            payload = SynthesizePayload(
                instruction=(src.instruction + variant)[:4000], chunk=src.chunk, row_schema=schema, n_rows=1
            )
            out.append(TaskPlan(ctx.task_id(TaskKind.SYNTHESIZE, i), payload, est_tokens(ctx)))
        return out
    questions = question_gen.questions(ctx)
    fields = ", ".join(f.name for f in spec.generated_fields)
    base = f"Write one record about {spec.topic} with the fields: {fields}."
    for i in range(start, start + count):
        hint = f" Cover this question: {questions[i % len(questions)]}" if questions else _VARIANTS[i % len(_VARIANTS)]
        payload = SynthesizePayload(instruction=(base + hint)[:4000], chunk=None, row_schema=schema, n_rows=1)
        out.append(TaskPlan(ctx.task_id(TaskKind.SYNTHESIZE, i), payload, est_tokens(ctx)))
    return out
