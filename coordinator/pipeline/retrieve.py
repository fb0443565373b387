"""Stage 3, retrieve: fetch each chosen URL on a node; the extracted texts become documents."""

from __future__ import annotations

from coordinator.pipeline import search
from coordinator.pipeline.context import JobContext
from coordinator.pipeline.sizing import plan
from coordinator.pipeline.stage import TaskPlan
from protocol.tasks import Document, RetrieveOutput, RetrievePayload, TaskKind

MIN_TEXT_CHARS = 200
"""Shorter extractions (index pages, redirects) give the synthesizer nothing to ground on."""


def tasks(ctx: JobContext) -> list[TaskPlan]:
    wanted = max(1, plan(ctx.spec).tasks(TaskKind.RETRIEVE))
    return [
        TaskPlan(ctx.task_id(TaskKind.RETRIEVE, i), RetrievePayload(url=url))
        for i, url in enumerate(search.urls(ctx, wanted))
    ]


def more_tasks(ctx: JobContext) -> list[TaskPlan]:
    """Another round as large as the first: the search's next best URLs that no retrieve task fetched,
    numbered after the existing tasks (empty when the search found no more)."""
    wanted = max(1, plan(ctx.spec).tasks(TaskKind.RETRIEVE))
    existing = ctx.store.tasks(ctx.job_id, stage=TaskKind.RETRIEVE.value)
    fetched: set[str] = set()
    for t in existing:
        payload = ctx.store.task_payload(t.task_id)
        if isinstance(payload, RetrievePayload):
            fetched.add(payload.url)
    fresh = [u for u in search.urls(ctx, len(fetched) + wanted) if u not in fetched][:wanted]
    return [
        TaskPlan(ctx.task_id(TaskKind.RETRIEVE, len(existing) + i), RetrievePayload(url=url))
        for i, url in enumerate(fresh)
    ]


def documents(ctx: JobContext) -> list[tuple[str, Document]]:
    """(retrieve task id, document) for each usable page, one per content digest."""
    seen: set[str] = set()
    out: list[tuple[str, Document]] = []
    for task_id, page in ctx.outputs(TaskKind.RETRIEVE, RetrieveOutput):
        if len(page.text) < MIN_TEXT_CHARS or page.content_sha256 in seen:
            continue
        seen.add(page.content_sha256)
        out.append(
            (
                task_id,
                Document(url=page.final_url, title=page.title, text=page.text, content_sha256=page.content_sha256),
            )
        )
    return out
