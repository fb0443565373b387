"""Stage 4, curate: documents become synthesis tasks (instruction + source chunk with offsets)."""

from __future__ import annotations

from coordinator.pipeline import retrieve
from coordinator.pipeline.context import JobContext
from coordinator.pipeline.sizing import DOCUMENTS_PER_CURATE
from coordinator.pipeline.stage import TaskPlan
from protocol.tasks import CurateOutput, CuratePayload, Document, SynthesisSpec, TaskKind

CHUNK_CHARS = 1200
"""Small enough for a 135M model's context with the prompt and schema, large enough to hold an answer."""


def instruction(ctx: JobContext) -> str:
    spec = ctx.spec
    fields = ", ".join(f"{f.name} ({f.description})" if f.description else f.name for f in spec.generated_fields)
    return (
        f"Using only the source text, write one record about {spec.topic} with the fields: {fields}. "
        "Quote the sentence that supports it as evidence."
    )[:4000]


def tasks(ctx: JobContext) -> list[TaskPlan]:
    return tasks_for(ctx, [d for _, d in retrieve.documents(ctx)], start=0)


def uncurated_tasks(ctx: JobContext) -> list[TaskPlan]:
    """Curate tasks for the documents no curate task has yet (pages a later retrieve round fetched),
    numbered after the existing ones."""
    existing = ctx.store.tasks(ctx.job_id, stage=TaskKind.CURATE.value)
    curated: set[str] = set()
    for t in existing:
        payload = ctx.store.task_payload(t.task_id)
        if isinstance(payload, CuratePayload):
            curated.update(d.content_sha256 for d in payload.documents)
    docs = [d for _, d in retrieve.documents(ctx) if d.content_sha256 not in curated]
    return tasks_for(ctx, docs, start=len(existing))


def tasks_for(ctx: JobContext, docs: list[Document], *, start: int) -> list[TaskPlan]:
    batches = [docs[i : i + DOCUMENTS_PER_CURATE] for i in range(0, len(docs), DOCUMENTS_PER_CURATE)]
    return [
        TaskPlan(
            ctx.task_id(TaskKind.CURATE, start + i),
            CuratePayload(
                documents=batch,
                instruction=instruction(ctx),
                chunk_chars=CHUNK_CHARS,
                max_tasks=200,
                topic=ctx.spec.topic[:500],
            ),
        )
        for i, batch in enumerate(batches)
    ]


def synthesis_specs(ctx: JobContext) -> list[tuple[str, SynthesisSpec]]:
    """(curate task id, spec), interleaved across documents so early waves cover many sources."""
    per_doc: dict[str, list[tuple[str, SynthesisSpec]]] = {}
    for task_id, out in ctx.outputs(TaskKind.CURATE, CurateOutput):
        for s in out.tasks:
            per_doc.setdefault(s.chunk.content_sha256, []).append((task_id, s))
    lists = list(per_doc.values())
    out_list: list[tuple[str, SynthesisSpec]] = []
    for i in range(max((len(x) for x in lists), default=0)):
        out_list += [x[i] for x in lists if i < len(x)]
    return out_list
