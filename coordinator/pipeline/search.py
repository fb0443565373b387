"""Stage 2, search: one task per distinct query; the union of hits feeds retrieval."""

from __future__ import annotations

from coordinator.pipeline import question_gen
from coordinator.pipeline.context import JobContext
from coordinator.pipeline.stage import TaskPlan
from protocol.tasks import SearchOutput, SearchPayload, TaskKind

RESULTS_PER_QUERY = 10


def tasks(ctx: JobContext) -> list[TaskPlan]:
    return [
        TaskPlan(ctx.task_id(TaskKind.SEARCH, i), SearchPayload(query=q, max_results=RESULTS_PER_QUERY))
        for i, q in enumerate(question_gen.queries(ctx, question_gen.searches_wanted(ctx)))
    ]


def urls(ctx: JobContext, limit: int) -> list[str]:
    """Distinct URLs, best-ranked first across queries (round-robin over each query's hit list)."""
    lists = [[h.url for h in out.hits] for _, out in ctx.outputs(TaskKind.SEARCH, SearchOutput)]
    seen: dict[str, None] = {}
    for rank in range(max((len(x) for x in lists), default=0)):
        for hits in lists:
            if rank < len(hits):
                seen.setdefault(hits[rank].split("#", 1)[0], None)
    return list(seen)[:limit]
